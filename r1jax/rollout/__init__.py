"""Rollouts: pure sampling functions and the jitted group-rollout sampler."""
from r1jax.rollout.sampler import (FINISH_LENGTH, FINISH_STOP, Rollout, Sampler, SamplerConfig,
                                   bucket_prompts)
from r1jax.rollout import sampling
