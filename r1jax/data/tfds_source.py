"""Optional TFDS source: records from `tfds.data_source` (ArrayRecord, random access, no
TensorFlow needed). Install with `pip install -e .[tfds]`.

  records = tfds_records('math_qa', split='train', question_field='Problem',
                         answer_field='correct')
  it = make_prompt_iterator(records, tok, 'r1_zero', batch_size=8, max_prompt_len=256)

The returned `TfdsRecords` is a lazy `Sequence` of records in the `r1jax.data.tasks` schema, so
the grain pipelines read it by index without loading the dataset into memory.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from r1jax.data.tasks import ANSWER_PARSERS, TASK_TYPES


def _import_tfds():
  try:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError('The TFDS source needs tensorflow-datasets (and array-record): '
                      "pip install -e '.[tfds]'") from e
  return tfds


def _to_python(value: Any) -> Any:
  """bytes -> str, numpy scalars/arrays -> Python values (recursively)."""
  if isinstance(value, bytes):
    return value.decode('utf-8')
  if isinstance(value, np.ndarray):
    if value.ndim == 0:
      return _to_python(value.item())
    return [_to_python(v) for v in value.tolist()]
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, dict):
    return {k: _to_python(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_to_python(v) for v in value]
  return value


class TfdsRecords(Sequence):
  """Lazy records over a TFDS data source."""

  def __init__(self, source, name: str, split: str, question_field: str,
               answer_field: str | None, task: str, answer_parser: str, keep_fields: bool):
    self._source = source
    self.name, self.split = name, split
    self.question_field, self.answer_field = question_field, answer_field
    self.task, self.keep_fields = task, keep_fields
    self._parse = ANSWER_PARSERS[answer_parser]

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index):
    if isinstance(index, slice):
      return [self[i] for i in range(*index.indices(len(self)))]
    if index < 0:
      index += len(self)
    if not 0 <= index < len(self):
      raise IndexError(f'index {index} out of range for {len(self)} examples')
    row = _to_python(dict(self._source[index]))
    where = f'tfds {self.name}/{self.split} example {index}'
    for field in (self.question_field, self.answer_field):
      if field is not None and field not in row:
        raise KeyError(f'{where}: field {field!r} missing; fields are {sorted(row)}.')
    rec = {k: v for k, v in row.items()
           if self.keep_fields and k not in (self.question_field, self.answer_field)}
    rec['id'] = f'{self.name}/{self.split}/{index}'
    rec['question'] = row[self.question_field]
    rec['answer'] = self._parse(row[self.answer_field]) if self.answer_field else ''
    rec['task'] = self.task
    return rec


def tfds_records(name: str, split: str = 'train', *, data_dir: str | None = None,
                 question_field: str = 'question', answer_field: str | None = 'answer',
                 task: str = 'math', answer_parser: str = 'none', keep_fields: bool = True,
                 download: bool = False) -> TfdsRecords:
  """Records from the TFDS dataset `name` (ArrayRecord format) through `tfds.data_source`."""
  if task not in TASK_TYPES:
    raise ValueError(f'task must be one of {TASK_TYPES}, got {task!r}')
  tfds = _import_tfds()
  source = tfds.data_source(name, split=split, data_dir=data_dir, download=download)
  return TfdsRecords(source, name, split, question_field, answer_field, task, answer_parser,
                     keep_fields)
