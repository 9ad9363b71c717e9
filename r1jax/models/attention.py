"""Attention implementations, selected by `ModelConfig.attention`.

Shape suffixes as in transformer.py: B batch, T queries, S keys, K kv heads, G = N / K
query heads per kv head, H head dim. Queries come as [B, T, K, G, H], keys and values
in the cache layouts k [B, K, H, S], v [B, K, S, H] (see kv_cache.py).

* "reference": scores [B, K, G, T, S] in float32, masked, softmax, then values. The
  definition the others are tested against (tests/models/test_attention.py, 1e-5 fp32).
* "blocked": flash-style online softmax over key blocks of `attention_block` slots.
  Scores exist one [T, block] tile at a time, never [T, S]; the mask is built per
  block from its ingredients (`MaskSpec`), so no [T, S] boolean either. With a cache
  (decode), only the blocks up to the last written slot are read (a loop with a
  data-dependent trip count), so a step costs the filled context, not the cache
  length. Without a cache the loop has a static count and each block is
  rematerialised in the backward pass (memory O(T x block), not O(T x S)).
* "xla" / "cudnn": `jax.nn.dot_product_attention` with that `implementation` (cuDNN
  flash attention on GPU needs bf16/fp16; untested here: there is no GPU in CI).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from r1jax.models.config import ATTENTION_IMPLS  # noqa: F401  (re-exported)

MASK_VALUE = -1e30  # finite, so fully masked rows (left padding) give no NaN


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MaskSpec:
  """What the [B, T, S] mask is made of: valid key slots, the query slot offset
  (scalar or [B]: query t sits at slot offset + t) and optional packing segments of
  the queries [B, T] and keys [B, S] (no cache: the same ids, S = T). `block` builds
  any [B, T, size] slice of the mask."""
  kv_mask_BS: jax.Array
  q_offset: jax.Array
  q_segments_BT: jax.Array | None = None
  k_segments_BS: jax.Array | None = None

  def block(self, t: int, s0, size: int) -> jax.Array:
    slots = s0 + jnp.arange(size)
    off = self.q_offset
    q_slot = (off[:, None] if off.ndim else off[None, None]) + jnp.arange(t)[None, :]  # [B|1, T]
    mask = slots[None, None, :] <= q_slot[:, :, None]
    mask = mask & jax.lax.dynamic_slice_in_dim(self.kv_mask_BS, s0, size, axis=1
                                               )[:, None, :].astype(bool)
    if self.q_segments_BT is not None:
      seg_k = jax.lax.dynamic_slice_in_dim(self.k_segments_BS, s0, size, axis=1)
      mask = mask & (self.q_segments_BT[:, :, None] == seg_k[:, None, :])
    return mask

  def full(self, t: int) -> jax.Array:
    return self.block(t, 0, self.kv_mask_BS.shape[1])


# Decode-sized queries (G * T at most this many per kv head) on CPU take the
# multiply-reduce path of `reference`: see there.
SMALL_QUERY_ROWS = 8


def reference(q_BTKGH, k_BKHS, v_BKSH, mask_BTS, dtype):
  b, t, k, g, h = q_BTKGH.shape
  if g * t <= SMALL_QUERY_ROWS and jax.default_backend() == "cpu":
    return _reference_small_query(q_BTKGH, k_BKHS, v_BKSH, mask_BTS, dtype)
  scores = jnp.einsum("btkgh,bkhs->bkgts", q_BTKGH, k_BKHS, preferred_element_type=jnp.float32)
  scores = scores * (h ** -0.5)
  scores = jnp.where(mask_BTS[:, None, None, :, :], scores, MASK_VALUE)
  probs = jax.nn.softmax(scores, axis=-1).astype(dtype)
  return jnp.einsum("bkgts,bksh->btkgh", probs, v_BKSH)


def _reference_small_query(q_BTKGH, k_BKHS, v_BKSH, mask_BTS, dtype):
  """`reference` for decode steps on CPU, as broadcast-multiply-reduce instead of dots.

  In decode the two attention matmuls are B*K tiny products ([G*T, H] @ [H, S]): XLA:CPU
  runs them as a batched dot that cost as much as all the model's weight matmuls
  together (docs/performance.md). As fused multiply-reduces they are one pass over the
  cache (k reduced over H, v over S; the cache layouts keep the reduced axis outer and
  the kept one contiguous). Same math, float32 accumulation; summation order differs.
  """
  f32 = jnp.float32
  h = q_BTKGH.shape[-1]
  q_BKGTH = q_BTKGH.transpose(0, 2, 3, 1, 4).astype(f32)
  scores = jnp.sum(q_BKGTH[..., None] * k_BKHS[:, :, None, None].astype(f32), axis=-2)
  scores = scores * (h ** -0.5)                                        # [B, K, G, T, S]
  scores = jnp.where(mask_BTS[:, None, None, :, :], scores, MASK_VALUE)
  probs = jax.nn.softmax(scores, axis=-1).astype(dtype).astype(f32)
  out = jnp.sum(probs[..., None] * v_BKSH[:, :, None, None].astype(f32), axis=-2)  # [B,K,G,T,H]
  return out.transpose(0, 3, 1, 2, 4).astype(dtype)


def blocked(q_BTKGH, k_BKHS, v_BKSH, spec: MaskSpec, block: int, cached: bool, dtype):
  """Online-softmax attention over key blocks (see the module docstring)."""
  b, t, k, g, h = q_BTKGH.shape
  s = k_BKHS.shape[-1]
  block = min(block, s)
  pad = -s % block
  if pad:  # padded key slots are invalid in the mask
    k_BKHS = jnp.pad(k_BKHS, ((0, 0), (0, 0), (0, 0), (0, pad)))
    v_BKSH = jnp.pad(v_BKSH, ((0, 0), (0, 0), (0, pad), (0, 0)))
    spec = dataclasses.replace(spec, kv_mask_BS=jnp.pad(spec.kv_mask_BS, ((0, 0), (0, pad))),
                               k_segments_BS=None if spec.k_segments_BS is None else
                               jnp.pad(spec.k_segments_BS, ((0, 0), (0, pad)), constant_values=-1))
  q = q_BTKGH.astype(jnp.float32) * (h ** -0.5)

  def body(j, carry):
    m, l, acc = carry                                       # [B,K,G,T], [B,K,G,T], [B,K,G,T,H]
    s0 = j * block
    kb = jax.lax.dynamic_slice_in_dim(k_BKHS, s0, block, axis=3).astype(jnp.float32)
    vb = jax.lax.dynamic_slice_in_dim(v_BKSH, s0, block, axis=2).astype(jnp.float32)
    sc = jnp.einsum("btkgh,bkhs->bkgts", q, kb)
    sc = jnp.where(spec.block(t, s0, block)[:, None, None], sc, MASK_VALUE)
    m_new = jnp.maximum(m, jnp.max(sc, axis=-1))
    corr = jnp.exp(m - m_new)
    p = jnp.exp(sc - m_new[..., None])
    l = l * corr + jnp.sum(p, axis=-1)
    acc = acc * corr[..., None] + jnp.einsum("bkgts,bksh->bkgth", p, vb)
    return m_new, l, acc

  init = (jnp.full((b, k, g, t), -jnp.inf, jnp.float32), jnp.zeros((b, k, g, t), jnp.float32),
          jnp.zeros((b, k, g, t, h), jnp.float32))
  n_blocks = (s + pad) // block
  if cached:
    # Only blocks holding a slot <= the last query's slot can hold a valid key.
    last = jnp.max(spec.q_offset) + t - 1
    n_read = jnp.minimum(last // block + 1, n_blocks)
    _, l, acc = jax.lax.fori_loop(0, n_read, body, init)
  else:
    _, l, acc = jax.lax.fori_loop(0, n_blocks, jax.checkpoint(body), init)
  out = acc / l[..., None]
  return out.transpose(0, 3, 1, 2, 4).astype(dtype)        # [B, T, K, G, H]


def dot_product(q_BTKGH, k_BKHS, v_BKSH, mask_BTS, implementation: str, dtype):
  """`jax.nn.dot_product_attention` (GQA: query head k*G + g uses kv head k)."""
  b, t, k, g, h = q_BTKGH.shape
  q = q_BTKGH.reshape(b, t, k * g, h)
  key = k_BKHS.transpose(0, 3, 1, 2).astype(q.dtype)        # [B, S, K, H]
  value = v_BKSH.transpose(0, 2, 1, 3).astype(q.dtype)
  out = jax.nn.dot_product_attention(q, key, value, mask=mask_BTS[:, None], scale=h ** -0.5,
                                     implementation=implementation)
  return out.reshape(b, t, k, g, h).astype(dtype)
