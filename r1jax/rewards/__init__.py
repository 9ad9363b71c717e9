"""Host-side rule-based rewards: verifiers (math, code, format, language, countdown), shaping, registry, pool.

Entry point for the trainer: `build_reward_system(cfg).score(completions, fields)`. See docs/rewards.md.
"""
from r1jax.rewards.code import CodeResult, run_tests
from r1jax.rewards.countdown import check_arithmetic, check_countdown, evaluate_expression
from r1jax.rewards.format import is_soft_format, is_strict_format, tag_count_score
from r1jax.rewards.language import language_share
from r1jax.rewards.math import extract_answer, verify
from r1jax.rewards.pool import ItemResult, RewardPool
from r1jax.rewards.registry import (RewardResult, RewardSpec, RewardSystem, accuracy_reward, build_reward_system,
                                    get, names, register)
from r1jax.rewards.shaping import cosine_scaled, overlong_penalty, repetition_fraction
# Registers `helpfulness` / `harmlessness` (all-scenario RL, scorer-based) after the built-ins.
from r1jax.rewards.general import register_scorer, resolve_scorer  # noqa: E402

__all__ = [
    'CodeResult', 'ItemResult', 'RewardPool', 'RewardResult', 'RewardSpec', 'RewardSystem', 'accuracy_reward',
    'build_reward_system', 'check_arithmetic', 'check_countdown', 'cosine_scaled', 'evaluate_expression',
    'extract_answer', 'get', 'is_soft_format', 'is_strict_format', 'language_share', 'names', 'overlong_penalty',
    'register', 'register_scorer', 'repetition_fraction', 'resolve_scorer', 'run_tests', 'tag_count_score', 'verify',
]
