"""The GRPO family of policy losses, as pure jittable functions of (params, batch).

One clipped-surrogate loss covers GRPO (DeepSeekMath / R1), Dr. GRPO, DAPO and GSPO;
`LossConfig` selects the variant (see docs/grpo.md for every formula and its source):

  per token   ℓ_{i,t} = max(-A_i ρ_{i,t}, -A_i clip(ρ_{i,t}, 1-ε_low, 1+ε_high))
                        [dual-clip, A_i < 0: min(ℓ, -c A_i)]  + β KL_{i,t}
  ratio       "token":    ρ_{i,t} = exp(logπθ - logπold)
              "sequence": ρ_{i,t} = exp(logπθ - sg[logπθ] + sg[log s_i]),
                          log s_i = mean_t (logπθ - logπold)           (GSPO)
  aggregation "seq_mean_token_mean":     Σ_i (1/|o_i|) Σ_t ℓ / num_seqs_global
              "token_mean":              Σ_i Σ_t ℓ / num_tokens_global      (DAPO)
              "seq_mean_token_sum_norm": Σ_i Σ_t ℓ / (num_seqs_global L_max) (Dr. GRPO)

Every aggregation is a *sum* over the rows of `batch` divided by global counts that the
caller passes in (`num_tokens_global`, `num_seqs_global`, default: this batch's counts).
So the loss of a batch is the sum of the losses of its minibatches, each given the full
batch's counts: gradient accumulation and batch sharding leave the normaliser unchanged.

With β = 0 the reference model is not touched: no `ref_logprobs`, no forward pass.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from r1jax.rl.logprobs import DEFAULT_VOCAB_CHUNK, completion_logprobs

RATIO_LEVELS = ("token", "sequence")
AGGREGATIONS = ("seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm")
KL_ESTIMATORS = ("k1", "k2", "k3", "k3+")
IS_CORRECTIONS = ("none", "tis", "mis")

Batch = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Selects the loss variant. Frozen and hashable, so it can be a static jit argument.

  Attributes:
    clip_eps_low / clip_eps_high: clip range [1 - low, 1 + high]; different values are
      DAPO's clip-higher (0.2 / 0.28); GSPO uses about 3e-4 / 4e-4.
    dual_clip_c: if set (e.g. 3.0), for A < 0 the per-token loss is bounded by -c A.
    ratio_level: "token" (PPO/GRPO) or "sequence" (GSPO).
    aggregation: see the module docstring.
    max_completion_length: L_max of Dr. GRPO's constant normaliser; None means the
      width L of `completion_ids` (the GRPO trainer sets it to rl.max_new_tokens, since it
      cuts a step's completions to a bucketed width: `width_independent`).
    beta: KL coefficient; 0 disables the reference model entirely.
    kl_estimator: "k1" (-Δ), "k2" (Δ²/2), "k3" (e^Δ - Δ - 1) or "k3+" (k3's value with
      k2's gradient, as verl's "low_var_kl+"), Δ = logπref - logπθ. See docs/grpo.md for
      what each one's gradient optimises.
    kl_clamp: if set, the per-token KL value is clamped to [-c, c] (verl clamps at 10): a
      rare token's e^Δ cannot dominate an update.
    kl_in_reward: put β·KL into the reward (per sequence, k1 summed over tokens, before the
      advantages) instead of the loss; k1 is then the right estimator (its expectation
      is the KL and it needs no gradient).
    temperature: the sampling temperature; logits are divided by it.
    vocab_chunk: vocab columns per chunk of the log-prob computation.
    mask_truncated: drop completions with `truncated` set from the loss (DAPO's
      overlong filtering); they are also left out of `global_counts`.
    is_correction: "none", "tis" (truncated importance sampling: each token's loss is
      weighted by min(w, is_cap)) or "mis" (masked IS: weight w, tokens with w > is_cap
      dropped), w = π_old(trainer) / π_sampler = exp(old_logprobs - sampler_logprobs);
      needs batch["sampler_logprobs"] (the trainer then recomputes π_old).
    is_cap: C of TIS / MIS.
  """
  clip_eps_low: float = 0.2
  clip_eps_high: float = 0.2
  dual_clip_c: float | None = None
  ratio_level: str = "token"
  aggregation: str = "seq_mean_token_mean"
  max_completion_length: int | None = None
  beta: float = 0.0
  kl_estimator: str = "k3"
  temperature: float = 1.0
  vocab_chunk: int | None = DEFAULT_VOCAB_CHUNK
  mask_truncated: bool = False
  kl_clamp: float | None = None
  kl_in_reward: bool = False
  is_correction: str = "none"
  is_cap: float = 2.0

  def __post_init__(self):
    if self.ratio_level not in RATIO_LEVELS:
      raise ValueError(f"ratio_level must be one of {RATIO_LEVELS}, got {self.ratio_level!r}")
    if self.aggregation not in AGGREGATIONS:
      raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
    if self.kl_estimator not in KL_ESTIMATORS:
      raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {self.kl_estimator!r}")
    if not (0 <= self.clip_eps_low < 1 and self.clip_eps_high >= 0):
      raise ValueError(f"need 0 <= clip_eps_low < 1 and clip_eps_high >= 0, got "
                       f"{self.clip_eps_low}, {self.clip_eps_high}")
    if self.dual_clip_c is not None and self.dual_clip_c <= 1:
      raise ValueError(f"dual_clip_c must be > 1, got {self.dual_clip_c}")
    if self.is_correction not in IS_CORRECTIONS:
      raise ValueError(f"is_correction must be one of {IS_CORRECTIONS}, got "
                       f"{self.is_correction!r}")
    if self.is_cap <= 0 or (self.kl_clamp is not None and self.kl_clamp <= 0):
      raise ValueError(f"need is_cap > 0 and kl_clamp > 0, got {self.is_cap}, {self.kl_clamp}")
    if self.beta < 0 or self.temperature <= 0:
      raise ValueError(f"need beta >= 0 and temperature > 0, got {self.beta}, {self.temperature}")

  def replace(self, **kw) -> "LossConfig":
    return dataclasses.replace(self, **kw)


# Paper settings of each variant (advantage estimators live in r1jax.rl.advantages).
PRESETS: dict[str, LossConfig] = {
    # DeepSeek-R1-Zero (2501.12948): beta 0.001, k3, temperature 1, eps 0.2 (DeepSeekMath).
    "grpo": LossConfig(beta=0.001, kl_estimator="k3"),
    # Dr. GRPO (2503.20783): constant normaliser G * L_max; mean-only advantages; no KL.
    "dr_grpo": LossConfig(aggregation="seq_mean_token_sum_norm"),
    # DAPO (2503.14476): clip-higher 0.2 / 0.28, token-level mean, no KL.
    "dapo": LossConfig(clip_eps_low=0.2, clip_eps_high=0.28, aggregation="token_mean"),
    # GSPO (2507.18071): sequence-level ratio, clip 3e-4 / 4e-4, no KL.
    "gspo": LossConfig(ratio_level="sequence", clip_eps_low=3e-4, clip_eps_high=4e-4),
}


def kl_penalty(logp: jax.Array, ref_logp: jax.Array, estimator: str = "k3",
               clamp: float | None = None) -> jax.Array:
  """Per-token KL(πθ || πref) estimate from Δ = logπref - logπθ at the sampled token.

  k1 = -Δ (unbiased, can be negative), k2 = Δ²/2, k3 = e^Δ - Δ - 1 (unbiased, >= 0;
  the DeepSeekMath/R1 choice, written with expm1 so it does not round below zero),
  k3+ = k3's value with k2's gradient (straight-through: k2 + sg[k3 - k2]).
  With the KL in the loss and tokens sampled from πθ, the expected gradients are
  k1: 0; k2: ∇KL(πθ || πref); k3: ∇KL(πref || πθ) (docs/grpo.md, tests/rl/test_kl.py).
  `clamp` clips the value to [-clamp, clamp] (zero gradient outside).
  """
  delta = ref_logp - logp
  if estimator == "k1":
    kl = -delta
  elif estimator == "k2":
    kl = 0.5 * delta * delta
  elif estimator == "k3":
    kl = jnp.expm1(delta) - delta
  elif estimator == "k3+":
    k2 = 0.5 * delta * delta
    kl = k2 + jax.lax.stop_gradient(jnp.expm1(delta) - delta - k2)
  else:
    raise ValueError(f"Unknown KL estimator {estimator!r}; expected one of {KL_ESTIMATORS}")
  if clamp is not None:
    kl = jnp.clip(kl, -clamp, clamp)
  return kl


def loss_mask(batch: Batch, cfg: LossConfig):
  """The [N, L] float mask of tokens in the loss (numpy or jnp, as the batch)."""
  mask = batch["completion_mask"]
  xp = jnp if isinstance(mask, jax.Array) else np
  mask = xp.asarray(mask).astype(xp.float32)
  if cfg.mask_truncated:
    if "truncated" not in batch:
      raise KeyError("mask_truncated=True needs batch['truncated'] [N]")
    keep = 1.0 - xp.asarray(batch["truncated"]).astype(xp.float32)
    mask = mask * keep[:, None]
  return mask


def width_independent(loss_cfg: LossConfig, max_new_tokens: int) -> LossConfig:
  """`loss_cfg` with Dr. GRPO's constant normaliser L_max fixed at max_new_tokens when unset
  (unset, it is the batch's completion width, which the GRPO trainer changes from step to
  step: `r1jax.rl.experience.cut_completions`)."""
  if loss_cfg.max_completion_length is not None:
    return loss_cfg
  return dataclasses.replace(loss_cfg, max_completion_length=int(max_new_tokens))


def global_counts(batch: Batch, cfg: LossConfig) -> dict[str, Any]:
  """`num_tokens_global` / `num_seqs_global` of a full batch, to attach to each minibatch.

  num_seqs counts every row (an all-masked row contributes 0 to the sum but still counts,
  as in TRL's seq-mean); num_tokens counts the tokens in the loss.
  """
  mask = loss_mask(batch, cfg)
  xp = jnp if isinstance(mask, jax.Array) else np
  return {"num_tokens_global": xp.asarray(mask.sum(), xp.float32),
          "num_seqs_global": xp.asarray(mask.shape[0], xp.float32)}


def _aggregate(x_NL, valid_NL, mask_NL, batch: Batch, cfg: LossConfig, num_tokens, num_seqs):
  x_sum_N = jnp.where(valid_NL, x_NL, 0.0).sum(axis=1)
  if cfg.aggregation == "token_mean":
    return x_sum_N.sum() / jnp.maximum(num_tokens, 1.0)
  if cfg.aggregation == "seq_mean_token_mean":
    len_N = mask_NL.sum(axis=1)
    return (x_sum_N / jnp.maximum(len_N, 1.0)).sum() / jnp.maximum(num_seqs, 1.0)
  l_max = cfg.max_completion_length or mask_NL.shape[1]
  return x_sum_N.sum() / (jnp.maximum(num_seqs, 1.0) * l_max)


def grpo_loss_from_logprobs(logp_NL: jax.Array, batch: Batch, cfg: LossConfig,
                            entropy_NL: jax.Array | None = None
                            ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The loss as a function of the current policy's completion log-probs [N, L].

  `batch` keys: completion_mask [N, L], advantages [N]; optional old_logprobs [N, L]
  (missing: on-policy, sg[logp]), ref_logprobs [N, L] (required iff beta > 0),
  truncated [N] (iff mask_truncated), num_tokens_global, num_seqs_global (scalars).
  """
  f32 = jnp.float32
  logp = logp_NL.astype(f32)
  mask = loss_mask(batch, cfg).astype(f32)
  valid = mask > 0
  adv_N = jnp.asarray(batch["advantages"], f32)
  old = batch.get("old_logprobs")
  old = jax.lax.stop_gradient(logp) if old is None else jnp.asarray(old, f32)
  num_tokens_local = mask.sum()
  num_tokens = jnp.asarray(batch.get("num_tokens_global", num_tokens_local), f32)
  num_seqs = jnp.asarray(batch.get("num_seqs_global", mask.shape[0]), f32)

  # Mask before exp: padding may hold arbitrary old log-probs, and inf * 0 is NaN.
  log_ratio = jnp.where(valid, logp - old, 0.0)
  if cfg.ratio_level == "sequence":
    log_s_N = log_ratio.sum(axis=1) / jnp.maximum(mask.sum(axis=1), 1.0)
    # Value s_i on every token, gradient s_i ∇logπθ(o_t): GSPO's token-level form.
    log_ratio = jnp.where(valid, logp - jax.lax.stop_gradient(logp - log_s_N[:, None]), 0.0)
  ratio = jnp.exp(log_ratio)
  a = adv_N[:, None]
  lo, hi = 1.0 - cfg.clip_eps_low, 1.0 + cfg.clip_eps_high
  pg = jnp.maximum(-a * ratio, -a * jnp.clip(ratio, lo, hi))
  dual = jnp.zeros_like(valid)
  if cfg.dual_clip_c is not None:
    bound = -a * cfg.dual_clip_c
    dual = (a < 0) & (pg > bound)
    pg = jnp.where(a < 0, jnp.minimum(pg, bound), pg)
  is_w = None
  if cfg.is_correction != "none":
    if batch.get("sampler_logprobs") is None:
      raise KeyError(f"is_correction={cfg.is_correction!r} needs batch['sampler_logprobs']")
    # w = π_old(trainer) / π_sampler per token; a constant weight (no gradient).
    log_w = jnp.where(valid, old - jnp.asarray(batch["sampler_logprobs"], f32), 0.0)
    w = jnp.exp(jnp.minimum(log_w, 30.0))
    is_w = (jnp.minimum(w, cfg.is_cap) if cfg.is_correction == "tis"
            else jnp.where(w <= cfg.is_cap, w, 0.0))
    pg = pg * jax.lax.stop_gradient(is_w)

  per_token = pg
  kl = None
  if cfg.beta > 0 and not cfg.kl_in_reward:
    if batch.get("ref_logprobs") is None:
      raise KeyError("beta > 0 needs batch['ref_logprobs'] (see compute_ref_logprobs)")
    kl = kl_penalty(logp, jnp.asarray(batch["ref_logprobs"], f32), cfg.kl_estimator,
                    cfg.kl_clamp)
    kl = jnp.where(valid, kl, 0.0)
    per_token = pg + cfg.beta * kl
  loss = _aggregate(per_token, valid, mask, batch, cfg, num_tokens, num_seqs)

  # Diagnostics: token means over this batch (weight by num_tokens to combine batches).
  denom = jnp.maximum(num_tokens_local, 1.0)

  def tok_mean(x):
    return jnp.where(valid, x, 0.0).sum() / denom

  low = valid & (a < 0) & (ratio < lo)    # clipped (zero gradient) on the low side
  high = valid & (a > 0) & (ratio > hi)   # ... and on the high side
  any_tok = num_tokens_local > 0
  ratio_v = jax.lax.stop_gradient(ratio)
  # |log π_θ - log π_old| and the sequence ratio before any clipping: at the first update
  # of a batch (π_θ = the params that sampled it) this is the sampler-trainer gap.
  raw = jax.lax.stop_gradient(jnp.where(valid, logp - old, 0.0))
  has_N = valid.any(axis=1)
  s_N = jnp.exp(raw.sum(axis=1) / jnp.maximum(valid.sum(axis=1), 1))
  out_N = has_N & ((s_N < lo) | (s_N > hi))
  aux = {
      "loss": loss,
      "pg_loss": _aggregate(pg, valid, mask, batch, cfg, num_tokens, num_seqs),
      "clip_frac_low": tok_mean(low.astype(f32)),
      "clip_frac_high": tok_mean(high.astype(f32)),
      "clip_frac": tok_mean((low | high).astype(f32)),
      "dual_clip_frac": tok_mean((dual & valid).astype(f32)),
      "kl": jnp.zeros((), f32) if kl is None else tok_mean(kl),
      "entropy": jnp.zeros((), f32) if entropy_NL is None else tok_mean(entropy_NL.astype(f32)),
      "ratio_mean": tok_mean(ratio_v),
      "ratio_min": jnp.where(any_tok, jnp.where(valid, ratio_v, jnp.inf).min(), 1.0),
      "ratio_max": jnp.where(any_tok, jnp.where(valid, ratio_v, -jnp.inf).max(), 1.0),
      "adv_mean": adv_N.mean(),
      "pi_old/gap_max": jnp.abs(raw).max(),
      "pi_old/gap_mean": tok_mean(jnp.abs(raw)),
      "pi_old/seq_ratio_out_of_clip": out_N.sum() / jnp.maximum(has_N.sum(), 1),
      "is_weight_mean": jnp.ones((), f32) if is_w is None else tok_mean(is_w),
      "num_tokens": num_tokens_local,
  }
  aux = jax.tree.map(jax.lax.stop_gradient, aux)
  return loss, aux


def grpo_loss(params: Any, batch: Batch, cfg: LossConfig, graphdef: nnx.GraphDef,
              group_size: int = 1) -> tuple[jax.Array, dict[str, jax.Array]]:
  """(loss, aux) of the policy `(graphdef, params)` on a GRPO batch. Pure; params first.

  batch: prompt_ids [N, P] (left-padded), prompt_mask [N, P], completion_ids [N, L],
  completion_mask [N, L], advantages [N], old_logprobs [N, L] (the sampler's), and as
  needed ref_logprobs [N, L], truncated [N], num_tokens_global, num_seqs_global.
  Under jit, `cfg` and `graphdef` are static (or use `make_grpo_loss`). group_size > 1:
  the rows are whole groups in order, and each prompt's forward runs once per group
  (`completion_logprobs`).
  """
  logp, entropy = completion_logprobs((graphdef, params), batch["prompt_ids"],
                                      batch["prompt_mask"], batch["completion_ids"],
                                      batch["completion_mask"], cfg.temperature, cfg.vocab_chunk,
                                      group_size)
  return grpo_loss_from_logprobs(logp, batch, cfg, entropy_NL=entropy)


def make_grpo_loss(graphdef: nnx.GraphDef, cfg: LossConfig, group_size: int = 1
                   ) -> Callable[[Any, Batch], tuple[jax.Array, dict[str, jax.Array]]]:
  """`fn(params, batch) -> (loss, aux)` closing over the static graphdef and config."""
  def loss_fn(params, batch):
    return grpo_loss(params, batch, cfg, graphdef, group_size)
  return loss_fn
