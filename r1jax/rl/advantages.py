"""Group-relative advantages from per-completion rewards (numpy on the host, jnp under jit).

Layout: `rewards` is [B*G] with the G completions of prompt i in the contiguous rows
i*G .. i*G+G-1 (the order the sampler produces). Every function here takes either a
numpy array (or list) and returns numpy, or a jax array / tracer and returns jax, so the
trainer may compute advantages on the host right after scoring or inside a jitted step.

Estimators (`compute_advantages(..., estimator=...)`), with r̄ the group mean:
  * "grpo"     A_i = (r_i - r̄) / (std(r) + eps)      DeepSeekMath / R1.
  * "dr_grpo"  A_i = r_i - r̄                          Dr. GRPO (2503.20783): no std division.
  * "rloo"     A_i = r_i - mean_{j != i} r_j = G/(G-1) (r_i - r̄)   (Ahmadian et al. 2024).

The std convention differs between public implementations: TRL and verl use
`torch.std` (unbiased, ddof=1) with eps 1e-4 (TRL) or 1e-6 (verl); the papers do not say.
Our default is ddof=0 (the population std of the G rewards) and eps=1e-4: `DEFAULT_DDOF`
/ `DEFAULT_EPS`, which are also the defaults of `config.rl.adv_ddof` / `adv_eps`
(`r1jax.stage_config.RLConfig`); both are arguments.

Zero-variance groups (all G rewards equal) get an advantage of exactly 0 for every
estimator, never NaN or a rounding residue like 1e-17 / 1e-6: they carry no learning
signal, and DAPO's dynamic sampling drops them (see `zero_variance_groups`).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ESTIMATORS = ("grpo", "dr_grpo", "rloo")
DEFAULT_DDOF = 0
DEFAULT_EPS = 1e-4


def _xp(x: Any):
  """jnp for jax arrays and tracers, numpy for everything else."""
  return jnp if isinstance(x, jax.Array) else np


def _as_float(rewards: Any, xp):
  r = xp.asarray(rewards)
  if not xp.issubdtype(r.dtype, xp.floating):
    r = r.astype(xp.float32)
  return r


def _groups(rewards: Any, group_size: int):
  """(xp, rewards as [B, G] floats)."""
  xp = _xp(rewards)
  r = _as_float(rewards, xp)
  if r.ndim != 1:
    raise ValueError(f"rewards must be 1-D [B*G], got shape {r.shape}")
  if group_size < 1 or r.shape[0] % group_size:
    raise ValueError(f"{r.shape[0]} rewards do not split into groups of {group_size}")
  return xp, r.reshape(-1, group_size)


def zero_variance_groups(rewards: Any, group_size: int, per_completion: bool = False):
  """Boolean mask of groups whose G rewards are all equal: [B], or [B*G] if per_completion.

  Exact equality (max == min), so the test is independent of eps and ddof.
  """
  xp, r_BG = _groups(rewards, group_size)
  zero_B = r_BG.max(axis=1) == r_BG.min(axis=1)
  if per_completion:
    return xp.repeat(zero_B, group_size)
  return zero_B


def grpo_advantages(rewards: Any, group_size: int, ddof: int = DEFAULT_DDOF,
                    eps: float = DEFAULT_EPS):
  """(r - group mean) / (group std with `ddof` + eps); [B*G] -> [B*G]."""
  xp, r_BG = _groups(rewards, group_size)
  if group_size - ddof <= 0:
    raise ValueError(f"std with ddof={ddof} needs group_size > {ddof}, got {group_size}")
  centered = r_BG - r_BG.mean(axis=1, keepdims=True)
  std = xp.sqrt((centered * centered).sum(axis=1, keepdims=True) / (group_size - ddof))
  zero = r_BG.max(axis=1, keepdims=True) == r_BG.min(axis=1, keepdims=True)
  # The where (not just eps) is what makes equal-reward groups exactly zero.
  adv = xp.where(zero, xp.zeros_like(centered), centered / (std + eps))
  return adv.reshape(-1)


def dr_grpo_advantages(rewards: Any, group_size: int):
  """r - group mean (Dr. GRPO); [B*G] -> [B*G]."""
  _, r_BG = _groups(rewards, group_size)
  return _centered(r_BG).reshape(-1)


def rloo_advantages(rewards: Any, group_size: int):
  """Leave-one-out baseline: r_i - mean of the other G-1 = G/(G-1) (r_i - r̄)."""
  _, r_BG = _groups(rewards, group_size)
  if group_size < 2:
    raise ValueError("RLOO needs group_size >= 2")
  return (_centered(r_BG) * (group_size / (group_size - 1))).reshape(-1)


def _centered(r_BG):
  xp = _xp(r_BG)
  centered = r_BG - r_BG.mean(axis=1, keepdims=True)
  zero = r_BG.max(axis=1, keepdims=True) == r_BG.min(axis=1, keepdims=True)
  return xp.where(zero, xp.zeros_like(centered), centered)


def compute_advantages(rewards: Any, group_size: int, estimator: str = "grpo",
                       ddof: int = DEFAULT_DDOF, eps: float = DEFAULT_EPS):
  """Advantages [B*G] for contiguous groups of `group_size`, by estimator name.

  `ddof` and `eps` only affect "grpo". numpy in -> numpy out, jax in -> jax out.
  """
  if estimator == "grpo":
    return grpo_advantages(rewards, group_size, ddof=ddof, eps=eps)
  if estimator == "dr_grpo":
    return dr_grpo_advantages(rewards, group_size)
  if estimator == "rloo":
    return rloo_advantages(rewards, group_size)
  raise ValueError(f"Unknown advantage estimator {estimator!r}; expected one of {ESTIMATORS}")
