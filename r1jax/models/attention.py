"""Attention implementations, selected by `ModelConfig.attention`.

Shape suffixes as in transformer.py: B batch, T queries, S keys, K kv heads, G = N / K
query heads per kv head, H head dim. Queries come as [B, T, K, G, H], keys and values
in the cache layouts k [B, K, H, S], v [B, K, S, H] (see kv_cache.py).

* "reference": scores [B, K, G, T, S] in float32, masked, softmax, then values. The
  definition the others are tested against (tests/models/test_attention.py, 1e-5 fp32).
* "blocked": flash-style online softmax over [block x block] tiles (`attention_block`).
  Scores exist one tile at a time, never [T, S]; the mask is built per tile from its
  ingredients (`MaskSpec`), so no [T, S] boolean either. Query block i reads only key
  blocks [lo, hi_i): none above its causal diagonal and none before the earliest valid
  key of any row (left padding): about half the tiles of a long prefill; in decode only
  the blocks up to the last written slot, so a step costs the filled context, not the
  cache length. The loop has a static trip count with the skipped tiles under `lax.cond`,
  so every path (decode, prefill into a cache, the training forward) reverse-mode
  differentiates; each query block and each tile is rematerialised in the backward pass
  (memory O(T x block), not O(T x S)).
* "splash": the Pallas splash kernel for TPU (r1jax/models/splash.py), no-cache calls only;
  with a cache the transformer uses "blocked".
* "xla" / "cudnn": `jax.nn.dot_product_attention` with that `implementation` (cuDNN
  flash attention on GPU needs bf16/fp16; untested here: there is no GPU in CI).
"""
from __future__ import annotations

import dataclasses
import functools

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

  def tile(self, q0, tq: int, s0, sk: int) -> jax.Array:
    """[B, tq, sk] slice of the mask: queries q0 .. q0+tq-1, key slots s0 .. s0+sk-1."""
    slots = s0 + jnp.arange(sk)
    off = self.q_offset
    q_slot = (off[:, None] if off.ndim else off[None, None]) + q0 + jnp.arange(tq)[None, :]
    mask = slots[None, None, :] <= q_slot[:, :, None]                          # [B|1, tq, sk]
    mask = mask & jax.lax.dynamic_slice_in_dim(self.kv_mask_BS, s0, sk, axis=1
                                               )[:, None, :].astype(bool)
    if self.q_segments_BT is not None:
      seg_q = jax.lax.dynamic_slice_in_dim(self.q_segments_BT, q0, tq, axis=1)
      seg_k = jax.lax.dynamic_slice_in_dim(self.k_segments_BS, s0, sk, axis=1)
      mask = mask & (seg_q[:, :, None] == seg_k[:, None, :])
    return mask

  def block(self, t: int, s0, size: int) -> jax.Array:
    """[B, t, size]: all t queries against key slots s0 .. s0+size-1."""
    return self.tile(0, t, s0, size)

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


def blocked(q_BTKGH, k_BKHS, v_BKSH, spec: MaskSpec, block: int, dtype):
  """Online-softmax attention over [block x block] tiles (see the module docstring).

  Queries go in blocks of `block` (an outer scan), keys in blocks of `block` (an inner
  loop). Query block i only needs key blocks [lo, hi_i): hi_i ends at the block holding the
  slot of its last query (causal), lo starts at the block holding the earliest valid key of
  any row (left padding). The others are skipped: about half the tiles of a long prefill,
  all but the filled ones of a decode step. The loop has a static trip count and the tiles
  outside the range sit under `lax.cond`, so the same code serves decode, prefill and the
  (reverse-differentiated) training forward, with or without a cache. A loop over exactly
  [lo, hi) would need a data-dependent trip count, which autodiff cannot reverse; on
  XLA:CPU it was no faster (an ad-hoc comparison, recorded in docs/sampler.md).
  """
  b, t, k, g, h = q_BTKGH.shape
  s = k_BKHS.shape[-1]
  bk, bq = min(block, s), min(block, t)
  pad_s, pad_t = -s % bk, -t % bq
  if pad_s:  # padded key slots are invalid in the mask
    k_BKHS = jnp.pad(k_BKHS, ((0, 0), (0, 0), (0, 0), (0, pad_s)))
    v_BKSH = jnp.pad(v_BKSH, ((0, 0), (0, 0), (0, pad_s), (0, 0)))
    spec = dataclasses.replace(spec, kv_mask_BS=jnp.pad(spec.kv_mask_BS, ((0, 0), (0, pad_s))),
                               k_segments_BS=None if spec.k_segments_BS is None else
                               jnp.pad(spec.k_segments_BS, ((0, 0), (0, pad_s)), constant_values=-1))
  if pad_t:  # padded queries are computed (whatever they see) and sliced off
    q_BTKGH = jnp.pad(q_BTKGH, ((0, 0), (0, pad_t), (0, 0), (0, 0), (0, 0)))
    if spec.q_segments_BT is not None:
      spec = dataclasses.replace(spec, q_segments_BT=jnp.pad(spec.q_segments_BT,
                                                             ((0, 0), (0, pad_t))))
  nq, nk = (t + pad_t) // bq, (s + pad_s) // bk
  q_nBTKGH = (q_BTKGH.astype(jnp.float32) * (h ** -0.5)).reshape(b, nq, bq, k, g, h
                                                                   ).transpose(1, 0, 2, 3, 4, 5)
  # A plain min, not an argmax: XLA constant-folds a variadic (argmax) reduce of a constant
  # mask (e.g. the all-ones default) very slowly (42 s for [8, 32768] at compile time).
  first_valid = jnp.min(jnp.where(spec.kv_mask_BS.astype(bool), jnp.arange(s + pad_s)[None],
                                  s + pad_s))
  lo = jnp.minimum(first_valid // bk, nk)
  last_offset = jnp.max(spec.q_offset)

  def key_block(i, q_BTKGH, j, carry):
    m, l, acc = carry                                       # [B,K,G,bq], [B,K,G,bq], [B,K,G,bq,H]
    s0 = j * bk
    kb = jax.lax.dynamic_slice_in_dim(k_BKHS, s0, bk, axis=3).astype(jnp.float32)
    vb = jax.lax.dynamic_slice_in_dim(v_BKSH, s0, bk, axis=2).astype(jnp.float32)
    sc = jnp.einsum("btkgh,bkhs->bkgts", q_BTKGH, kb)
    sc = jnp.where(spec.tile(i * bq, bq, s0, bk)[:, None, None], sc, MASK_VALUE)
    m_new = jnp.maximum(m, jnp.max(sc, axis=-1))
    corr = jnp.exp(m - m_new)
    p = jnp.exp(sc - m_new[..., None])
    l = l * corr + jnp.sum(p, axis=-1)
    acc = acc * corr[..., None] + jnp.einsum("bkgts,bksh->bkgth", p, vb)
    return m_new, l, acc

  def query_block(i, q_BTKGH):
    # Key blocks past the one holding the last query's slot hold no key this block sees.
    hi = jnp.minimum((last_offset + jnp.minimum((i + 1) * bq, t) - 1) // bk + 1, nk)
    init = (jnp.full((b, k, g, bq), -jnp.inf, jnp.float32), jnp.zeros((b, k, g, bq), jnp.float32),
            jnp.zeros((b, k, g, bq, h), jnp.float32))
    body = jax.checkpoint(functools.partial(key_block, i, q_BTKGH))
    skip = lambda j, c: jax.lax.cond((j >= lo) & (j < hi), body, lambda j, c: c, j, c)
    _, l, acc = jax.lax.fori_loop(0, nk, skip, init)
    # A query whose every key tile was skipped (l == 0: a fully padded row) gets 0, not NaN.
    return acc / jnp.where(l > 0, l, 1.0)[..., None]          # [B, K, G, bq, H]

  step = jax.checkpoint(query_block)
  _, out_nBKGTH = jax.lax.scan(lambda c, x: (c, step(*x)), None,
                               (jnp.arange(nq), q_nBTKGH))
  out = out_nBKGTH.transpose(1, 0, 4, 2, 3, 5).reshape(b, nq * bq, k, g, h)[:, :t]
  return out.astype(dtype)                                  # [B, T, K, G, H]


def dot_product(q_BTKGH, k_BKHS, v_BKSH, mask_BTS, implementation: str, dtype):
  """`jax.nn.dot_product_attention` (GQA: query head k*G + g uses kv head k)."""
  b, t, k, g, h = q_BTKGH.shape
  q = q_BTKGH.reshape(b, t, k * g, h)
  key = k_BKHS.transpose(0, 3, 1, 2).astype(q.dtype)        # [B, S, K, H]
  value = v_BKSH.transpose(0, 2, 1, 3).astype(q.dtype)
  out = jax.nn.dot_product_attention(q, key, value, mask=mask_BTS[:, None], scale=h ** -0.5,
                                     implementation=implementation)
  return out.reshape(b, t, k, g, h).astype(dtype)
