"""grain pipelines: templated prompt batches for RL / eval, and SFT batches (optionally packed).

Both are deterministic in `seed`, shard by JAX process (each host reads `records[i::count]`),
and return a `DataIterator` whose `get_state()` is a JSON-serialisable dict that
`set_state()` restores exactly (the checkpoint saves it with the train state).

  it = make_prompt_iterator(records, tok, get_template('r1_zero'), batch_size=8,
                            max_prompt_len=256, seed=0)
  batch = next(it)
  batch['prompt_ids']   # int32 [B, T], left padded, T == max_prompt_len
  batch['answer']       # list of B gold answers (host side)

Everything here is host numpy; the trainer puts arrays on the mesh.
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grain
import numpy as np

from r1jax.data.tasks import read_jsonl
from r1jax.data.templates import Template, for_tokenizer
from r1jax.tokenizer import Tokenizer, truncate

Record = dict[str, Any]


class DataIterator(Iterator[dict]):
  """A grain iterator with a JSON-serialisable, checked state.

  `get_state()` returns {'grain': <grain state>, 'fingerprint': {...}}; `set_state` refuses a
  state whose fingerprint (batch size, lengths, seed, sharding, number of records) differs.
  """

  def __init__(self, dataset: grain.IterDataset, fingerprint: Mapping[str, Any]):
    self._dataset = dataset
    self._it = iter(dataset)
    self.fingerprint = json.loads(json.dumps(dict(fingerprint)))

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    return next(self._it)

  def get_state(self) -> dict:
    state = {'grain': self._it.get_state(), 'fingerprint': self.fingerprint}
    try:
      return json.loads(json.dumps(state))
    except TypeError as e:
      raise TypeError(f'Iterator state is not JSON-serialisable: {state!r}') from e

  def set_state(self, state: Mapping[str, Any]) -> None:
    fp = state.get('fingerprint')
    if fp is not None and fp != self.fingerprint:
      diff = {k: (fp.get(k), self.fingerprint.get(k))
              for k in set(fp) | set(self.fingerprint) if fp.get(k) != self.fingerprint.get(k)}
      raise ValueError(f'Data iterator state was saved with another pipeline: {diff} '
                       '(saved, current).')
    self._it.set_state(state['grain'])


def _process(shard_by_process: bool, process_index: int | None,
             process_count: int | None) -> tuple[int, int]:
  if not shard_by_process:
    return 0, 1
  if process_index is None or process_count is None:
    import jax  # pylint: disable=import-outside-toplevel
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index={process_index} not in [0, {process_count})')
  return int(process_index), int(process_count)


def _is_single_source(sources) -> bool:
  if isinstance(sources, (str, os.PathLike)):
    return True
  return len(sources) == 0 or isinstance(sources[0], Mapping)


def _as_records(source) -> Sequence[Record]:
  """A JSONL path is read; a Sequence (list, lazy TFDS records) is used as is."""
  if isinstance(source, (str, os.PathLike)):
    return read_jsonl(source)
  if isinstance(source, Sequence):
    return source
  return list(source)


def _index_dataset(num_records: int, seed: int, shuffle: bool, repeat: bool, pi: int, pc: int,
                   pad_to: int | None = None) -> grain.MapDataset:
  """Dataset of (record index, valid) for this host's shard: shuffled, repeated or padded."""
  host = list(range(pi, num_records, pc))
  if not host:
    raise ValueError(f'No records for process {pi} of {pc} ({num_records} records).')
  ds = grain.MapDataset.source(host)
  if shuffle:
    ds = ds.shuffle(seed=seed)
  if repeat:
    return ds.repeat(None).map(lambda i: (int(i), True))
  n = len(ds)
  pad_to = max(pad_to or n, n)
  first = ds[0]
  return grain.MapDataset.range(pad_to).map(
      lambda j: (int(ds[j]), True) if j < n else (int(first), False))


def _mixed_index_dataset(sizes: Sequence[int], weights: Sequence[float] | None, seed: int,
                         shuffle: bool, repeat: bool, pi: int, pc: int,
                         pad_to_batch: int | None) -> grain.MapDataset:
  """(source, record index, valid) items; several sources are mixed with `weights`."""
  if len(sizes) == 1:
    pad_to = None
    if not repeat:
      per_host = math.ceil(sizes[0] / pc)
      pad_to = math.ceil(per_host / pad_to_batch) * pad_to_batch if pad_to_batch else per_host
    ds = _index_dataset(sizes[0], seed, shuffle, repeat, pi, pc, pad_to)
    return ds.map(lambda x: (0, x[0], x[1]))
  if weights is None:
    weights = [float(s) for s in sizes]
  if len(weights) != len(sizes):
    raise ValueError(f'{len(sizes)} sources but {len(weights)} weights.')
  if not repeat:
    raise ValueError('Mixing sources needs repeat=True (the mix of finite sources is cut at '
                     'the first exhausted one).')
  parts = []
  for k, size in enumerate(sizes):
    part = _index_dataset(size, seed + 7919 * k, shuffle, True, pi, pc)
    parts.append(part.map(lambda x, k=k: (k, x[0], x[1])))
  return grain.MapDataset.mix(parts, [float(w) for w in weights])


def _read_options(read_options: grain.ReadOptions | None) -> grain.ReadOptions:
  # A few threads and a short read-ahead: hosts are shared with the trainer and the sampler.
  return read_options or grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)


def _collate(items: Sequence[dict]) -> dict:
  """Stacks array fields; everything else becomes a list of B values."""
  keys = list(dict.fromkeys(k for it in items for k in it))
  out = {}
  for k in keys:
    vals = [it.get(k) for it in items]
    if all(isinstance(v, np.ndarray) for v in vals):
      out[k] = np.stack(vals)
    else:
      out[k] = vals
  out['example_mask'] = np.asarray(out.pop('example_mask'), bool)
  return out


def make_prompt_iterator(records, tokenizer: Tokenizer, template: Template | str,
                         batch_size: int, max_prompt_len: int, seed: int = 0,
                         shuffle: bool = True, repeat: bool = True,
                         shard_by_process: bool = True, *, weights: Sequence[float] | None = None,
                         system: str | None = None, add_bos: bool | None = None,
                         overflow: str = 'truncate', process_index: int | None = None,
                         process_count: int | None = None,
                         read_options: grain.ReadOptions | None = None) -> DataIterator:
  """Batches of templated, left-padded prompt ids with their host-side fields.

  Args:
    records: a sequence of records (`r1jax.data.tasks` schema), or a list of such sequences
      mixed with `weights` (needs repeat=True).
    tokenizer: a `Tokenizer`.
    template: a `Template` or its name.
    batch_size: B per host.
    max_prompt_len: T; every batch is exactly [B, T].
    seed: shuffle seed (epochs are reshuffled deterministically).
    shuffle, repeat: without repeat, the last batch is padded to B with copies of a record whose
      `example_mask` is False, and every host yields the same number of batches.
    shard_by_process: host `process_index` reads records[process_index::process_count]
      (defaults from `jax.process_index()` / `jax.process_count()`).
    system: system message for the template.
    add_bos: default: bos when the tokenizer has one and the template text doesn't include it.
    overflow: prompts longer than T: 'truncate' (keep the end, warn), 'error', or 'drop'
      (removed before sharding, logged).
    process_index, process_count: override the JAX process (tests, simulations).
    read_options: grain read-ahead threads / buffer (default 2 threads, 4 batches).

  Returns:
    A `DataIterator` of dicts: `prompt_ids` int32 [B, T], `prompt_mask` int32 [B, T],
    `example_mask` bool [B], and lists of B: `prompt_text`, `id`, `question`, `answer`,
    `task` and every extra field of the records (None where a record lacks it).
  """
  template = for_tokenizer(template, tokenizer)  # a chat model's own chat template
  if add_bos is None:
    add_bos = tokenizer.bos_id is not None and not template.includes_bos
  if overflow not in ('truncate', 'error', 'drop'):
    raise ValueError(f"overflow must be 'truncate', 'error' or 'drop', got {overflow!r}")
  pi, pc = _process(shard_by_process, process_index, process_count)
  sources = [records] if _is_single_source(records) else list(records)
  sources = [_as_records(s) for s in sources]

  def render(rec: Record) -> str:
    return template.render_prompt(rec['question'], system=system)

  if overflow == 'drop':
    kept = []
    for k, src in enumerate(sources):
      keep = [r for r in src if len(tokenizer.encode(render(r), add_bos=add_bos))
              <= max_prompt_len]
      if len(keep) < len(src):
        logging.warning('make_prompt_iterator: dropped %d of %d prompts of source %d longer '
                        'than %d tokens.', len(src) - len(keep), len(src), k, max_prompt_len)
      kept.append(keep)
    sources = kept

  truncated = [0]

  def make_example(item) -> dict:
    k, i, valid = item
    rec = sources[k][i]
    text = render(rec)
    ids = tokenizer.encode(text, add_bos=add_bos)
    ids, dropped = truncate(ids, max_prompt_len, 'error' if overflow == 'error' else 'left',
                            keep_first=int(add_bos), what=f"prompt of {rec.get('id')!r}")
    if dropped:
      truncated[0] += 1
      if truncated[0] in (1, 10, 100) or truncated[0] % 1000 == 0:
        logging.warning('make_prompt_iterator: %d prompt(s) longer than max_prompt_len=%d were '
                        'truncated from the left (last: %r, %d tokens dropped).', truncated[0],
                        max_prompt_len, rec.get('id'), dropped)
    prompt_ids = np.full((max_prompt_len,), tokenizer.pad_id, np.int32)
    prompt_mask = np.zeros((max_prompt_len,), np.int32)
    if ids:
      prompt_ids[-len(ids):] = ids
      prompt_mask[-len(ids):] = 1
    out = {'prompt_ids': prompt_ids, 'prompt_mask': prompt_mask, 'example_mask': valid,
           'prompt_text': text}
    out.update({key: value for key, value in rec.items() if key not in out})
    return out

  ds = _mixed_index_dataset([len(s) for s in sources], weights, seed, shuffle, repeat, pi, pc,
                            pad_to_batch=batch_size)
  ds = ds.map(make_example).batch(batch_size, drop_remainder=repeat, batch_fn=_collate)
  fingerprint = {'kind': 'prompt', 'batch_size': batch_size, 'max_len': max_prompt_len,
                 'seed': seed, 'shuffle': shuffle, 'repeat': repeat, 'process': [pi, pc],
                 'num_records': [len(s) for s in sources], 'template': template.name}
  return DataIterator(ds.to_iter_dataset(_read_options(read_options)), fingerprint)


def tokenize_sft_example(prompt: str, completion: str, tokenizer: Tokenizer, max_len: int,
                         add_bos: bool = False, append_eos: bool = True,
                         overflow: str = 'truncate') -> dict | None:
  """input_ids int32 [L] = prompt + completion (+ eos) and loss_mask float32 [L], 1 on
  completion tokens (loss_mask[t] = 1: token t is a target). L <= max_len: 'truncate' cuts the
  end, 'error' raises, 'drop' returns None."""
  p = tokenizer.encode(prompt, add_bos=add_bos)
  c = tokenizer.encode(completion) + ([tokenizer.eos_id] if append_eos else [])
  ids = p + c
  mask = [0.0] * len(p) + [1.0] * len(c)
  if len(ids) > max_len:
    if overflow == 'drop':
      return None
    ids, _ = truncate(ids, max_len, 'error' if overflow == 'error' else 'right',
                      what='SFT example')
    mask = mask[:max_len]
  return {'input_ids': np.asarray(ids, np.int32), 'loss_mask': np.asarray(mask, np.float32)}


def _pad_sft(ex: dict, max_len: int, pad_id: int) -> dict:
  n = len(ex['input_ids'])
  ids = np.full((max_len,), pad_id, np.int32)
  ids[:n] = ex['input_ids']
  mask = np.zeros((max_len,), np.float32)
  mask[:n] = ex['loss_mask']
  positions = np.zeros((max_len,), np.int32)
  positions[:n] = np.arange(n)
  segments = np.zeros((max_len,), np.int32)
  segments[:n] = 1
  return {'input_ids': ids, 'loss_mask': mask, 'positions': positions, 'segment_ids': segments}


def _pad_rows(batch: dict, batch_size: int, pad_id: int) -> dict:
  n = batch['input_ids'].shape[0]
  if n == batch_size:
    return batch
  out = {}
  for k, v in batch.items():
    fill = pad_id if k == 'input_ids' else 0
    out[k] = np.concatenate([v, np.full((batch_size - n,) + v.shape[1:], fill, v.dtype)])
  return out


def make_sft_iterator(sources, tokenizer: Tokenizer, batch_size: int, max_len: int,
                      seed: int = 0, shuffle: bool = True, repeat: bool = True,
                      shard_by_process: bool = True, *, weights: Sequence[float] | None = None,
                      pack: bool = False, template: Template | str | None = None,
                      system: str | None = None, prompt_field: str = 'prompt',
                      completion_field: str = 'completion', add_bos: bool | None = None,
                      append_eos: bool = True, overflow: str = 'truncate',
                      num_packing_bins: int | None = None, process_index: int | None = None,
                      process_count: int | None = None,
                      read_options: grain.ReadOptions | None = None, num_epochs: int = 0,
                      epoch_proportions: Sequence | None = None,
                      epoch_size: int = 0) -> DataIterator:
  """Batches of SFT examples `{prompt, completion}` with the loss on completion tokens only.

  Args:
    sources: a JSONL path or a list of dicts, or a list of those mixed with `weights`
      (proportions; default proportional to size; needs repeat=True).
    tokenizer: a `Tokenizer`; eos is appended to each completion when `append_eos`.
    batch_size, max_len: output shape [B, T] per host.
    pack: put several examples in one row (first-fit packing); positions restart and
      segment_ids count 1, 2, ... per example within a row.
    template: when given, the prompt field is a question rendered with it (else used as is).
    prompt_field, completion_field: field names in the source rows.
    add_bos: default: bos when the tokenizer has one and the template doesn't include it.
    overflow: examples longer than T: 'truncate' (cut the end), 'error', or 'drop'.
    num_packing_bins: rows packed at once (default B).
    process_index, process_count, read_options: as in `make_prompt_iterator`.
    num_epochs: > 0: a finite stream of that many epochs (`r1jax.data.epochs.epoch_plan`, with
      `epoch_proportions` / `epoch_size`) instead of the endless weighted mix; `repeat` is ignored.

  Returns:
    A `DataIterator` of dicts: `input_ids` int32 [B, T] (right padded with pad_id),
    `loss_mask` float32 [B, T], `positions` int32 [B, T], `segment_ids` int32 [B, T]
    (0 on padding).
  """
  template = for_tokenizer(template, tokenizer) if template is not None else None
  if add_bos is None:
    add_bos = tokenizer.bos_id is not None and not (template and template.includes_bos)
  if overflow not in ('truncate', 'error', 'drop'):
    raise ValueError(f"overflow must be 'truncate', 'error' or 'drop', got {overflow!r}")
  pi, pc = _process(shard_by_process, process_index, process_count)
  srcs = [sources] if _is_single_source(sources) else list(sources)
  srcs = [_as_records(s) for s in srcs]
  for k, src in enumerate(srcs):
    for name in (prompt_field, completion_field):
      if src and name not in src[0]:
        raise KeyError(f'SFT source {k}: field {name!r} missing; fields are {sorted(src[0])}. '
                       'Set prompt_field / completion_field.')

  def make_example(item):
    k, i, valid = item
    row = srcs[k][i]
    prompt = row[prompt_field]
    if template is not None:
      prompt = template.render_prompt(prompt, system=system)
    ex = tokenize_sft_example(prompt, row[completion_field], tokenizer, max_len,
                              add_bos=add_bos, append_eos=append_eos, overflow=overflow)
    if ex is not None and not valid:
      ex['loss_mask'] = np.zeros_like(ex['loss_mask'])
    return ex

  if num_epochs:
    from r1jax.data import epochs  # pylint: disable=import-outside-toplevel
    repeat = False
    ds = epochs.epoch_index_dataset([len(s) for s in srcs], num_epochs, epoch_proportions, epoch_size,
                                    seed, pi, pc, batch_size=1 if pack else batch_size)
  else:
    ds = _mixed_index_dataset([len(s) for s in srcs], weights, seed, shuffle, repeat, pi, pc,
                              pad_to_batch=None if pack else batch_size)
  ds = ds.map(make_example)
  if overflow == 'drop':
    ds = ds.filter(lambda ex: ex is not None)
  it_ds = ds.to_iter_dataset(_read_options(read_options))
  if pack:
    it_ds = grain.experimental.FirstFitPackIterDataset(
        it_ds, length_struct={'input_ids': max_len, 'loss_mask': max_len},
        num_packing_bins=num_packing_bins or batch_size, seed=seed, shuffle_bins=False,
        padding_struct={'input_ids': tokenizer.pad_id, 'loss_mask': 0.0})
    it_ds = it_ds.map(lambda ex: {
        'input_ids': ex['input_ids'].astype(np.int32),
        'loss_mask': ex['loss_mask'].astype(np.float32),
        'positions': ex['input_ids_positions'].astype(np.int32),
        'segment_ids': ex['input_ids_segment_ids'].astype(np.int32)})
  else:
    it_ds = it_ds.map(lambda ex: _pad_sft(ex, max_len, tokenizer.pad_id))
  it_ds = it_ds.batch(batch_size, drop_remainder=repeat)
  if not repeat:  # keep [B, T]: the last batch gets all-padding rows (segment_ids 0)
    it_ds = it_ds.map(lambda b: _pad_rows(b, batch_size, tokenizer.pad_id))
  fingerprint = {'kind': 'sft', 'batch_size': batch_size, 'max_len': max_len, 'seed': seed,
                 'shuffle': shuffle, 'repeat': repeat, 'process': [pi, pc], 'pack': pack,
                 'num_records': [len(s) for s in srcs]}
  if num_epochs:
    fingerprint['epochs'] = [num_epochs, epoch_proportions, epoch_size]
  return DataIterator(it_ds, fingerprint)



def load_sft_jsonl(path: str | os.PathLike) -> list[dict]:
  """Reads an SFT JSONL file (rows with prompt/completion fields)."""
  return read_jsonl(path)
