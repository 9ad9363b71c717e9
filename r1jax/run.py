"""Dispatch on `config.stage`: the library entry point behind `r1jax.main`.

Usable from notebooks: `r1jax.run.run(config, workdir)`.
"""
from __future__ import annotations

import logging
import os
from typing import Any

from r1jax import config as config_lib

log = logging.getLogger(__name__)


def run(config, workdir: str | os.PathLike) -> Any:
  config_lib.validate(config)
  stage = config.stage
  if stage in ("pretrain", "sft"):
    from r1jax.sft import trainer
    return trainer.train(config, workdir)
  if stage == "grpo":
    from r1jax.rl import trainer
    return trainer.train(config, workdir)
  if stage == "eval":
    from r1jax.evals import runner
    return runner.run(config, workdir)
  if stage == "rejection_sampling":
    from r1jax.evals import rejection_sampling
    return rejection_sampling.run(config, workdir)
  if stage == "generate_responses":
    from r1jax.evals import generate_responses
    return generate_responses.run(config, workdir)
  if stage == "reward_model":
    from r1jax.rm import train as rm_train
    return rm_train.run(config, workdir)
  if stage in ("quickstart", "pipeline"):
    from r1jax import pipeline
    return pipeline.run(config, workdir)
  raise ValueError(f"Unknown stage {stage!r}")
