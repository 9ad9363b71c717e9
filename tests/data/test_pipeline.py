"""grain pipelines: prompt batches (RL/eval) and SFT batches (loss mask, packing, mixing)."""
import json

import numpy as np
import pytest

from r1jax.data import procedural
from r1jax.data.pipeline import make_prompt_iterator, make_sft_iterator, tokenize_sft_example
from r1jax.data.templates import get_template
from r1jax.tokenizer import train_sentencepiece, load_tokenizer

T = 96


@pytest.fixture(scope='module')
def tok(tmp_path_factory):
  corpus = procedural.make_sft_corpus('arithmetic', 200, seed=5)
  texts = [c['text'] for c in corpus] + [get_template('r1_zero').render_prompt('x')]
  return load_tokenizer(train_sentencepiece(texts, tmp_path_factory.mktemp('sp') / 'm', 400))


@pytest.fixture(scope='module')
def records():
  return procedural.arithmetic_dataset('train', 37, seed=0)


def _prompts(records, tok, **kw):
  args = dict(batch_size=4, max_prompt_len=T, seed=0, process_index=0, process_count=1)
  args.update(kw)
  return make_prompt_iterator(records, tok, args.pop('template', 'plain'), **args)


def test_prompt_batch_shapes_and_left_padding(records, tok):
  b = next(_prompts(records, tok))
  assert b['prompt_ids'].shape == b['prompt_mask'].shape == (4, T)
  assert b['prompt_ids'].dtype == b['prompt_mask'].dtype == np.int32
  assert b['example_mask'].dtype == bool and b['example_mask'].all()
  for k in ('answer', 'task', 'id', 'question', 'expression', 'prompt_text'):
    assert len(b[k]) == 4
  by_id = {r['id']: r for r in records}
  for row in range(4):
    mask = b['prompt_mask'][row]
    n = int(mask.sum())
    assert (mask[T - n:] == 1).all() and (mask[:T - n] == 0).all()  # left padded
    assert (b['prompt_ids'][row][:T - n] == tok.pad_id).all()
    ids = b['prompt_ids'][row][T - n:]
    assert ids[0] == tok.bos_id
    rec = by_id[b['id'][row]]
    assert b['answer'][row] == rec['answer']
    assert tok.decode(ids[1:]) == get_template('plain').render_prompt(rec['question'])


def test_prompt_left_truncation_and_overflow(records, tok):
  r1 = get_template('r1_zero')
  n = len(tok.encode(r1.render_prompt(records[0]['question']), add_bos=True))
  assert n > 40
  b = next(_prompts(records, tok, template='r1_zero', max_prompt_len=40, shuffle=False))
  assert b['prompt_mask'].all() and (b['prompt_ids'][:, 0] == tok.bos_id).all()
  assert tok.decode(b['prompt_ids'][0, 1:]).endswith('. Assistant:')  # the end is kept
  with pytest.raises(ValueError, match='more than max_len'):
    next(_prompts(records, tok, template='r1_zero', max_prompt_len=40, overflow='error'))
  long = [dict(records[0], question='word ' * 200, id='long')] + list(records[1:8])
  it = _prompts(long, tok, overflow='drop', repeat=False, batch_size=8)
  assert 'long' not in next(it)['id']


def test_prompt_determinism_and_state_round_trip(records, tok):
  def ids(it, n):
    return [next(it)['id'] for _ in range(n)]
  assert ids(_prompts(records, tok), 12) == ids(_prompts(records, tok), 12)
  assert ids(_prompts(records, tok), 3) != ids(_prompts(records, tok, seed=1), 3)
  first_epoch = sum(ids(_prompts(records, tok), 10), [])[:37]
  assert sorted(first_epoch) == sorted(r['id'] for r in records)  # a full pass per epoch
  it = _prompts(records, tok)
  ids(it, 5)
  state = it.get_state()
  state = json.loads(json.dumps(state))  # what the checkpoint stores
  expected = [next(it) for _ in range(12)]  # crosses the epoch boundary
  for fresh in (it, _prompts(records, tok)):
    fresh.set_state(state)
    for e in expected:
      got = next(fresh)
      np.testing.assert_array_equal(got['prompt_ids'], e['prompt_ids'])
      assert got['id'] == e['id']
  with pytest.raises(ValueError, match='another pipeline'):
    _prompts(records, tok, batch_size=2).set_state(state)


def test_prompt_sharding_by_process(records, tok):
  """2 fake hosts: disjoint shards, same number of static-shape batches, all records seen."""
  per_host = []
  for pi in range(2):
    it = _prompts(records, tok, repeat=False, process_index=pi, process_count=2, seed=3)
    batches = list(it)
    assert len(batches) == 5  # ceil(ceil(37 / 2) / 4)
    for b in batches:
      assert b['prompt_ids'].shape == (4, T)
    per_host.append([i for b in batches for i, v in zip(b['id'], b['example_mask']) if v])
  assert not set(per_host[0]) & set(per_host[1])
  assert sorted(per_host[0] + per_host[1]) == sorted(r['id'] for r in records)
  assert len(per_host[0]) == 19 and len(per_host[1]) == 18
  with pytest.raises(ValueError, match='process_index'):
    _prompts(records, tok, process_index=2, process_count=2)
  # Default: jax.process_index() / jax.process_count() (one process here) -> everything.
  it = make_prompt_iterator(records, tok, 'plain', 37, T, repeat=False, shuffle=False)
  assert next(it)['id'] == [r['id'] for r in records]


def test_prompt_mixing(tok):
  a = procedural.arithmetic_dataset('train', 20, seed=0)
  c = procedural.countdown_dataset('train', 20, seed=0)
  it = _prompts([a, c], tok, weights=[3, 1], batch_size=8)
  tasks = [t for _ in range(25) for t in next(it)['task']]
  frac = tasks.count('arithmetic') / len(tasks)
  assert 0.65 < frac < 0.85
  b = next(it)
  assert all((n is None) == (t == 'arithmetic') for n, t in zip(b['numbers'], b['task']))
  with pytest.raises(ValueError, match='repeat=True'):
    _prompts([a, c], tok, repeat=False)


def test_sft_loss_mask_alignment(tok):
  ex = tokenize_sft_example('Compute 1 + 2.\n', '<think> 1 + 2 = 3. </think>', tok, 64,
                            add_bos=True)
  p = tok.encode('Compute 1 + 2.\n', add_bos=True)
  c = tok.encode('<think> 1 + 2 = 3. </think>')
  np.testing.assert_array_equal(ex['input_ids'], p + c + [tok.eos_id])
  np.testing.assert_array_equal(ex['loss_mask'], [0] * len(p) + [1] * (len(c) + 1))
  assert tokenize_sft_example('x' * 50, 'y', tok, 8, overflow='drop') is None


def test_sft_batches_unpacked(tmp_path, tok):
  corpus = procedural.make_sft_corpus('arithmetic', 30, seed=1)
  path = tmp_path / 'sft.jsonl'
  path.write_text('\n'.join(json.dumps({'q': c['prompt'], 'a': c['completion']})
                            for c in corpus))
  it = make_sft_iterator(str(path), tok, 4, 128, prompt_field='q', completion_field='a',
                         process_index=0, process_count=1)
  b = next(it)
  assert b['input_ids'].shape == (4, 128) and b['input_ids'].dtype == np.int32
  assert b['loss_mask'].dtype == np.float32
  assert b['positions'].dtype == b['segment_ids'].dtype == np.int32
  for row in range(4):
    n = int((b['segment_ids'][row] > 0).sum())
    assert (b['segment_ids'][row][:n] == 1).all() and (b['input_ids'][row][n:] == tok.pad_id).all()
    np.testing.assert_array_equal(b['positions'][row][:n], np.arange(n))
    ids, mask = b['input_ids'][row][:n], b['loss_mask'][row]
    assert ids[n - 1] == tok.eos_id and mask[n - 1] == 1 and not mask[n:].any()
    target = tok.decode(ids[mask[:n] == 1], skip_special_tokens=True)
    prompt = tok.decode(ids[mask[:n] == 0], skip_special_tokens=True)
    assert target.startswith('<think>') and target.endswith('</answer>')
    assert {'prompt': prompt, 'completion': target} in [
        {'prompt': c['prompt'], 'completion': c['completion']} for c in corpus]
  with pytest.raises(KeyError, match="'prompt' missing"):
    make_sft_iterator(str(path), tok, 4, 128, process_index=0, process_count=1)
  # Non-repeating: every batch keeps [B, T]; padding rows carry no loss.
  batches = list(make_sft_iterator(str(path), tok, 4, 128, prompt_field='q',
                                   completion_field='a', repeat=False, process_index=0,
                                   process_count=1))
  assert len(batches) == 8 and all(x['input_ids'].shape == (4, 128) for x in batches)
  assert sum((x['loss_mask'].sum(1) > 0).sum() for x in batches) == 30


def test_sft_packing_and_state(tok):
  corpus = procedural.make_sft_corpus('arithmetic', 40, seed=2)
  kw = dict(pack=True, process_index=0, process_count=1, seed=0)
  it = make_sft_iterator(corpus, tok, 4, 160, **kw)
  b = next(it)
  seg, pos, mask, ids = b['segment_ids'], b['positions'], b['loss_mask'], b['input_ids']
  assert seg.max() >= 2  # several examples per row
  for row in range(4):
    for s in range(1, seg[row].max() + 1):
      idx = np.nonzero(seg[row] == s)[0]
      assert (np.diff(idx) == 1).all()  # contiguous segment
      np.testing.assert_array_equal(pos[row][idx], np.arange(len(idx)))  # positions restart
      assert ids[row][idx[0]] == tok.bos_id and ids[row][idx[-1]] == tok.eos_id
      m = mask[row][idx]
      k = int(np.argmax(m))  # loss on the completion suffix only
      assert m[0] == 0 and (m[k:] == 1).all() and not m[:k].any()
      assert tok.decode(ids[row][idx][k:], skip_special_tokens=True).startswith('<think>')
    pad = seg[row] == 0
    assert (ids[row][pad] == tok.pad_id).all() and not mask[row][pad].any()
  state = json.loads(json.dumps(it.get_state()))
  expected = [next(it) for _ in range(3)]
  fresh = make_sft_iterator(corpus, tok, 4, 160, **kw)
  fresh.set_state(state)
  for e in expected:
    got = next(fresh)
    for k in e:
      np.testing.assert_array_equal(got[k], e[k])


def test_sft_mixing_proportions(tok):
  a = [{'prompt': 'A', 'completion': 'a'}] * 5
  c = [{'prompt': 'C', 'completion': 'c'}] * 50
  it = make_sft_iterator([a, c], tok, 8, 16, weights=[0.5, 0.5], process_index=0,
                         process_count=1)
  first = [int(x[1]) for _ in range(20) for x in next(it)['input_ids']]
  assert abs(first.count(tok.encode('A')[0]) / len(first) - 0.5) < 0.1


def test_tfds_source(tok):
  tfds = pytest.importorskip('tensorflow_datasets')
  from r1jax.data.tfds_source import tfds_records
  with tfds.testing.mock_data(num_examples=6):
    recs = tfds_records('math_qa', 'train', question_field='Problem', answer_field='correct')
    assert len(recs) == 6 and recs[0]['id'] == 'math_qa/train/0'
    assert isinstance(recs[0]['question'], str) and 'Rationale' in recs[0]
    b = next(_prompts(recs, tok, batch_size=2))
    assert b['prompt_ids'].shape == (2, T) and len(b['answer']) == 2
    with pytest.raises(KeyError, match='missing'):
      tfds_records('math_qa', 'train')[0]
