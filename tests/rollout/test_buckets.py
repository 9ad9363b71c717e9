"""Prompt-width buckets chosen from the data (r1jax.rollout.buckets)."""
import numpy as np

from r1jax.rollout import buckets
from r1jax.rollout.sampler import SamplerConfig, bucket_prompts


def test_choose_bucket_smallest_fitting_else_exact():
  assert buckets.choose_bucket(9, (12, 32)) == 12
  assert buckets.choose_bucket(12, (12, 32)) == 12
  assert buckets.choose_bucket(13, (32, 12)) == 32
  assert buckets.choose_bucket(40, (12, 32)) == 40
  assert buckets.choose_bucket(5, ()) == 5


def test_short_prompts_get_a_short_bucket_and_the_cap_is_always_there():
  lengths = [9] * 500
  b = buckets.buckets_from_lengths(lengths, max_len=32, batch_size=8)
  assert b == (12, 32)  # 9 rounded up to a multiple of 4, plus the iterator's cap
  # A batch of 9-token prompts runs at width 12, not 32.
  cfg = SamplerConfig(prompt_len_buckets=b)
  ids, mask, _ = bucket_prompts(np.ones((8, 32), np.int32),
                                np.pad(np.ones((8, 9), np.int32), ((0, 0), (23, 0))), cfg)
  assert ids.shape == (8, 12) and mask.sum() == 72


def test_buckets_follow_batch_maxima_and_stay_few():
  rng = np.random.default_rng(0)
  lengths = np.concatenate([rng.integers(8, 20, 990), rng.integers(40, 60, 10)])
  b = buckets.buckets_from_lengths(lengths, max_len=64, batch_size=8)
  assert len(b) <= 3 and b[-1] == 64 and list(b) == sorted(set(b))
  assert b[0] == 20  # the median batch maximum (19) rounded up to 4
  assert all(w <= 64 for w in b)


def test_padding_fraction():
  mask = np.array([[0, 0, 1, 1], [0, 1, 1, 1]])
  assert buckets.padding_fraction(mask) == 1 - 5 / 8
  assert buckets.padding_fraction(mask[:, 2:], width=4) == 1 - 4 / 8


def test_completion_widths_are_evenly_spaced_multiples_up_to_the_cap():
  assert buckets.completion_widths(64, 4) == (16, 32, 48, 64)
  assert buckets.completion_widths(1024, 4) == (256, 512, 768, 1024)
  assert buckets.completion_widths(20, 4) == (8, 16, 20)   # rounded up to 8, capped, distinct
  assert buckets.completion_widths(64, 1) == (64,)
  # The rule the trainer applies: the smallest width that holds the longest completion.
  assert buckets.choose_bucket(33, buckets.completion_widths(64, 4)) == 48
  assert buckets.choose_bucket(64, buckets.completion_widths(64, 4)) == 64
