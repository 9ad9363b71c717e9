"""Decoder-only transformer (Qwen2/2.5, Qwen3, Llama 3, R1-Distill) in Flax NNX.

Shape suffixes: B batch, T query length, S key length (= T without a cache, the
cache length with one), D embed, N query heads, K kv heads, G = N / K, H head dim,
F mlp hidden, V vocab.

Every parameter carries `logical_axes` metadata; `r1jax.sharding.ShardingRules`
maps them to mesh axes. Parameter layouts are "math first" ([D, N, H] for q),
and `r1jax.models.hf` converts to and from the Hugging Face layouts.

One forward covers both uses:
  * full sequences (training, log-probs): `model(tokens, positions, kv_mask)`,
    causal + key-padding mask, optional packing segments;
  * incremental decoding: pass a KV `cache` and `cache_index`; the new keys and
    values are written at slots [cache_index, cache_index + T) and the query at
    slot cache_index + t attends to every valid slot s <= cache_index + t.
    `cache_index` is a scalar (all rows at the same slot: the static sampler) or
    [B] (each row at its own slot: the continuous-batching engine).
Left-padded prompts work in both because positions are explicit and padding is
masked out of the keys.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from r1jax.models import attention, splash
from r1jax.models.config import ModelConfig, RopeScaling
from r1jax.sharding import ShardingRules, shard_activation

Cache = list[dict[str, jax.Array]]  # per layer {"k": [B,S,K,H], "v": [B,S,K,H]}

_init = nnx.initializers.normal(stddev=0.02)


def _param(rngs: nnx.Rngs | None, shape, dtype, logical, init=_init) -> nnx.Param:
  value = init(rngs.params(), shape, dtype) if init is not None else jnp.zeros(shape, dtype)
  return nnx.Param(value, logical_axes=tuple(logical))


def _on_cpu() -> bool:
  """The CPU-only paths below (XLA:CPU's costs; other backends keep the plain ops)."""
  return jax.default_backend() == "cpu"


def project(spec: str, x, w, preferred_element_type=None):
  """`jnp.einsum(spec, x, w)` for a projection: x's last dims contract with w's first
  (e.g. "btd,dnh->btnh").

  On XLA:CPU it runs as one 2-D matmul over the flattened rows ([rows, C] @ [C, O]).
  The einsum's weight gradient contracts two row dims (batch and time); XLA:CPU
  canonicalises that dot with a transposing copy of the activation gradient fused into
  its producer, which cost more than the backward's matmuls of the MLP (docs/performance.md).
  Other backends keep the einsum.
  """
  if not _on_cpu():
    return jnp.einsum(spec, x, w, preferred_element_type=preferred_element_type)
  xs, ws = spec.split("->")[0].split(",")
  n_c = sum(ch in xs for ch in ws)
  if xs[len(xs) - n_c:] != ws[:n_c]:
    raise ValueError(f"project needs x's last dims to be w's first: {spec!r}")
  lead, out = x.shape[:x.ndim - n_c], w.shape[n_c:]
  c = math.prod(w.shape[:n_c])
  y = jnp.matmul(x.reshape(-1, c), w.reshape(c, -1), preferred_element_type=preferred_element_type)
  return y.reshape(*lead, *out)


def _row_sum(x, n: int):
  """x summed over all but its last n dims, as a product by a row of ones (float32)."""
  tail = x.shape[x.ndim - n:]
  rows = x.reshape(-1, math.prod(tail))
  ones = jnp.ones((1, rows.shape[0]), x.dtype)
  return jnp.matmul(ones, rows, preferred_element_type=jnp.float32).reshape(tail)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _broadcast_param(mul: bool, x, w):
  """x * w (mul) or x + w, w broadcast over x's leading dims; w's gradient by `_row_sum`."""
  return x * w if mul else x + w


def _broadcast_param_fwd(mul, x, w):
  return _broadcast_param(mul, x, w), (x if mul else None, w)   # w: its shape and dtype


def _broadcast_param_bwd(mul, res, g):
  x, w = res
  if mul:
    return g * w, _row_sum(g * x, w.ndim).astype(w.dtype)
  return g, _row_sum(g, w.ndim).astype(w.dtype)


_broadcast_param.defvjp(_broadcast_param_fwd, _broadcast_param_bwd)


def scale_by(x, w):
  """x * w, w broadcast over x's leading dims (a norm's scale).

  On XLA:CPU w's gradient, a sum over every row, is a product by a row of ones: XLA:CPU splits
  a row reduction into reduce-window + reduce, which ran ~7x slower ([4032, 512]: 10.4 vs
  1.5 ms) and took 10% of the 25M update's op time with `add_bias` (docs/performance.md).
  Other backends keep the plain product."""
  return _broadcast_param(True, x, w) if _on_cpu() else x * w


def add_bias(x, b):
  """x + b, b broadcast over x's leading dims; b's gradient as in `scale_by`."""
  return _broadcast_param(False, x, b) if _on_cpu() else x + b


class RMSNorm(nnx.Module):
  """RMSNorm computed in float32; scale applied in the input dtype (as HF does)."""

  def __init__(self, dim: int, eps: float, param_dtype, logical=("norm",)):
    self.eps = eps
    self.scale = nnx.Param(jnp.ones((dim,), param_dtype), logical_axes=tuple(logical))

  def __call__(self, x):
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return scale_by(y.astype(x.dtype), self.scale[...].astype(x.dtype))


def rope_inv_freq(head_dim: int, theta: float, scaling: RopeScaling | None) -> np.ndarray:
  """Inverse frequencies [H/2], with Llama 3 wavelength-dependent scaling."""
  inv = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
  if scaling is None:
    return inv.astype(np.float32)
  old = scaling.original_max_position_embeddings
  low_wl, high_wl = old / scaling.low_freq_factor, old / scaling.high_freq_factor
  wavelen = 2 * math.pi / inv
  scaled = np.where(wavelen > low_wl, inv / scaling.factor, inv)
  smooth = (old / wavelen - scaling.low_freq_factor) / (
      scaling.high_freq_factor - scaling.low_freq_factor)
  smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
  medium = (wavelen >= high_wl) & (wavelen <= low_wl)
  return np.where(medium, smoothed, scaled).astype(np.float32)


def rope_tables(positions_BT, inv_freq):
  """(cos, sin), each [B, T, 1, H/2] float32: the rotation of every position, computed once per
  forward and shared by all layers (and by q and k).

  On XLA:CPU they are materialised (`_materialize`): fused into their consumers, the sin / cos
  were recomputed per head, per layer and again in the backward pass (docs/performance.md).
  """
  angles = positions_BT.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)  # [B,T,H/2]
  cs = _materialize(jnp.stack([jnp.cos(angles), jnp.sin(angles)]))             # [2,B,T,H/2]
  return cs[0][:, :, None, :], cs[1][:, :, None, :]


def _materialize(x):
  """x, computed once into a buffer of its own on XLA:CPU: routed through a matmul by the
  identity, which XLA cannot fuse into its consumers. Without it XLA:CPU duplicated the
  position cumsum and the sin / cos into every consumer (each head of q and k, each layer,
  and again in the backward pass). An optimization barrier does not stop that (XLA removes
  barriers before fusion), nor does a reduce (simplified away). Exact: each output is one
  product by 1.0 plus zeros. Other backends keep x as is."""
  if not _on_cpu():
    return x
  eye = jnp.eye(x.shape[-1], dtype=x.dtype)
  return jnp.matmul(x, eye, precision=jax.lax.Precision.HIGHEST)


def apply_rope(x_BTNH, rope):
  """Rotary embedding, "rotate half" convention of HF Llama/Qwen, in float32. `rope` is
  `rope_tables(positions, inv_freq)`."""
  cos, sin = rope
  x = x_BTNH.astype(jnp.float32)
  x1, x2 = jnp.split(x, 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x_BTNH.dtype)


class _Sharded(nnx.Module):
  """Holds the (hashable, static) rules and mesh used for activation constraints."""

  def _init_sharding(self, rules: ShardingRules | None, mesh: Mesh | None):
    self.rules, self.mesh = rules, mesh

  def shard(self, x, logical):
    return shard_activation(x, logical, self.rules, self.mesh)


class Attention(_Sharded):
  """Grouped-query attention with optional q/k/v bias (Qwen2) and q/k norm (Qwen3)."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, rules=None, mesh=None):
    d, n, k, h, pdt = cfg.embed_dim, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.jnp_param_dtype
    self.cfg = cfg
    self._init_sharding(rules, mesh)
    self.q_proj = _param(rngs, (d, n, h), pdt, ("embed", "heads", "head_dim"))
    self.k_proj = _param(rngs, (d, k, h), pdt, ("embed", "kv_heads", "head_dim"))
    self.v_proj = _param(rngs, (d, k, h), pdt, ("embed", "kv_heads", "head_dim"))
    self.o_proj = _param(rngs, (n, h, d), pdt, ("heads", "head_dim", "embed"))
    if cfg.qkv_bias:
      self.q_bias = _param(rngs, (n, h), pdt, ("heads", "head_dim"), init=None)
      self.k_bias = _param(rngs, (k, h), pdt, ("kv_heads", "head_dim"), init=None)
      self.v_bias = _param(rngs, (k, h), pdt, ("kv_heads", "head_dim"), init=None)
    if cfg.qk_norm:
      self.q_norm = RMSNorm(h, cfg.rms_norm_eps, pdt, logical=("head_dim",))
      self.k_norm = RMSNorm(h, cfg.rms_norm_eps, pdt, logical=("head_dim",))

  def __call__(self, x_BTD, rope, mask_BTS, cache: dict | None, cache_index):
    """rope: `rope_tables` of the positions (cos, sin [B, T, 1, H/2])."""
    cfg, dt = self.cfg, self.cfg.jnp_dtype
    q = project("btd,dnh->btnh", x_BTD, self.q_proj[...].astype(dt))
    k = project("btd,dkh->btkh", x_BTD, self.k_proj[...].astype(dt))
    v = project("btd,dkh->btkh", x_BTD, self.v_proj[...].astype(dt))
    if cfg.qkv_bias:
      q = add_bias(q, self.q_bias[...].astype(dt))
      k = add_bias(k, self.k_bias[...].astype(dt))
      v = add_bias(v, self.v_bias[...].astype(dt))
    if cfg.qk_norm:
      q, k = self.q_norm(q), self.k_norm(k)
    q = apply_rope(q, rope)
    k = apply_rope(k, rope)
    q = self.shard(q, ("batch", "seq", "act_heads", "head_dim"))

    # Keys as [B, K, H, S] and values as [B, K, S, H]: the cache's layouts (see
    # r1jax.models.kv_cache), in which both attention matmuls need no transpose.
    k_BKHS = k.transpose(0, 2, 3, 1)
    v_BKSH = v.transpose(0, 2, 1, 3)
    new_cache = None
    if cache is not None and jnp.ndim(cache_index) == 0:
      # All rows write at the same slot: prompts are left-padded to a common length.
      k_BKHS = jax.lax.dynamic_update_slice(cache["k"], k_BKHS.astype(cache["k"].dtype),
                                            (0, 0, 0, cache_index))
      v_BKSH = jax.lax.dynamic_update_slice(cache["v"], v_BKSH.astype(cache["v"].dtype),
                                            (0, 0, cache_index, 0))
    elif cache is not None:
      # One write slot per row (the continuous-batching engine: each row is at its own
      # step). A batched dynamic_update_slice is a scatter that updates in place.
      put = jax.vmap(lambda c, x, i, axis: jax.lax.dynamic_update_slice_in_dim(c, x, i, axis),
                     in_axes=(0, 0, 0, None))
      k_BKHS = put(cache["k"], k_BKHS.astype(cache["k"].dtype), cache_index, 2)
      v_BKSH = put(cache["v"], v_BKSH.astype(cache["v"].dtype), cache_index, 1)
    if cache is not None:
      new_cache = {"k": k_BKHS, "v": v_BKSH}
      k_BKHS, v_BKSH = k_BKHS.astype(dt), v_BKSH.astype(dt)
    seq = "cache_seq" if cache is not None else "seq"
    k_BKHS = self.shard(k_BKHS, ("batch", "act_kv_heads", "head_dim", seq))
    v_BKSH = self.shard(v_BKSH, ("batch", "act_kv_heads", seq, "head_dim"))

    b, t, n, h = q.shape
    kv = cfg.num_kv_heads
    q = q.reshape(b, t, kv, n // kv, h)
    if cfg.attention == "splash" and cache is None:   # mask_BTS is the MaskSpec (see below)
      out = splash.splash(q, k_BKHS, v_BKSH, mask_BTS, dt, mesh=self.mesh, rules=self.rules)
    elif cfg.attention in ("blocked", "splash"):   # splash with a cache: the blocked path
      out = attention.blocked(q, k_BKHS, v_BKSH, mask_BTS, cfg.attention_block, dt)
    elif cfg.attention in ("xla", "cudnn"):
      out = attention.dot_product(q, k_BKHS, v_BKSH, mask_BTS, cfg.attention, dt)
    else:
      if dt != jnp.float32 and _on_cpu():
        # XLA:CPU has no bf16 x bf16 -> f32 kernel for this (transpose-free) dot.
        q, k_BKHS = q.astype(jnp.float32), k_BKHS.astype(jnp.float32)
      out = attention.reference(q, k_BKHS, v_BKSH, mask_BTS, dt)
    out = out.reshape(b, t, n, h)
    out = self.shard(out, ("batch", "seq", "act_heads", "head_dim"))
    y = project("btnh,nhd->btd", out, self.o_proj[...].astype(dt))
    return y, new_cache


class MLP(_Sharded):
  """SwiGLU: down(silu(gate(x)) * up(x))."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, rules=None, mesh=None):
    d, f, pdt = cfg.embed_dim, cfg.mlp_dim, cfg.jnp_param_dtype
    self.cfg = cfg
    self._init_sharding(rules, mesh)
    self.gate_proj = _param(rngs, (d, f), pdt, ("embed", "mlp"))
    self.up_proj = _param(rngs, (d, f), pdt, ("embed", "mlp"))
    self.down_proj = _param(rngs, (f, d), pdt, ("mlp", "embed"))

  def __call__(self, x_BTD):
    dt = self.cfg.jnp_dtype
    g = project("btd,df->btf", x_BTD, self.gate_proj[...].astype(dt))
    u = project("btd,df->btf", x_BTD, self.up_proj[...].astype(dt))
    hid = self.shard(jax.nn.silu(g) * u, ("batch", "seq", "act_mlp"))
    return project("btf,fd->btd", hid, self.down_proj[...].astype(dt))


class Block(_Sharded):
  """Pre-norm residual block: x + attn(norm(x)); x + mlp(norm(x))."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, rules=None, mesh=None):
    self.input_norm = RMSNorm(cfg.embed_dim, cfg.rms_norm_eps, cfg.jnp_param_dtype)
    self.attn = Attention(cfg, rngs=rngs, rules=rules, mesh=mesh)
    self.post_attn_norm = RMSNorm(cfg.embed_dim, cfg.rms_norm_eps, cfg.jnp_param_dtype)
    self.mlp = MLP(cfg, rngs=rngs, rules=rules, mesh=mesh)
    self._init_sharding(rules, mesh)

  def __call__(self, x_BTD, rope, mask_BTS, cache, cache_index):
    a, new_cache = self.attn(self.input_norm(x_BTD), rope, mask_BTS, cache, cache_index)
    x = self.shard(x_BTD + a, ("batch", "seq", "act_embed"))
    x = self.shard(x + self.mlp(self.post_attn_norm(x)), ("batch", "seq", "act_embed"))
    return x, new_cache


def _block_forward(block: Block, x, rope, mask, cache, cache_index):
  return block(x, rope, mask, cache, cache_index)


_remat_block_forward = nnx.remat(_block_forward)


def make_attention_mask(kv_mask_BS, t: int, cache_index=None, segment_ids_BT=None):
  """[B, T, S] boolean: causal over slots, valid keys only, same packing segment.

  The query at position t occupies slot `cache_index + t` (cache_index = 0
  without a cache, where S = T). `cache_index` is a scalar (every row writes at
  the same slot) or [B] (one write slot per row).
  """
  return _mask_spec(kv_mask_BS, cache_index, segment_ids_BT).full(t)


def _mask_spec(kv_mask_BS, cache_index, segment_ids_BT) -> attention.MaskSpec:
  offset = jnp.zeros((), jnp.int32) if cache_index is None else jnp.asarray(cache_index)
  return attention.MaskSpec(kv_mask_BS, offset, segment_ids_BT, segment_ids_BT)


class Transformer(_Sharded):
  """The policy/reference/student network. See the module docstring for shapes."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, rules: ShardingRules | None = None,
               mesh: Mesh | None = None):
    self.cfg = cfg
    self._init_sharding(rules, mesh)
    self.embedding = _param(rngs, (cfg.vocab_size, cfg.embed_dim), cfg.jnp_param_dtype,
                            ("vocab", "embed"))
    self.layers = nnx.List([Block(cfg, rngs=rngs, rules=rules, mesh=mesh)
                            for _ in range(cfg.num_layers)])
    self.final_norm = RMSNorm(cfg.embed_dim, cfg.rms_norm_eps, cfg.jnp_param_dtype)
    if not cfg.tie_embeddings:
      self.lm_head = _param(rngs, (cfg.embed_dim, cfg.vocab_size), cfg.jnp_param_dtype,
                            ("embed", "vocab"))

  def unembed_matrix(self) -> jax.Array:
    """Output projection [D, V] in the compute dtype (the tied embedding's transpose)."""
    w = self.embedding[...].T if self.cfg.tie_embeddings else self.lm_head[...]
    return w.astype(self.cfg.jnp_dtype)

  def unembed(self, h_BTD) -> jax.Array:
    """Logits [B, T, V] in float32."""
    logits = project("btd,dv->btv", h_BTD, self.unembed_matrix(),
                     preferred_element_type=jnp.float32)
    return self.shard(logits, ("batch", "seq", "act_vocab"))

  def __call__(self, tokens_BT, positions_BT=None, kv_mask_BS=None, *, cache: Cache | None = None,
               cache_index=None, segment_ids_BT=None, return_hidden: bool = False
               ) -> tuple[jax.Array, Cache | None]:
    """Returns (logits [B,T,V] float32 or final hidden [B,T,D], updated cache or None).

    Args:
      tokens_BT: int token ids.
      positions_BT: RoPE positions. Default: count of valid tokens before each
        one (so left padding is skipped) without a cache; required with one.
      kv_mask_BS: 1 for valid key slots. Without a cache S = T (the input mask);
        with a cache S = cache length and the mask must already mark this
        call's slots [cache_index, cache_index + T) as valid.
      cache / cache_index: KV cache (see `r1jax.models.kv_cache`) and write slot,
        a scalar or one per row ([B] int32).
      segment_ids_BT: packing segments (no cache); attention stays within one.
    """
    b, t = tokens_BT.shape
    if cache is None:
      if kv_mask_BS is None:
        kv_mask_BS = jnp.ones((b, t), jnp.int32)
      if positions_BT is None:
        positions_BT = jnp.maximum(jnp.cumsum(kv_mask_BS.astype(jnp.int32), axis=1) - 1, 0)
    else:
      if kv_mask_BS is None or positions_BT is None or cache_index is None:
        raise ValueError("Cached decoding needs positions_BT, kv_mask_BS and cache_index")
      if len(cache) != self.cfg.num_layers:
        raise ValueError(f"Cache has {len(cache)} layers, model has {self.cfg.num_layers}")
    spec = _mask_spec(kv_mask_BS, cache_index if cache is not None else None, segment_ids_BT)
    # The blocked attention builds the mask per tile and splash maps it to segment ids;
    # the others take it whole.
    mask = spec if self.cfg.attention in ("blocked", "splash") else spec.full(t)
    x = jnp.take(self.embedding[...], tokens_BT, axis=0).astype(self.cfg.jnp_dtype)
    x = self.shard(x, ("batch", "seq", "act_embed"))
    forward = _remat_block_forward if (self.cfg.remat and cache is None) else _block_forward
    rope = rope_tables(positions_BT, rope_inv_freq(self.cfg.head_dim, self.cfg.rope_theta,
                                                   self.cfg.rope_scaling))
    new_cache = [] if cache is not None else None
    for i, block in enumerate(self.layers):
      x, layer_cache = forward(block, x, rope, mask,
                               None if cache is None else cache[i], cache_index)
      if cache is not None:
        new_cache.append(layer_cache)
    h = self.final_norm(x)
    if return_hidden:
      return h, new_cache
    return self.unembed(h), new_cache
