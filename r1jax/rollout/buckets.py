"""Prompt-width buckets chosen from the data, so short prompts never pay for long ones.

Every compiled program of a GRPO step (prefill, decode, log-probs, update) has the
prompt width P in its shapes, so P takes a few fixed values (buckets) and a batch is
left-padded to the smallest bucket that holds its longest prompt. One bucket of
`max_prompt_len` wastes compute whenever prompts are short (9-token prompts padded to
32 made the whole step ~40% slower in the peer benchmark, docs/performance.md); one
bucket per exact width recompiles at every new width. `buckets_from_lengths` picks a
few widths from the distribution of *batch maxima* (what decides a batch's bucket),
and `choose_bucket` is the rule the sampler applies (`bucket_prompts`). Each bucket
compiles once, the first time a batch needs it; with prompts of similar length every
batch lands in the same bucket.

All host-side and pure: numpy in, ints out.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


def choose_bucket(length: int, buckets: Sequence[int]) -> int:
  """The smallest bucket >= length; `length` itself when none fits (or no buckets)."""
  fitting = [int(b) for b in buckets if int(b) >= length]
  return min(fitting) if fitting else int(length)


def buckets_from_lengths(lengths: Sequence[int], max_len: int, batch_size: int,
                         quantiles: Sequence[float] = (0.5, 0.95), multiple: int = 4,
                         num_batches: int = 256, seed: int = 0) -> tuple[int, ...]:
  """A few prompt widths for batches of `batch_size` prompts drawn from `lengths`.

  Simulates `num_batches` random batches, takes the given quantiles of their longest
  prompt, rounds them up to `multiple`, and always adds `max_len` (the prompt
  iterator's cap) so that no batch ever needs an unplanned width.

  Returns sorted, distinct widths, each <= max_len.
  """
  lens = np.asarray(lengths, np.int64)
  if lens.size == 0:
    return (int(max_len),)
  rng = np.random.default_rng(seed)
  maxima = rng.choice(lens, size=(num_batches, max(1, int(batch_size))), replace=True).max(1)
  widths = {int(max_len)}
  for q in quantiles:
    w = int(math.ceil(float(np.quantile(maxima, q)) / multiple) * multiple)
    widths.add(min(max(w, 1), int(max_len)))
  return tuple(sorted(widths))


def completion_widths(max_new_tokens: int, n: int, multiple: int = 8) -> tuple[int, ...]:
  """`n` completion widths up to `max_new_tokens`, evenly spaced and rounded up to `multiple`
  (64, n=4: 16, 32, 48, 64). The RL trainer runs a step's reference / pi_old passes and its
  update at the smallest of them that holds the batch's longest completion, and the pretrain /
  SFT trainer its step at the smallest that holds the batch's longest row (`train.seq_buckets`,
  with seq_len as `max_new_tokens`); n <= 1 gives (max_new_tokens,): always the full width."""
  top = int(max_new_tokens)
  if n <= 1:
    return (top,)
  widths = {min(top, int(math.ceil(top * i / n / multiple) * multiple)) for i in range(1, n + 1)}
  return tuple(sorted(widths))


def padding_fraction(prompt_mask: np.ndarray, width: int | None = None) -> float:
  """Share of the [B, width] prompt block that is padding (width: default the mask's)."""
  mask = np.asarray(prompt_mask)
  width = mask.shape[1] if width is None else int(width)
  return float(1.0 - mask.sum() / max(1, mask.shape[0] * width))


def sample_prompt_lengths(records: Sequence[dict] | Sequence[Sequence[dict]], tokenizer: Any,
                          template: Any, num: int = 512, seed: int = 0) -> list[int]:
  """Token lengths of up to `num` rendered prompts (as `make_prompt_iterator` renders them)."""
  from r1jax.data.templates import get_template
  template = get_template(template)
  if records and isinstance(records[0], (list, tuple)):
    records = [r for src in records for r in src]
  add_bos = tokenizer.bos_id is not None and not template.includes_bos
  rng = np.random.default_rng(seed)
  idx = rng.permutation(len(records))[:num] if len(records) > num else range(len(records))
  return [len(tokenizer.encode(template.render_prompt(records[i]["question"]), add_bos=add_bos))
          for i in idx]
