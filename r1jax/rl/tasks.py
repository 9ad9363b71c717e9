"""Prompt sources of an RL stage: `config.task` (train) and `config.eval_task` (held out).

`config.task` is one task config (see `r1jax.data.tasks.load_task`: a benchmark
name, 'jsonl' with field names, or a procedural task) or, for all-scenario RL,
`config.task.sources`: a list of such configs mixed with `config.task.weights`.
"""
from __future__ import annotations

from typing import Any

from r1jax.data.tasks import load_task
from r1jax.experiment import cfg_get, to_dict


def _load(task_cfg: Any) -> list[dict]:
  recs = load_task(dict(to_dict(task_cfg)))
  if not recs:
    raise ValueError(f"Task {to_dict(task_cfg)} produced no records")
  return recs


def load_rl_records(config) -> tuple[list[dict] | list[list[dict]], list[dict]]:
  """(train records — or a list of record lists to mix —, held-out eval records)."""
  task = config.task
  sources = cfg_get(task, "sources", None)
  if sources:
    train = [_load(src) for src in sources]
  else:
    train = _load(task)
  eval_cfg = cfg_get(config, "eval_task", None)
  evals = _load(eval_cfg) if eval_cfg and cfg_get(eval_cfg, "name", "") else []
  return train, evals
