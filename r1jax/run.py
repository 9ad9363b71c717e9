"""Dispatch on `config.stage`: the library entry point behind `r1jax.main`.

Usable from notebooks: `r1jax.run.run(config, workdir)`.
"""
from __future__ import annotations

import logging
import os
from typing import Any

from r1jax import config as config_lib
from r1jax import paths

log = logging.getLogger(__name__)


def enable_compilation_cache(config) -> str | None:
  """Turns on JAX's persistent compilation cache when `config.compilation_cache_dir` is set."""
  path = config.get("compilation_cache_dir", "") if hasattr(config, "get") else ""
  if not path:
    return None
  import jax
  path = paths.resolve(str(path))
  jax.config.update("jax_compilation_cache_dir", path)
  log.info("Persistent compilation cache: %s", path)
  return str(path)


def run(config, workdir: str | os.PathLike) -> Any:
  """Runs `config.stage` in `workdir` (relative paths resolve against the current directory)."""
  config_lib.validate(config)
  config, workdir = paths.resolve_config(config), paths.resolve(workdir)
  enable_compilation_cache(config)
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
  if stage == "export":
    from r1jax import export
    return export.run(config, workdir)
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
