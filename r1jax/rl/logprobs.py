"""Per-token log-probs and entropies, computed in vocab chunks.

The [B, T, V] logits of a 150k-vocab model are the largest activation of an RL step
(16k tokens x 152k x 4 bytes = 10 GB), and only two numbers per token are needed:
log p(target) and the entropy. `logprobs_from_hidden` scans over chunks of C columns
of the [D, V] unembedding and keeps running statistics per token (online softmax):

  m  running max of the logits z (stop-gradient; both outputs are invariant to it)
  s  = sum_v exp(z_v - m)
  a  = sum_v exp(z_v - m) (z_v - m)
  zt = z[target]

  log Z = m + log s,   log p(target) = zt - log Z,   H = log Z - E_p[z] = log s - a / s.

Keeping `a` relative to m (instead of sum p z) avoids cancelling two large numbers in H.
The chunk body is wrapped in `jax.checkpoint`, so the backward pass recomputes each
[B, T, C] chunk instead of storing all of them: at most one chunk of logits is alive in
either direction. V need not be a multiple of C: the last chunk is zero-padded and its
padded logits are set to a large negative number (exp -> 0).

Logits are divided by the sampling temperature before the softmax, so the result equals
the sampler's log_softmax(logits / T) and the "old" log-probs of GRPO can come straight
from the sampler.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from r1jax.models import kv_cache
from r1jax.models.factory import merge_params
from r1jax.models.transformer import project

DEFAULT_VOCAB_CHUNK = 8192
_NEG = -1e30  # finite: 0 * _NEG = 0, where -inf would give NaN in the entropy sums


def _pad_chunks(w_DV: jax.Array, chunk: int) -> tuple[jax.Array, int]:
  """[D, V] -> ([nC, D, C] zero-padded, nC)."""
  d, v = w_DV.shape
  n = -(-v // chunk)
  w = jnp.pad(w_DV, ((0, 0), (0, n * chunk - v)))
  return w.reshape(d, n, chunk).transpose(1, 0, 2), n


def logprobs_from_hidden(h_BTD: jax.Array, w_DV: jax.Array, targets_BT: jax.Array,
                         temperature: float = 1.0, vocab_chunk: int | None = DEFAULT_VOCAB_CHUNK
                         ) -> tuple[jax.Array, jax.Array]:
  """(log p(targets) [B,T] float32, entropy [B,T] float32) of softmax(h @ w / temperature).

  Args:
    h_BTD: final hidden states (after the final norm), compute dtype.
    w_DV: unembedding matrix (compute dtype); logits are accumulated in float32.
    targets_BT: int ids; entries outside [0, V) give log p = -log Z (callers mask them).
    temperature: divides the logits.
    vocab_chunk: columns per chunk; None or >= V means one chunk.
  """
  v = w_DV.shape[1]
  chunk = v if vocab_chunk is None else max(1, min(int(vocab_chunk), v))
  inv_t = 1.0 / float(temperature)
  targets_BT = targets_BT.astype(jnp.int32)
  if chunk == v:
    # One chunk: no scan, no padding, no recompute in the backward pass (the [B, T, V]
    # logits are one chunk's worth anyway). At small vocabularies the scan's loop and
    # rematerialisation cost more than the math (docs/performance.md).
    z = project("btd,dv->btv", h_BTD, w_DV, preferred_element_type=jnp.float32) * inv_t
    m = jax.lax.stop_gradient(z.max(axis=-1, keepdims=True))
    zs = z - m
    e = jnp.exp(zs)
    s = e.sum(-1)
    log_s = jnp.log(s)
    z_t = jnp.take_along_axis(zs, jnp.clip(targets_BT, 0, v - 1)[..., None], axis=-1)[..., 0]
    z_t = jnp.where((targets_BT >= 0) & (targets_BT < v), z_t, 0.0 - m[..., 0])
    return z_t - log_s, log_s - (e * zs).sum(-1) / s
  w_nDC, n = _pad_chunks(w_DV, chunk)
  b, t = targets_BT.shape
  col_C = jnp.arange(chunk, dtype=jnp.int32)

  def body(carry, xs):
    m, s, a, zt = carry
    w_DC, c = xs
    z = project("btd,dc->btc", h_BTD, w_DC, preferred_element_type=jnp.float32) * inv_t
    col = c * chunk + col_C
    z = jnp.where(col < v, z, _NEG)                      # padded columns of the last chunk
    m_new = jnp.maximum(m, jax.lax.stop_gradient(z.max(axis=-1)))
    scale = jnp.exp(m - m_new)
    zs = z - m_new[..., None]
    e = jnp.exp(zs)
    # Rescale the old sums to the new max: sum e^(z-m_new)(z-m_new) over earlier chunks
    # = scale * (a + s (m - m_new)).
    a = scale * (a + s * (m - m_new)) + (e * zs).sum(-1)
    s = s * scale + e.sum(-1)
    idx = targets_BT - c * chunk
    hit = (idx >= 0) & (idx < chunk)
    z_t = jnp.take_along_axis(z, jnp.clip(idx, 0, chunk - 1)[..., None], axis=-1)[..., 0]
    zt = zt + jnp.where(hit, z_t, 0.0)
    return (m_new, s, a, zt), None

  zeros = jnp.zeros((b, t), jnp.float32)
  init = (jnp.full((b, t), _NEG, jnp.float32), zeros, zeros, zeros)
  # prevent_cse=False is the recommended setting inside scan (scan already prevents CSE).
  body = jax.checkpoint(body, prevent_cse=False)
  (m, s, a, zt), _ = jax.lax.scan(body, init, (w_nDC, jnp.arange(n, dtype=jnp.int32)))
  log_s = jnp.log(s)
  logp = (zt - m) - log_s  # same rounding order as jax.nn.log_softmax
  entropy = log_s - a / s
  return logp, entropy


def _model(model_or: Any) -> nnx.Module:
  if isinstance(model_or, nnx.Module):
    return model_or
  if isinstance(model_or, (tuple, list)) and len(model_or) == 2:
    return merge_params(*model_or)
  raise TypeError("expected an nnx model or a (graphdef, params) pair, got "
                  f"{type(model_or).__name__}")


def token_logprobs(model_or: Any, input_ids_BT: jax.Array, positions_BT: jax.Array | None,
                   mask_BT: jax.Array | None, targets_BT: jax.Array, temperature: float = 1.0,
                   vocab_chunk: int | None = DEFAULT_VOCAB_CHUNK
                   ) -> tuple[jax.Array, jax.Array]:
  """(log p(targets_BT[b, t] | input_ids_BT[b, :t+1]), entropy) at every position, float32.

  Args:
    model_or: an nnx `Transformer`, or a `(graphdef, params)` pair (params a pure dict;
      the form to use inside jit / grad, with params as the differentiated argument).
    input_ids_BT, positions_BT, mask_BT: as for the model's forward (positions None:
      the model derives them from the mask).
    targets_BT: the token each position predicts (usually input_ids shifted left by one).
  """
  model = _model(model_or)
  h_BTD, _ = model(input_ids_BT, positions_BT, mask_BT, return_hidden=True)
  return logprobs_from_hidden(h_BTD, model.unembed_matrix(), targets_BT, temperature,
                              vocab_chunk)


def completion_logprobs(model_or: Any, prompt_ids_NP: jax.Array, prompt_mask_NP: jax.Array,
                        completion_ids_NL: jax.Array, completion_mask_NL: jax.Array,
                        temperature: float = 1.0,
                        vocab_chunk: int | None = DEFAULT_VOCAB_CHUNK, group_size: int = 1
                        ) -> tuple[jax.Array, jax.Array]:
  """(log-probs [N, L], entropies [N, L]) of the completion tokens, in the GRPO layout.

  Prompts are left-padded (the sampler's layout: the last prompt column is a real
  token) and completions right-padded. The sequence prompt ++ completion[:, :-1] is run
  once, with positions = cumsum(mask) - 1 so padding is skipped exactly as the sampler
  does; the hidden state at column P-1+j predicts completion token j. Only those L
  columns go through the vocab projection. Values at masked completion positions are
  finite but meaningless.

  group_size > 1 says that rows come in groups of that many consecutive rows with the
  same prompt (GRPO's layout: row b*G + g is sample g of prompt b). The prompt's forward
  then runs once per group (`_shared_prompt_hidden`), not once per row: the same
  log-probs (to float rounding) and gradients, with (G-1)/G of the prompt positions'
  work saved. The caller guarantees the layout; N must be a multiple of group_size.
  """
  p = prompt_ids_NP.shape[1]
  model = _model(model_or)
  # Not with remat (the model rematerialises layers only without a cache): that keeps the
  # one-pass forward. Every attention path has a gradient through a cache ('blocked' skips
  # tiles with a static loop of `lax.cond`s).
  if group_size > 1 and completion_ids_NL.shape[1] > 1 and not model.cfg.remat:
    h = _shared_prompt_hidden(model, prompt_ids_NP, prompt_mask_NP, completion_ids_NL,
                              completion_mask_NL, group_size)
    return logprobs_from_hidden(h, model.unembed_matrix(), completion_ids_NL, temperature,
                                vocab_chunk)
  ids = jnp.concatenate([prompt_ids_NP, completion_ids_NL[:, :-1]], axis=1)
  mask = jnp.concatenate([prompt_mask_NP, completion_mask_NL[:, :-1]], axis=1).astype(jnp.int32)
  positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)
  h, _ = model(ids.astype(jnp.int32), positions, mask, return_hidden=True)
  return logprobs_from_hidden(h[:, p - 1:], model.unembed_matrix(), completion_ids_NL,
                              temperature, vocab_chunk)


def _shared_prompt_hidden(model, prompt_ids_NP, prompt_mask_NP, completion_ids_NL,
                          completion_mask_NL, group_size: int) -> jax.Array:
  """Final hidden states [N, L, D] at the L predicting columns, prompts run once per group.

  Pass 1 runs the B = N / G distinct prompts [B, P] and keeps their keys and values (a KV
  cache of P slots, in the compute dtype: no rounding). Pass 2 runs every row's completion
  tokens [N, L-1] at slots P.. of that cache broadcast to the G rows of each group, with
  the same RoPE positions and causal mask over valid slots as the one-pass forward. The
  gradient of the shared prompt states is the sum over the group's rows (the broadcast's
  transpose). The broadcasts go through [B, G, ...] reshapes, so rows sharded over the
  data axes stay sharded when B divides over them.
  """
  n, p = prompt_ids_NP.shape
  g = int(group_size)
  if n % g:
    raise ValueError(f"{n} rows are not whole groups of {g}")
  b = n // g
  cfg = model.cfg
  first = lambda x: x.reshape((b, g) + x.shape[1:])[:, 0]
  spread = lambda x: jnp.broadcast_to(x[:, None], (b, g) + x.shape[1:]).reshape(
      (n,) + x.shape[1:])
  pmask_BP = first(prompt_mask_NP).astype(jnp.int32)
  ppos_BP = jnp.maximum(jnp.cumsum(pmask_BP, axis=1) - 1, 0)
  cache = kv_cache.init_cache(cfg, b, p, dtype=cfg.jnp_dtype)
  h_BPD, cache = model(first(prompt_ids_NP).astype(jnp.int32), ppos_BP, pmask_BP, cache=cache,
                       cache_index=0, return_hidden=True)
  lc = completion_ids_NL.shape[1] - 1   # the last completion token predicts nothing
  grow = lambda x, axis: jnp.pad(spread(x), [(0, lc) if a == axis else (0, 0) for a in range(4)])
  cache = [{n_: grow(c[n_], kv_cache.SEQ_AXIS[n_]) for n_ in ("k", "v")} for c in cache]
  cmask_NL = completion_mask_NL[:, :-1].astype(jnp.int32)
  kv_mask = jnp.concatenate([spread(pmask_BP), cmask_NL], axis=1)
  # The one-pass forward's positions cumsum(mask) - 1, at the completion columns.
  cpos_NL = jnp.maximum(spread(pmask_BP.sum(1))[:, None] + jnp.cumsum(cmask_NL, axis=1) - 1, 0)
  h_NLD, _ = model(completion_ids_NL[:, :-1].astype(jnp.int32), cpos_NL, kv_mask, cache=cache,
                   cache_index=p, return_hidden=True)
  return jnp.concatenate([spread(h_BPD[:, -1:]), h_NLD], axis=1)


def compute_ref_logprobs(ref_params: Any, graphdef: nnx.GraphDef, batch: dict[str, jax.Array],
                         temperature: float = 1.0,
                         vocab_chunk: int | None = DEFAULT_VOCAB_CHUNK,
                         group_size: int = 1) -> jax.Array:
  """Reference-model log-probs [N, L] of a GRPO batch (for the KL term); no gradient."""
  logp, _ = completion_logprobs((graphdef, jax.lax.stop_gradient(ref_params)),
                                batch["prompt_ids"], batch["prompt_mask"],
                                batch["completion_ids"], batch["completion_mask"],
                                temperature, vocab_chunk, group_size)
  return logp
