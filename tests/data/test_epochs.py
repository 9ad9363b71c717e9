"""Epoch-based SFT data: natural epochs, per-epoch proportions, host sharding, the finite iterator."""
import collections

import pytest

from r1jax.data import epochs, procedural
from r1jax.data.pipeline import make_sft_iterator
from r1jax.tokenizer import load_tokenizer, train_sentencepiece


def test_natural_epochs_show_every_example_once_per_epoch():
  plan = epochs.epoch_plan([5, 3], num_epochs=2, seed=0)
  assert len(plan) == 2
  for ep in plan:
    assert sorted(ep) == [(0, i) for i in range(5)] + [(1, i) for i in range(3)]
  assert plan[0] != plan[1]                                   # reshuffled each epoch
  assert plan == epochs.epoch_plan([5, 3], num_epochs=2, seed=0)   # a pure function of its arguments
  assert plan != epochs.epoch_plan([5, 3], num_epochs=2, seed=1)


def test_proportions_up_and_down_weight_evenly():
  # 3:1 over an epoch of 40 slots: 30 from a 10-example source (each exactly 3 times), 10 from a 30-example one
  plan = epochs.epoch_plan([10, 30], num_epochs=2, proportions=[3, 1], seed=0)
  for ep in plan:
    c = collections.Counter(ep)
    assert sum(v for (k, _), v in c.items() if k == 0) == 30
    assert {v for (k, _), v in c.items() if k == 0} == {3}
    assert sum(v for (k, _), v in c.items() if k == 1) == 10 and max(c[(1, i)] for i in range(30)) == 1
  # the down-weighted source shows 10 different examples in each epoch until its pass runs out
  seen = [{i for k, i in ep if k == 1} for ep in plan]
  assert not seen[0] & seen[1]


def test_per_epoch_proportions_and_epoch_size():
  plan = epochs.epoch_plan([8, 8], num_epochs=2, proportions=[[1, 0], [1, 1]], epoch_size=6, seed=0)
  assert [k for k, _ in plan[0]] == [0] * 6
  assert collections.Counter(k for k, _ in plan[1]) == {0: 3, 1: 3}
  with pytest.raises(ValueError, match='epochs'):
    epochs.epoch_plan([8, 8], num_epochs=3, proportions=[[1, 0], [1, 1]])
  with pytest.raises(ValueError):
    epochs.epoch_plan([8, 8], num_epochs=1, proportions=[1, -1])
  with pytest.raises(ValueError):
    epochs.epoch_plan([0, 8], num_epochs=1, proportions=[1, 1])


def test_hosts_split_each_epoch_into_equal_whole_batches():
  plan = epochs.epoch_plan([7, 4], num_epochs=2, seed=3)
  hosts = [epochs.host_items(plan, pi, 2, batch_size=2) for pi in range(2)]
  assert len(hosts[0]) == len(hosts[1]) == 2 * 6          # 11 slots -> 6 per host -> 3 batches of 2, per epoch
  valid = collections.Counter((k, i) for h in hosts for k, i, v in h if v)
  assert sum(valid.values()) == 22 and set(valid.values()) == {2}
  assert epochs.num_batches([7, 4], 2, batch_size=2, process_count=2) == 6


@pytest.fixture(scope='module')
def tok(tmp_path_factory):
  corpus = procedural.make_sft_corpus('arithmetic', 100, seed=5)
  return load_tokenizer(train_sentencepiece([c['text'] for c in corpus],
                                            tmp_path_factory.mktemp('sp') / 'm', 300))


def test_sft_iterator_runs_exactly_the_epochs_and_resumes(tok):
  a = [{'prompt': f'a{i} =', 'completion': f' {i}'} for i in range(10)]
  b = [{'prompt': f'b{i} =', 'completion': f' {i}'} for i in range(6)]
  kw = dict(batch_size=4, max_len=16, seed=0, process_index=0, process_count=1, num_epochs=2)
  batches = list(make_sft_iterator([a, b], tok, **kw))
  assert len(batches) == epochs.num_batches([10, 6], 2, 4) == 8
  rows = [tuple(r) for bt in batches for r, m in zip(bt['input_ids'].tolist(), bt['loss_mask'].sum(1)) if m > 0]
  assert len(rows) == 32 and len(set(rows)) == 16 and set(collections.Counter(rows).values()) == {2}
  it = make_sft_iterator([a, b], tok, **kw)
  for _ in range(3):
    next(it)
  state = it.get_state()
  rest = list(it)
  it2 = make_sft_iterator([a, b], tok, **kw)
  it2.set_state(state)
  assert [x['input_ids'].tolist() for x in it2] == [x['input_ids'].tolist() for x in rest]
