"""Dispatch on `config.stage`: the library entry point behind `r1jax.main`.

Usable from notebooks: `r1jax.run.run(config, workdir)`.
"""
from __future__ import annotations

import importlib
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


def refuse_in_spawned_import() -> None:
  """Raises if this process is a `spawn`ed multiprocessing child still importing the parent's main script.

  The reward pool's workers (and any other `spawn`ed process) import the main script before they run:
  a script that calls `run` at its top level would otherwise train again inside every worker, in the
  same workdir, next to the parent. multiprocessing marks that import with `_inheriting` (what its own
  "start a new process before ... bootstrapping" check reads)."""
  import multiprocessing
  if getattr(multiprocessing.current_process(), "_inheriting", False):
    raise RuntimeError(
        "r1jax.run.run was called while a spawned worker process imported the main script. "
        "Reward-pool workers start by importing it, so put the training call under "
        "`if __name__ == '__main__':` (docs/rewards.md, \"The pool\").")


def run(config, workdir: str | os.PathLike) -> Any:
  """Runs `config.stage` in `workdir` (relative paths resolve against the current directory)."""
  refuse_in_spawned_import()
  config_lib.validate(config)
  from r1jax import runtime
  runtime.configure_cpu_from(config)  # a no-op once JAX has started (then call it first)
  config, workdir = paths.resolve_config(config), paths.resolve(workdir)
  enable_compilation_cache(config)
  module, fn = config_lib.STAGE_ENTRY[config.stage].split(":")  # validate() checked the name
  return getattr(importlib.import_module(module), fn)(config, workdir)
