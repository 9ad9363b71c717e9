"""Epoch-based SFT data: "2 epochs on the curated mix" (DeepSeek-R1 sec. 2.3.3) as a finite, planned stream.

`epoch_plan` decides, before training, which example of which source every slot of every epoch holds:

* Without proportions an epoch is every example of every source exactly once, in a shuffled order (a new order
  each epoch).
* With proportions (one list for all epochs, or one list per epoch) an epoch still holds `epoch_size` examples
  (default: the total number of examples), of which source k supplies `round(p_k * epoch_size)` (largest
  remainders, so they add up). A source draws without replacement from a shuffled pass over its examples and
  starts a new shuffled pass when it runs out, so an up-weighted source repeats its examples as evenly as
  possible and a down-weighted one shows a different subset each epoch.

The plan is a pure function of (sizes, num_epochs, proportions, epoch_size, seed): a resumed run rebuilds the same
plan and grain's iterator state restores the position in it. Each host takes slots `pi::pc` of every epoch; the
shorter hosts are padded with masked copies (`valid=False`, no loss) so every host runs the same number of steps.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import grain
import numpy as np


def _largest_remainder(shares: Sequence[float], total: int) -> list[int]:
  raw = [s * total for s in shares]
  counts = [int(math.floor(r)) for r in raw]
  order = sorted(range(len(raw)), key=lambda k: (-(raw[k] - counts[k]), k))
  for k in order[:total - sum(counts)]:
    counts[k] += 1
  return counts


def normalize_proportions(num_sources: int, num_epochs: int,
                          proportions: Optional[Sequence] = None) -> Optional[list[list[float]]]:
  """Per-epoch shares (each list sums to 1), or None for natural epochs. Accepts one list or one per epoch."""
  if not proportions:
    return None
  rows = [list(proportions)] if not isinstance(proportions[0], (list, tuple)) else [list(p) for p in proportions]
  if len(rows) == 1:
    rows = rows * num_epochs
  if len(rows) != num_epochs:
    raise ValueError(f'{len(rows)} lists of proportions for {num_epochs} epochs (give one, or one per epoch)')
  out = []
  for e, row in enumerate(rows):
    if len(row) != num_sources or any(float(p) < 0 for p in row) or sum(row) <= 0:
      raise ValueError(f'epoch {e}: proportions {row} must be {num_sources} non-negative numbers, not all 0')
    total = float(sum(row))
    out.append([float(p) / total for p in row])
  return out


def epoch_plan(sizes: Sequence[int], num_epochs: int, proportions: Optional[Sequence] = None,
               epoch_size: int = 0, seed: int = 0) -> list[list[tuple[int, int]]]:
  """Per epoch, the ordered (source, record index) slots. See the module docstring."""
  sizes = [int(s) for s in sizes]
  if num_epochs < 1:
    raise ValueError(f'num_epochs must be >= 1, got {num_epochs}')
  if not sizes or min(sizes) < 0 or sum(sizes) == 0:
    raise ValueError(f'need at least one non-empty source, got sizes {sizes}')
  shares = normalize_proportions(len(sizes), num_epochs, proportions)
  n_epoch = int(epoch_size) or sum(sizes)
  passes = [0] * len(sizes)          # shuffled passes started per source
  queues: list[list[int]] = [[] for _ in sizes]

  def draw(k: int, n: int) -> list[int]:
    out = []
    while len(out) < n:
      if not queues[k]:
        if sizes[k] == 0:
          raise ValueError(f'source {k} is empty but its proportion is > 0')
        rng = np.random.default_rng([seed, k, passes[k]])
        queues[k] = rng.permutation(sizes[k]).tolist()
        passes[k] += 1
      take = min(n - len(out), len(queues[k]))
      out += queues[k][:take]
      queues[k] = queues[k][take:]
    return out

  plan = []
  for e in range(num_epochs):
    counts = sizes if shares is None and not epoch_size else _largest_remainder(
        shares[e] if shares is not None else [s / sum(sizes) for s in sizes], n_epoch)
    slots = [(k, i) for k, n in enumerate(counts) for i in draw(k, n)]
    order = np.random.default_rng([seed, 1_000_003, e]).permutation(len(slots))
    plan.append([slots[j] for j in order])
  return plan


def host_items(plan: Sequence[Sequence[tuple[int, int]]], process_index: int = 0, process_count: int = 1,
               batch_size: int = 1) -> list[tuple[int, int, bool]]:
  """This host's (source, index, valid) items of the whole plan: slots `pi::pc` of each epoch, each epoch padded
  (with masked copies) to the same whole number of batches on every host."""
  items = []
  for epoch in plan:
    per_host = math.ceil(len(epoch) / process_count)
    per_host = math.ceil(per_host / batch_size) * batch_size
    mine = [(k, i, True) for k, i in epoch[process_index::process_count]]
    filler = mine[0] if mine else (*epoch[0], True)
    items += mine + [(filler[0], filler[1], False)] * (per_host - len(mine))
  return items


def num_batches(sizes: Sequence[int], num_epochs: int, batch_size: int, proportions: Optional[Sequence] = None,
                epoch_size: int = 0, process_count: int = 1) -> int:
  """Steps the epoch stream lasts with `batch_size` examples per host (the trainer's `num_steps`)."""
  plan = epoch_plan(sizes, num_epochs, proportions, epoch_size)
  return sum(math.ceil(math.ceil(len(e) / process_count) / batch_size) for e in plan)


def epoch_index_dataset(sizes: Sequence[int], num_epochs: int, proportions: Optional[Sequence] = None,
                        epoch_size: int = 0, seed: int = 0, process_index: int = 0, process_count: int = 1,
                        batch_size: int = 1) -> grain.MapDataset:
  """The plan as a finite grain dataset of (source, index, valid), the contract of the SFT iterator's index
  datasets; its length is a multiple of `batch_size`."""
  items = host_items(epoch_plan(sizes, num_epochs, proportions, epoch_size, seed), process_index, process_count,
                     batch_size)
  return grain.MapDataset.source(items).map(lambda x: (int(x[0]), int(x[1]), bool(x[2])))
