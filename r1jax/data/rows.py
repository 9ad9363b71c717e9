"""Rows (dicts) of a local data source: JSON Lines, Parquet, or a Hugging Face `datasets` dataset on disk.

`read_rows(path, loader='auto', split='train')` is what every file-backed source goes through (SFT sources of kinds
`jsonl` and `chat`, reward-model preference pairs, prompt/answer tasks named `hf`). Loaders:

  jsonl    one JSON object per line (no extra dependency)
  parquet  pyarrow (`pip install "r1jax[data]"`)
  hf       Hugging Face `datasets` (`pip install "r1jax[hf]"`): a directory written by `Dataset.save_to_disk` /
           `DatasetDict.save_to_disk` (read with `load_from_disk`; `split` picks a DatasetDict's split), or local
           data files (`.jsonl`/`.json`, `.parquet`, `.csv`, or a glob of them) read by `datasets`' packaged builders
           (`load_dataset('json' | 'parquet' | 'csv', data_files=path)`, one split).
  auto     a directory -> hf; `.parquet` -> parquet; anything else -> jsonl.

Nothing is downloaded: hub names are not accepted, only local paths (a path that does not exist is an error, not a
hub lookup). `datasets` is imported only when the hf loader is used. Rows come back as a list of plain dicts (Arrow
converts them in one pass), so every consumer sees the same thing whichever loader read them.
"""
from __future__ import annotations

import glob
import os
import pathlib
from typing import Any

from etils import epath

from r1jax.data.tasks import read_jsonl

LOADERS = ('auto', 'jsonl', 'parquet', 'hf')
_HF_BUILDERS = {'.jsonl': 'json', '.json': 'json', '.parquet': 'parquet', '.csv': 'csv'}
_SAVED_MARKERS = ('dataset_info.json', 'state.json', 'dataset_dict.json')


def check_loader(loader: str, where: str = 'loader') -> str:
  if loader not in LOADERS:
    raise ValueError(f'{where}={loader!r}: unknown; one of {LOADERS}')
  return loader


def _datasets():
  try:
    import datasets  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError('reading a Hugging Face dataset needs the `datasets` package: pip install "r1jax[hf]"') from e
  return datasets


def is_saved_dataset(path: str | os.PathLike) -> bool:
  """Whether `path` is a directory written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`."""
  p = pathlib.Path(path)
  return p.is_dir() and any((p / m).exists() for m in _SAVED_MARKERS)


def load_hf_dataset(path: str | os.PathLike, split: str = 'train') -> Any:
  """A `datasets.Dataset` from a local `save_to_disk` directory or local data files (see the module docstring)."""
  datasets = _datasets()
  p = pathlib.Path(path)
  if p.is_dir():
    if not is_saved_dataset(p):
      raise ValueError(f'{p} is a directory but not a saved Hugging Face dataset (no {" / ".join(_SAVED_MARKERS)}); '
                       'write it with Dataset.save_to_disk, or point at its data files')
    ds = datasets.load_from_disk(str(p))
    if isinstance(ds, datasets.DatasetDict):
      if split not in ds:
        raise ValueError(f'{p}: no split {split!r}; splits: {sorted(ds)}')
      ds = ds[split]
    return ds
  files = sorted(glob.glob(str(p))) if any(c in str(p) for c in '*?[') else ([str(p)] if p.exists() else [])
  if not files:
    raise FileNotFoundError(f'{p}: no such local file (hub datasets are not downloaded; save one with '
                            'save_to_disk and point at the directory)')
  suffixes = {pathlib.Path(f).suffix for f in files}
  builders = {_HF_BUILDERS.get(s) for s in suffixes}
  if len(builders) != 1 or None in builders:
    raise ValueError(f'{p}: data files must all be one of {sorted(_HF_BUILDERS)}, got {sorted(suffixes)}')
  return datasets.load_dataset(builders.pop(), data_files=files, split='train')


def read_rows(path: str | os.PathLike, loader: str = 'auto', split: str = 'train') -> list[dict]:
  """Rows of `path` as dicts, read by `loader` (see the module docstring); `split` is used by the hf loader.

  JSONL and Parquet are read through `etils.epath`, so they may sit on a remote filesystem (`gs://...`); the hf
  loader reads local paths only (`datasets` itself)."""
  check_loader(loader)
  p = epath.Path(path)
  if loader == 'auto':
    loader = 'hf' if p.is_dir() else 'parquet' if p.suffix == '.parquet' else 'jsonl'
  if loader == 'hf':
    return load_hf_dataset(os.fspath(p), split).to_list()
  if loader == 'parquet':
    try:
      import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      raise ImportError(f'reading {p} needs pyarrow: pip install "r1jax[data]"') from e
    with p.open('rb') as f:   # a file object: local or remote alike
      return pq.read_table(f).to_pylist()
  return read_jsonl(p)
