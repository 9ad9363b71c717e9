"""`ModelConfig.attention = "splash"`: the Pallas splash attention kernel for TPU.

The library kernel (`jax.experimental.pallas.ops.tpu.splash_attention`, `make_splash_mha`)
runs the full-sequence forward (prefill without a cache, the training forward) and, through
its custom VJP, the backward. How the reference mask maps onto it:

* causal: a static `CausalMask((T', T'))` per query head, so the kernel skips the tiles
  above the diagonal;
* left padding and packed segments: one `SegmentIds` array for queries and keys, the
  packing segment at valid positions and a sentinel (below every segment) at invalid ones.
  A valid query then sees exactly the reference's keys: earlier, valid, same segment.
  An invalid (padding) query sees the invalid keys up to itself instead of the reference's
  (also meaningless) row: the kernel needs at least one key per row, and no valid query
  ever reads an invalid position, so the valid rows, and the model's output there, match;
* GQA: q as [N, T, H] with N = K * G (head k*G + g), k / v as [K, T, H]; the kernel maps
  query head n to kv head n // G, as the reference does.

T is padded inside the wrapper to a multiple of 128 (the kernel's smallest block) with
sentinel-segment positions, and the output sliced back: no length is refused. Blocks are
512 (or 256 / 128, the largest dividing the padded T), for the forward and both backward
kernels. Calls with a KV cache (prefill into the cache, decode) do not come here: the
transformer sends them to the "blocked" path, whose decode reads only filled blocks.

On TPU the kernel is compiled by Mosaic. Elsewhere it runs through the Pallas interpreter
(`interpret=True`): the same math, checked against the reference in
tests/models/test_splash.py, and far too slow for anything but tests. With a mesh the
kernel runs under `shard_map` over the batch and kv-head axes of the activations (a Pallas
call is not partitioned by GSPMD).
"""
from __future__ import annotations

import functools
import logging

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu import splash_attention as sa
from jax.sharding import Mesh

from r1jax.models.attention import MaskSpec

ALIGN = 128   # the kernel's smallest block: sequence lengths are padded to a multiple
_BLOCKS = (512, 256, 128)


def block_size(t_padded: int) -> int:
  return next(b for b in _BLOCKS if t_padded % b == 0)


@functools.lru_cache(maxsize=None)
def _kernel(num_heads: int, t: int, interpret: bool):
  """The splash kernel for `num_heads` query heads over a causal [t, t] mask (t % 128 == 0).
  Cached: the mask's block map is computed once per shape, on the host."""
  b = block_size(t)
  sizes = sa.BlockSizes(block_q=b, block_kv=b, block_kv_compute=b, block_q_dkv=b,
                        block_kv_dkv=b, block_kv_dkv_compute=b, block_q_dq=b, block_kv_dq=b)
  mask = sa.MultiHeadMask([sa.CausalMask((t, t)) for _ in range(num_heads)])
  # Concrete arrays even when first built under a trace (the cache outlives the trace).
  with jax.ensure_compile_time_eval():
    return sa.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1,
                              interpret=interpret)


def segment_ids(spec: MaskSpec) -> jax.Array:
  """[B, T] int32: the packing segment (0 without packing) at valid positions, and a
  sentinel below every segment at invalid ones (see the module docstring)."""
  valid_BT = spec.kv_mask_BS.astype(bool)
  seg_BT = (jnp.zeros(valid_BT.shape, jnp.int32) if spec.q_segments_BT is None
            else spec.q_segments_BT.astype(jnp.int32))
  return jnp.where(valid_BT, seg_BT, jnp.min(seg_BT) - 1)


@functools.cache
def _warn_interpret():   # once per process, not once per layer and trace
  logging.getLogger(__name__).warning(
      "attention='splash' off TPU runs the Pallas interpreter (slow; meant for tests)")


def _local(q_BTKGH, k_BKHS, v_BKSH, seg_BT, interpret: bool):
  """Splash on one device's (batch, kv-head) shard; T already a multiple of ALIGN."""
  b, t, k, g, h = q_BTKGH.shape
  kernel = _kernel(k * g, t, interpret)
  q_BNTH = q_BTKGH.reshape(b, t, k * g, h).transpose(0, 2, 1, 3)
  k_BKTH = k_BKHS.transpose(0, 1, 3, 2)

  def one(q_NTH, k_KTH, v_KTH, seg_T):
    return kernel(q_NTH, k_KTH, v_KTH, segment_ids=sa.SegmentIds(q=seg_T, kv=seg_T))

  out_BNTH = jax.vmap(one)(q_BNTH, k_BKTH, v_BKSH, seg_BT)
  return out_BNTH.transpose(0, 2, 1, 3).reshape(b, t, k, g, h)


def splash(q_BTKGH, k_BKHS, v_BKSH, spec: MaskSpec, dtype, *, mesh: Mesh | None = None,
           rules=None, interpret: bool | None = None):
  """Full-sequence attention (no cache: S = T, query t at slot t) with the splash kernel.

  q [B, T, K, G, H], k [B, K, H, T], v [B, K, T, H] as in attention.py; returns
  [B, T, K, G, H] in `dtype`. `interpret` defaults to "not on TPU".
  """
  b, t, k, g, h = q_BTKGH.shape
  if k_BKHS.shape[-1] != t:
    raise ValueError(f"splash attention runs the full-sequence forward only (S = T); got "
                     f"T={t}, S={k_BKHS.shape[-1]}: calls with a KV cache use 'blocked'")
  if interpret is None:
    interpret = jax.default_backend() != "tpu"
    if interpret:
      _warn_interpret()
  seg_BT = segment_ids(spec)
  pad = -t % ALIGN
  cdt = q_BTKGH.dtype
  q = (q_BTKGH.astype(jnp.float32) * (h ** -0.5)).astype(cdt)   # the kernel does not scale
  k_, v_ = k_BKHS.astype(cdt), v_BKSH.astype(cdt)
  if pad:  # padded positions get the sentinel segment: no valid query sees them
    q = jnp.pad(q, ((0, 0), (0, pad), (0, 0), (0, 0), (0, 0)))
    k_ = jnp.pad(k_, ((0, 0), (0, 0), (0, 0), (0, pad)))
    v_ = jnp.pad(v_, ((0, 0), (0, 0), (0, pad), (0, 0)))
    seg_BT = jnp.pad(seg_BT, ((0, 0), (0, pad)), constant_values=jnp.min(seg_BT) - 1)
  fn = functools.partial(_local, interpret=interpret)
  if mesh is not None and rules is not None:
    from r1jax.sharding import logical_to_spec
    tp = t + pad
    specs = (logical_to_spec(("batch", None, "act_kv_heads", None, None), (b, tp, k, g, h),
                             rules, mesh),
             logical_to_spec(("batch", "act_kv_heads", None, None), (b, k, h, tp), rules, mesh),
             logical_to_spec(("batch", "act_kv_heads", None, None), (b, k, tp, h), rules, mesh),
             logical_to_spec(("batch", None), (b, tp), rules, mesh))
    fn = jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=specs[0], check_vma=False)
  out = fn(q, k_, v_, seg_BT)
  return out[:, :t].astype(dtype)
