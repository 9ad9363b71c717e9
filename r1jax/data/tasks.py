"""Task loaders: real benchmarks and any JSONL, into one record schema.

Every record is a dict:
  {'id': str, 'question': str, 'answer': str, 'task': 'math'|'code'|'countdown'|'arithmetic',
   ...extras}
`task` names the verifier. Extras depend on the source: `solution`, `subject`, `level`, `url`
(math), `tests`, `entry_point`, `prompt` (HumanEval), `numbers`, `target` (Countdown).

  cfg = ml_collections.ConfigDict({'name': 'gsm8k', 'split': 'train'})
  records = load_task(cfg)

Data lives in `<repo>/../shared/data` unless `cfg.data_dir`, `cfg.path` or the environment
variable `R1JAX_DATA_DIR` say otherwise.
"""
from __future__ import annotations

import inspect
import json
import math
import os
import pathlib
import re
from typing import Any, Callable, Mapping

from etils import epath

Record = dict[str, Any]
TASK_TYPES = ('math', 'code', 'countdown', 'arithmetic')

HUMANEVAL_QUESTION = ('Complete the following Python function. Write the whole function in a '
                      '```python code block.\n\n```python\n{prompt}```')


def default_data_dir() -> epath.Path:
  """`$R1JAX_DATA_DIR` (local or remote, e.g. gs://bucket/data), else `<repo>/../shared/data`."""
  env = os.environ.get('R1JAX_DATA_DIR')
  if env:
    return epath.Path(env)
  repo = pathlib.Path(__file__).resolve().parents[2]
  return epath.Path(repo.parent / 'shared' / 'data')


def read_jsonl(path: str | os.PathLike) -> list[dict]:
  """Reads JSON Lines; errors name the file and line."""
  path = epath.Path(path)   # local or remote (gs://, ...)
  if not path.exists():
    raise FileNotFoundError(
        f'Data file {path} does not exist. Set the config path / data_dir or R1JAX_DATA_DIR.')
  rows = []
  with path.open('r') as f:
    for n, line in enumerate(f, 1):
      line = line.strip()
      if not line:
        continue
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError as e:
        raise ValueError(f'{path}:{n}: invalid JSON ({e}).') from e
  return rows


def normalize_number(value: Any) -> str:
  """Canonical text of a numeric gold answer: 27.0 -> '27', '1,080' -> '1080', '025' -> '25'.

  Non-numeric values are returned as stripped strings.
  """
  if isinstance(value, bool):
    return str(value)
  if isinstance(value, int):
    return str(value)
  if isinstance(value, float):
    if math.isfinite(value) and value == int(value):
      return str(int(value))
    return repr(value)
  text = str(value).strip()
  plain = text.replace(',', '')
  if re.fullmatch(r'[-+]?\d+', plain):
    return str(int(plain))
  if re.fullmatch(r'[-+]?(\d+\.\d*|\.\d+)', plain):
    f = float(plain)
    return str(int(f)) if f == int(f) else plain.rstrip('0')
  return text


def gsm8k_gold(solution: str) -> str:
  """The number after `####` in a GSM8K solution, commas stripped."""
  if '####' not in solution:
    raise ValueError(f'GSM8K answer has no "####": {solution[-80:]!r}')
  return normalize_number(solution.split('####')[-1].strip())


def extract_boxed(text: str) -> str | None:
  """Content of the last `\\boxed{...}` (balanced braces), or None."""
  i = text.rfind('\\boxed')
  if i < 0:
    return None
  j = text.find('{', i)
  if j < 0:
    return None
  depth = 0
  for k in range(j, len(text)):
    if text[k] == '{':
      depth += 1
    elif text[k] == '}':
      depth -= 1
      if depth == 0:
        return text[j + 1:k]
  return None


ANSWER_PARSERS: dict[str, Callable[[Any], str]] = {
    'none': lambda v: v if isinstance(v, str) else json.dumps(v),
    'number': normalize_number,
    'gsm8k': gsm8k_gold,
    'boxed': lambda v: extract_boxed(str(v)) or str(v).strip(),
}


def _field(row: Mapping, name: str, where: str) -> Any:
  if name not in row:
    raise KeyError(f'{where}: field {name!r} missing; fields are {sorted(row)}. '
                   'Set question_field / answer_field in the config.')
  return row[name]


def records_from_rows(rows: list[dict], *, source: str, question_field: str = 'question',
                      answer_field: str | None = 'answer', id_field: str | None = None,
                      task: str = 'math', answer_parser: str = 'none',
                      question_format: str = '{question}', keep_fields: bool = True,
                      field_map: Mapping[str, str] | None = None) -> list[Record]:
  """Turns raw rows into records.

  Args:
    rows: parsed JSON objects.
    source: prefix for generated ids and for error messages.
    question_field / answer_field: where the question and gold answer are (answer may be None).
    id_field: field holding the id; defaults to `{source}/{row index}`.
    task: verifier name, one of TASK_TYPES.
    answer_parser: key of ANSWER_PARSERS applied to the answer field.
    question_format: wraps the question (`{question}` plus any row field by name).
    keep_fields: keep the other fields of each row as extras.
    field_map: {record extra name: row field}, e.g. {'tests': 'test'}.
  """
  if task not in TASK_TYPES:
    raise ValueError(f'task must be one of {TASK_TYPES}, got {task!r}')
  parse = ANSWER_PARSERS[answer_parser]
  out = []
  for n, row in enumerate(rows):
    where = f'{source} row {n}'
    question = _field(row, question_field, where)
    rec: Record = {}
    if keep_fields:
      rec.update({k: v for k, v in row.items() if k not in (question_field, answer_field)})
    for dst, src in (field_map or {}).items():
      rec[dst] = _field(row, src, where)
    rec['id'] = str(_field(row, id_field, where)) if id_field else f'{source}/{n}'
    rec['question'] = question_format.format(**{**row, 'question': question})
    rec['answer'] = parse(_field(row, answer_field, where)) if answer_field else ''
    rec['task'] = task
    out.append(rec)
  return out


def load_jsonl_task(path: str | os.PathLike, *, source: str | None = None,
                    **kwargs) -> list[Record]:
  """Any JSONL as a task; kwargs as in `records_from_rows`."""
  return records_from_rows(read_jsonl(path), source=source or pathlib.Path(path).stem, **kwargs)


def load_gsm8k(data_dir=None, split='train', path=None) -> list[Record]:
  path = path or epath.Path(data_dir or default_data_dir()) / 'gsm8k' / f'{split}.jsonl'
  rows = read_jsonl(path)
  recs = records_from_rows(rows, source=f'gsm8k/{split}', answer_field=None, keep_fields=False)
  for rec, row in zip(recs, rows):
    rec['solution'] = _field(row, 'answer', rec['id'])
    rec['answer'] = gsm8k_gold(rec['solution'])
  return recs


def load_math500(data_dir=None, split='test', path=None) -> list[Record]:
  path = path or epath.Path(data_dir or default_data_dir()) / 'math500' / f'{split}.jsonl'
  return load_jsonl_task(path, source='math500', question_field='problem',
                         id_field='unique_id')


def load_aime24(data_dir=None, split='test', path=None) -> list[Record]:
  path = path or epath.Path(data_dir or default_data_dir()) / 'aime24' / f'{split}.jsonl'
  recs = load_jsonl_task(path, source='aime24', question_field='problem', id_field='id',
                         answer_parser='number')
  for rec in recs:
    rec['id'] = f"aime24/{rec['id']}"
  return recs


def load_amc23(data_dir=None, split='test', path=None) -> list[Record]:
  path = path or epath.Path(data_dir or default_data_dir()) / 'amc23' / f'{split}.jsonl'
  recs = load_jsonl_task(path, source='amc23', question_field='problem', id_field='id',
                         answer_parser='number')
  for rec in recs:
    rec['id'] = f"amc23/{rec['id']}"
  return recs


def load_humaneval(data_dir=None, split='test', path=None,
                   question_format: str = HUMANEVAL_QUESTION) -> list[Record]:
  """HumanEval: question = prompt wrapped in an instruction; answer = canonical solution;
  extras `prompt` (the raw code prompt), `tests` (defines `check(candidate)`), `entry_point`."""
  path = path or epath.Path(data_dir or default_data_dir()) / 'humaneval' / f'{split}.jsonl'
  return load_jsonl_task(
      path, source='humaneval', question_field='prompt', answer_field='canonical_solution',
      id_field='task_id', task='code', keep_fields=False,
      question_format=question_format.replace('{prompt}', '{question}'),
      field_map={'prompt': 'prompt', 'tests': 'test', 'entry_point': 'entry_point'})


LOADERS: dict[str, Callable[..., list[Record]]] = {
    'gsm8k': load_gsm8k,
    'math500': load_math500,
    'aime24': load_aime24,
    'amc23': load_amc23,
    'humaneval': load_humaneval,
}


def _get(cfg, key, default=None):
  if isinstance(cfg, Mapping):
    return cfg.get(key, default)
  return cfg.get(key, default) if hasattr(cfg, 'get') else getattr(cfg, key, default)


# Config keys that are not generator options (shared with other task kinds and stage configs).
_GENERIC_KEYS = ('name', 'split', 'path', 'data_dir', 'max_examples', 'weight', 'label', 'kind',
                 'task', 'source', 'question_field', 'answer_field', 'id_field', 'answer_parser',
                 'question_format')


def load_task(cfg) -> list[Record]:
  """Loads records from a config (ml_collections.ConfigDict or dict).

  Fields:
    name: 'gsm8k' | 'math500' | 'aime24' | 'amc23' | 'humaneval' | 'jsonl' | 'hf' | 'countdown' |
      'arithmetic'. 'hf': a local Hugging Face dataset (a `save_to_disk` directory, or JSON/Parquet/CSV files
      read by `datasets`; the `hf` extra), with the same fields as 'jsonl'; `split` picks a DatasetDict's split
      (default 'train').
    path: file to read (required for 'jsonl'; overrides the default for the benchmarks).
    data_dir: folder holding the benchmark folders (default `default_data_dir()`).
    split: 'train' / 'test' (GSM8K has both; the others only 'test').
    max_examples: keep the first N records (after the loader's order), None for all.
    For 'jsonl' / 'hf': question_field, answer_field, id_field, task, answer_parser, question_format.
    For 'countdown' / 'arithmetic': num_examples, seed, and the generator's options
      (see `r1jax.data.procedural`).
  """
  name = _get(cfg, 'name')
  split = _get(cfg, 'split') or ('train' if name in ('gsm8k', 'countdown', 'arithmetic', 'hf')
                                 else 'test')
  path = _get(cfg, 'path')
  data_dir = _get(cfg, 'data_dir')
  if name in LOADERS:
    kwargs = {}
    if name == 'humaneval' and _get(cfg, 'question_format'):
      kwargs['question_format'] = _get(cfg, 'question_format')
    recs = LOADERS[name](data_dir=data_dir, split=split, path=path, **kwargs)
  elif name in ('jsonl', 'hf'):
    if not path:
      raise ValueError(f"load_task(name={name!r}) needs cfg.path.")
    if name == 'hf':
      from r1jax.data.rows import read_rows  # pylint: disable=import-outside-toplevel
      rows = read_rows(path, 'hf', split)
    else:
      rows = read_jsonl(path)
    recs = records_from_rows(
        rows, source=_get(cfg, 'source') or pathlib.Path(path).stem,
        question_field=_get(cfg, 'question_field') or 'question',
        answer_field=_get(cfg, 'answer_field', 'answer'),
        id_field=_get(cfg, 'id_field'), task=_get(cfg, 'task') or 'math',
        answer_parser=_get(cfg, 'answer_parser') or 'none',
        question_format=_get(cfg, 'question_format') or '{question}')
  elif name in ('countdown', 'arithmetic'):
    from r1jax.data import procedural  # pylint: disable=import-outside-toplevel
    options = dict(cfg.items() if hasattr(cfg, 'items') else vars(cfg))
    for key in _GENERIC_KEYS:
      options.pop(key, None)
    gen = procedural.countdown_dataset if name == 'countdown' else procedural.arithmetic_dataset
    example = procedural.countdown_example if name == 'countdown' else procedural.arithmetic_example
    known = (set(inspect.signature(gen).parameters) | set(inspect.signature(example).parameters))
    unknown = sorted(set(options) - known - {'index', 'options'})
    if unknown:
      raise ValueError(f'{name}: unknown option(s) {unknown}; known: '
                       f"{sorted(known - {'index', 'options', 'split'})}")
    recs = gen(split=split, **options)
  else:
    raise ValueError(f'Unknown task name {name!r}; known: {sorted(LOADERS)} + '
                     "['jsonl', 'hf', 'countdown', 'arithmetic']")
  max_examples = _get(cfg, 'max_examples')
  if max_examples is not None:
    recs = recs[:int(max_examples)]
  return recs
