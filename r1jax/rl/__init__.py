"""GRPO and its variants: advantages, vocab-chunked log-probs and pure losses.

The trainer loop lives in `r1jax.rl.trainer`; this package's modules are pure functions.
"""
from r1jax.rl.advantages import (ESTIMATORS, compute_advantages, dr_grpo_advantages,
                                 grpo_advantages, rloo_advantages, zero_variance_groups)
from r1jax.rl.logprobs import (completion_logprobs, compute_ref_logprobs, logprobs_from_hidden,
                               token_logprobs)
from r1jax.rl.losses import (AGGREGATIONS, KL_ESTIMATORS, PRESETS, RATIO_LEVELS, LossConfig,
                             global_counts, grpo_loss, grpo_loss_from_logprobs, kl_penalty,
                             loss_mask, make_grpo_loss)

__all__ = [
    "AGGREGATIONS", "ESTIMATORS", "KL_ESTIMATORS", "PRESETS", "RATIO_LEVELS", "LossConfig",
    "completion_logprobs", "compute_advantages", "compute_ref_logprobs", "dr_grpo_advantages",
    "global_counts", "grpo_advantages", "grpo_loss", "grpo_loss_from_logprobs", "kl_penalty",
    "logprobs_from_hidden", "loss_mask", "make_grpo_loss", "rloo_advantages", "token_logprobs",
    "zero_variance_groups",
]
