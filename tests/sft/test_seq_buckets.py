"""`train.seq_buckets`: a pretrain / SFT step runs at the smallest width that holds its batch."""
import json

import jax
import numpy as np
import pytest

from r1jax.sft import trainer

from sft_testlib import tiny_config


def test_batch_width_is_the_smallest_bucket_holding_the_longest_row():
  seg = np.zeros((3, 64), np.int32)
  seg[0, :10] = 1
  seg[1, :33] = 1
  seg[2, :5] = 1
  assert trainer.batch_width(seg, (16, 32, 48, 64)) == (48, 10 + 33 + 5)
  seg[1, 30:] = 0
  assert trainer.batch_width(seg, (16, 32, 48, 64))[0] == 32
  # packed rows: segments 1, 2, ... then padding
  seg[0, 10:20] = 2
  assert trainer.batch_width(seg, (16, 32, 48, 64))[0] == 32
  assert trainer.batch_width(np.zeros((2, 64), np.int32), (16, 64))[0] == 16


def _run(tmp_path, name, pack, **train):
  c = tiny_config('pretrain', (dict(kind='procedural', task='arithmetic', num_examples=64,
                                    template='r1_zero_bare'),),
                  num_steps=3, batch_size=8, seq_len=128, log_every=1, checkpoint_every=1000,
                  **train)
  c.data.pack = pack
  out = trainer.train(c, tmp_path / name)
  rows = [json.loads(l) for l in (tmp_path / name / 'metrics.jsonl').read_text().splitlines()]
  return out, [r for r in rows if 'loss' in r]


@pytest.mark.parametrize('pack', [False, True])
def test_cut_steps_train_exactly_like_full_width_ones(tmp_path, pack):
  """Right padding, causal attention and no loss on padding: the cut step's loss, gradients and
  updated parameters are the full width's (8-device mesh, batch sharded). Packed rows are
  right-padded too."""
  full, full_rows = _run(tmp_path, 'full', pack, seq_buckets=1)
  cut, cut_rows = _run(tmp_path, 'cut', pack, seq_buckets=4)
  assert [r['seq_width'] for r in full_rows] == [128.0] * 3
  widths = [r['seq_width'] for r in cut_rows]
  if not pack:   # arithmetic examples are far shorter than 128 tokens
    assert all(w < 128 for w in widths), widths
    assert cut_rows[0]['padding_fraction'] < full_rows[0]['padding_fraction']
  assert all(0 <= r['padding_fraction'] < 1 for r in cut_rows)
  np.testing.assert_allclose([r['loss'] for r in cut_rows], [r['loss'] for r in full_rows],
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose([r['grad_norm'] for r in cut_rows],
                             [r['grad_norm'] for r in full_rows], rtol=1e-4, atol=1e-6)
  for a, b in zip(jax.tree.leaves(cut['state'].params), jax.tree.leaves(full['state'].params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
