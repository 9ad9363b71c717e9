"""Prompt sources of an RL stage: `config.task` (train) and `config.eval_task` (held out).

`config.task` is one task config (see `r1jax.data.tasks.load_task`: a benchmark
name, 'jsonl' with field names, or a procedural task) or, for all-scenario RL,
`config.task.sources`: a list of such configs mixed with `config.task.weights`
(proportions of prompts drawn from each source; default proportional to size).

General (non-reasoning) prompts: `{'name': 'jsonl', 'path': ..., 'task': 'general'}` reads
a JSONL with a `question` field (`question_field` to rename) and no answer. Its records
have `task='general'` and `answer=''`: `accuracy` scores them 0 and the scorer-based
rewards (`helpfulness`, `harmlessness`, see `r1jax.rewards.general`) score them.
"""
from __future__ import annotations

import pathlib
from typing import Any

from r1jax.data.tasks import load_task, read_jsonl
from r1jax.stage_config import to_dict

GENERAL_TASK = 'general'


def load_general_task(cfg: dict) -> list[dict]:
  """Records of a JSONL (or, with `name='hf'`, a local HF dataset) of general prompts (no gold answers;
  `task='general'`)."""
  path = cfg.get('path')
  if not path:
    raise ValueError(f"A general task needs a path (JSONL with a question field): {cfg}")
  qf = cfg.get('question_field') or 'question'
  source = cfg.get('source') or pathlib.Path(path).stem
  id_field = cfg.get('id_field')
  out = []
  if cfg.get('name') == 'hf':
    from r1jax.data.rows import read_rows  # pylint: disable=import-outside-toplevel
    rows = read_rows(path, 'hf', cfg.get('split') or 'train')
  else:
    rows = read_jsonl(path)
  for n, row in enumerate(rows):
    if qf not in row:
      raise KeyError(f'{path} row {n}: field {qf!r} missing; fields are {sorted(row)}. '
                     'Set question_field in the task config.')
    rec = {k: v for k, v in row.items() if k != qf}
    rec.update(id=str(row[id_field]) if id_field else f'{source}/{n}',
               question=(cfg.get('question_format') or '{question}').format(
                   **{**row, 'question': row[qf]}),
               answer='', task=GENERAL_TASK)
    out.append(rec)
  max_examples = cfg.get('max_examples')
  return out[:int(max_examples)] if max_examples is not None else out


def _load(task_cfg: Any) -> list[dict]:
  cfg = dict(to_dict(task_cfg))
  cfg.pop('weight', None)
  if cfg.get('task') == GENERAL_TASK:
    recs = load_general_task(cfg)
  else:
    recs = load_task(cfg)
  if not recs:
    raise ValueError(f"Task {to_dict(task_cfg)} produced no records")
  return recs


def load_rl_records(task: Any, eval_task: Any = None
                    ) -> tuple[list[dict] | list[list[dict]], list[dict]]:
  """(train records — or a list of record lists to mix —, held-out eval records).

  `task` / `eval_task`: `config.task` / `config.eval_task` (dicts or ConfigDicts; an
  empty or nameless `eval_task` means no held-out set).
  """
  task = dict(to_dict(task) or {})
  sources = task.get("sources")
  if sources:
    train = [_load(src) for src in sources]
    weights = task.get("weights")
    if weights is not None and len(tuple(weights)) != len(train):
      raise ValueError(f"config.task has {len(train)} sources but {len(tuple(weights))} weights")
  else:
    train = _load(task)
  eval_task = dict(to_dict(eval_task) or {})
  evals = _load(eval_task) if eval_task.get("name") else []
  return train, evals
