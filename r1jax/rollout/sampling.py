"""Pure sampling functions over float32 logits: temperature, top-k, top-p, greedy.

Shape suffixes: B rows, V vocab, K top-k size.

Two log-probabilities are returned for every drawn token:
  * `logprob`: under the temperature-scaled *full* softmax, log_softmax(logits / T).
    This is exactly what the trainer recomputes from its own forward pass, so it
    is the pi_old of the GRPO ratio.
  * `sampling_logprob`: under the truncated (top-k then top-p), renormalised
    distribution the token was actually drawn from. It equals `logprob` when no
    truncation is active; under greedy decoding it is 0 (a point mass).

Greedy decoding treats the temperature as 1 for `logprob`.

Randomness is per row: `row_keys(rng, step, n)` folds the step and then the row
index into `rng`, so a row's draw depends on (rng, step, row) only, never on the
batch size, on bucketing or on how the batch is sharded.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

_NEG_INF = -jnp.inf


def scale_logits(logits_BV: jax.Array, temperature: float) -> jax.Array:
  """logits / T in float32 (the one place the temperature is applied)."""
  logits_BV = logits_BV.astype(jnp.float32)
  if temperature == 1.0:
    return logits_BV
  return logits_BV / jnp.float32(temperature)


def full_logprobs(logits_BV: jax.Array, temperature: float = 1.0) -> jax.Array:
  """log_softmax(logits / T) [B, V]: the trainer's distribution."""
  return jax.nn.log_softmax(scale_logits(logits_BV, temperature), axis=-1)


def gather_logprobs(logprobs_BV: jax.Array, tokens_B: jax.Array) -> jax.Array:
  return jnp.take_along_axis(logprobs_BV, tokens_B[..., None].astype(jnp.int32), axis=-1)[..., 0]


def token_logprobs(logits_BV: jax.Array, tokens_B: jax.Array,
                   temperature: float = 1.0) -> jax.Array:
  """Log-prob [B] of `tokens_B` under the temperature-scaled full softmax."""
  return gather_logprobs(full_logprobs(logits_BV, temperature), tokens_B)


def _sorted_desc(x_BV: jax.Array, k: int) -> jax.Array:
  """The k largest values of each row, descending ([B, k])."""
  return jax.lax.top_k(x_BV, k)[0]


def truncate_logits(logits_BV: jax.Array, top_p: float = 1.0, top_k: int = 0,
                    top_p_candidates: int = 0) -> jax.Array:
  """Sets logits outside the top-k / top-p support to -inf (HF order: k, then p).

  Applied to already temperature-scaled logits. top-k keeps every token whose
  logit is >= the k-th largest (ties at the boundary are all kept). top-p keeps
  the minimal nucleus of the (top-k renormalised) distribution: tokens in
  descending order while the mass *before* them is < top_p, so the kept mass
  is >= top_p and dropping the last kept token would bring it below.
  `top_p >= 1` and `top_k <= 0` (or >= V) are off; both are static.

  top-p without top-k needs the logits in descending order; a full sort of a 152k
  vocabulary at every decode step is slow, so with `top_p_candidates` = C > 0 the
  nucleus is searched among the C largest logits only (`lax.top_k`), with the mass
  measured under the full softmax. If the nucleus needs more than C tokens, it is
  cut at C (the kept mass is then < top_p). 0 = exact (sorts all V).
  """
  v = logits_BV.shape[-1]
  use_k = 0 < top_k < v
  use_p = top_p < 1.0
  if not (use_k or use_p):
    return logits_BV
  if top_p <= 0.0:
    raise ValueError(f"top_p must be in (0, 1], got {top_p}")
  # Only the k largest matter once top-k is on, so top-p sorts k values, not V.
  capped = not use_k and 0 < top_p_candidates < v
  vals_BK = _sorted_desc(logits_BV, top_k if use_k else (top_p_candidates if capped else v))
  if use_p:
    if capped:
      # Probabilities under the full softmax (the tail beyond C still counts in Z).
      log_z_B1 = jax.nn.logsumexp(logits_BV, axis=-1, keepdims=True)
      probs_BK = jnp.exp(vals_BK - log_z_B1)
    else:
      probs_BK = jax.nn.softmax(vals_BK, axis=-1)
    mass_before_BK = jnp.cumsum(probs_BK, axis=-1) - probs_BK
    n_keep_B = jnp.maximum(jnp.sum(mass_before_BK < top_p, axis=-1), 1)
    threshold_B = jnp.take_along_axis(vals_BK, (n_keep_B - 1)[..., None], axis=-1)
  else:
    threshold_B = vals_BK[..., -1:]
  return jnp.where(logits_BV >= threshold_B, logits_BV, _NEG_INF)


def row_keys(rng: jax.Array, step, num_rows: int) -> jax.Array:
  """Per-row keys [B] = fold_in(fold_in(rng, step), row)."""
  step_key = jax.random.fold_in(rng, step)
  return jax.vmap(lambda i: jax.random.fold_in(step_key, i))(jnp.arange(num_rows, dtype=jnp.uint32))


def categorical(keys_B: jax.Array, logits_BV: jax.Array) -> jax.Array:
  """One draw per row from softmax(logits_BV) by inverting its CDF with one uniform per row.

  Same distribution as `jax.vmap(jax.random.categorical)`, which draws V Gumbel
  variates per row: on CPU that threefry work cost more than the model's matmuls at
  small sizes (docs/performance.md); this draws one. Tokens at probability 0 (-inf
  logits) are never drawn: the CDF is flat there.
  """
  v = logits_BV.shape[-1]
  u_B = jax.vmap(lambda k: jax.random.uniform(k, (), jnp.float32))(keys_B)
  cdf_BV = jnp.cumsum(jax.nn.softmax(logits_BV, axis=-1), axis=-1)
  # The first index whose CDF exceeds u * total (total ~ 1, up to rounding).
  idx_B = jnp.sum(cdf_BV <= (u_B * cdf_BV[:, -1])[:, None], axis=-1)
  return jnp.minimum(idx_B, v - 1).astype(jnp.int32)


def sample(logits_BV: jax.Array, keys_B: jax.Array | None, *, temperature: float = 1.0,
           top_p: float = 1.0, top_k: int = 0, greedy: bool = False,
           top_p_candidates: int = 0) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Draws one token per row.

  Args:
    logits_BV: raw model logits (any float dtype; computed in float32).
    keys_B: one PRNG key per row (see `row_keys`); unused when greedy.
    temperature, top_p, top_k, greedy, top_p_candidates: static sampling settings
      (see `truncate_logits`).

  Returns:
    (tokens_B int32, logprobs_B, sampling_logprobs_B), both float32; see the
    module docstring for the two log-probabilities.
  """
  logits_BV = logits_BV.astype(jnp.float32)
  if greedy:
    tokens_B = jnp.argmax(logits_BV, axis=-1).astype(jnp.int32)
    logprobs_B = token_logprobs(logits_BV, tokens_B, 1.0)
    return tokens_B, logprobs_B, jnp.zeros_like(logprobs_B)
  if temperature <= 0.0:
    raise ValueError(f"temperature must be > 0 when not greedy, got {temperature}")
  scaled_BV = scale_logits(logits_BV, temperature)
  truncated_BV = truncate_logits(scaled_BV, top_p, top_k, top_p_candidates)
  tokens_B = categorical(keys_B, truncated_BV)
  logprobs_B = gather_logprobs(jax.nn.log_softmax(scaled_BV, axis=-1), tokens_B)
  if truncated_BV is scaled_BV:
    return tokens_B, logprobs_B, logprobs_B
  sampling_logprobs_B = gather_logprobs(jax.nn.log_softmax(truncated_BV, axis=-1), tokens_B)
  return tokens_B, logprobs_B, sampling_logprobs_B
