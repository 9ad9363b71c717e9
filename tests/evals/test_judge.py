"""Generative judge: a tiny model trained here to emit verdicts judges (question, reference, response) triples
through the sharded sampler; used as a reward and as a verifier in rejection sampling."""
import json

import numpy as np
import pytest

from evals_testlib import r1
from r1jax import config as config_lib
from r1jax.evals import judge as judge_lib
from r1jax.evals import rejection_sampling as rs
from r1jax.rewards.registry import RewardSystem
from r1jax.sft import trainer as sft_trainer

COLOURS = ('red', 'blue', 'green', 'pink', 'black', 'white')
COMPACT = 'Q: {question} R: {reference} A: {response} V:'   # a short prompt for a tiny judge
FMT = judge_lib.JudgeFormat(prompt=COMPACT)


def triples(n, seed):
  """(question, reference, response, correct): the response names the reference colour or another one."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    ref = str(rng.choice(COLOURS))
    ok = bool(rng.integers(2))
    said = ref if ok else str(rng.choice([c for c in COLOURS if c != ref]))
    out.append(('What colour is it?', ref, f'It is {said}', ok))
  return out


def test_verdict_parsing():
  assert FMT.parse('[[CORRECT]]') == 1.0 and FMT.parse('blah [[INCORRECT]]') == 0.0
  assert FMT.parse('[[INCORRECT]] no wait [[CORRECT]]') == 1.0         # the last verdict counts
  assert FMT.parse('<think>[[CORRECT]]?</think> [[INCORRECT]]') == 0.0  # reasoning is not the verdict
  assert FMT.parse('no verdict') is None and FMT.parse(None) is None
  words = judge_lib.JudgeFormat(verdicts=(('CORRECT', 1.0), ('INCORRECT', 0.0)))
  assert words.parse('INCORRECT') == 0.0                                # not fooled by the substring
  assert 'Reference answer:\nx' in judge_lib.JudgeFormat().render('q', 'x', 'y')


@pytest.fixture(scope='module')
def tiny_judge_workdir(tmp_path_factory):
  d = tmp_path_factory.mktemp('judge')
  with open(d / 'verdicts.jsonl', 'w') as f:
    for q, ref, resp, ok in triples(1500, 0):
      f.write(json.dumps({'prompt': FMT.render(q, ref, resp) + '\n',
                          'completion': '[[CORRECT]]' if ok else '[[INCORRECT]]'}) + '\n')
  c = config_lib.base_config()
  c.stage = 'sft'
  c.model.preset = 'tiny'
  # Llama (no q/k/v bias): the tiny preset's head_dim 32 != 64 / 4 heads, which Hugging Face's Qwen2 cannot express
  # and Llama can, so the judge can also be exported (test_judge_from_a_hugging_face_checkpoint).
  c.model.overrides.update(dict(num_layers=2, embed_dim=64, mlp_dim=128, num_heads=4, num_kv_heads=2,
                                family='llama', qkv_bias=False))
  c.tokenizer.vocab_size = 320
  c.mesh.shape = (8, 1, 1)
  c.optim.update(learning_rate=3e-3, warmup_steps=10)
  c.train.update(num_steps=400, batch_size=32, seq_len=48, log_every=50, checkpoint_every=400)
  c.data = dict(sources=(dict(kind='jsonl', path=str(d / 'verdicts.jsonl')),))
  sft_trainer.train(c, d / 'work')
  return d / 'work'


JUDGE_KW = dict(template='plain', mesh_shape=(8, 1, 1), max_new_tokens=8, cache_dtype='float32',
                fmt={'prompt': COMPACT}, batch_size=32, max_prompt_len=64)


@pytest.fixture(scope='module')
def tiny_judge(tiny_judge_workdir):
  return judge_lib.Judge.from_checkpoint(str(tiny_judge_workdir), **JUDGE_KW)


def test_tiny_judge_agrees_with_the_truth_on_held_out_triples(tiny_judge):
  held_out = triples(64, 1)
  verdicts = tiny_judge.verdicts(*zip(*[t[:3] for t in held_out]))
  assert None not in verdicts
  agree = np.mean([v == float(t[3]) for v, t in zip(verdicts, held_out)])
  assert agree >= 0.9, agree


def test_judge_from_a_hugging_face_checkpoint(tiny_judge, tiny_judge_workdir, tmp_path):
  """The trained judge written as a Hugging Face directory (safetensors by `save_pretrained`, tokenizer.json),
  loaded back by `Judge.from_checkpoint`: the same verdicts as the r1jax workdir."""
  from r1jax.export import export
  hf_dir = tmp_path / 'hf_judge'
  export(tiny_judge_workdir, hf_dir, mesh_shape=(8, 1, 1))
  assert (hf_dir / 'model.safetensors').exists() and (hf_dir / 'config.json').exists()
  assert not (hf_dir / 'model_config.json').exists()          # nothing r1jax-specific to read
  hf_judge = judge_lib.Judge.from_checkpoint(str(hf_dir), **JUDGE_KW)
  assert type(hf_judge.tokenizer).__name__ != type(tiny_judge.tokenizer).__name__   # HF tokenizers, not sp
  held_out = triples(32, 2)
  args = list(zip(*[t[:3] for t in held_out]))
  assert hf_judge.verdicts(*args) == tiny_judge.verdicts(*args)
  agree = np.mean([v == float(t[3]) for v, t in zip(hf_judge.verdicts(*args), held_out)])
  assert agree >= 0.9, agree


def test_judge_as_a_reward(tiny_judge):
  comps = ['<think>hmm</think> It is red', '<think>hmm</think> It is blue', '<think>x</think> It is red']
  fields = {'question': ['What colour is it?'] * 3, 'answer': ['red', 'red', 'red'],
            'task': ['general', 'general', 'math']}
  with RewardSystem({'judge': 1.0}, {'judge': {'judge': tiny_judge}}, num_workers=0) as system:
    res = system.score(comps, fields)
  assert res.components['judge'].tolist() == [1.0, 0.0, 0.0]   # the math row is not judged


def test_judge_as_a_rejection_sampling_verifier(tiny_judge, tok, scripted, tmp_path):
  recs = [{'id': f'g{i}', 'question': 'What colour is it?', 'answer': c, 'task': 'general'}
          for i, c in enumerate(('red', 'green'))]

  def responder(prompt, s):
    del prompt
    return r1('We look at it closely.', ['It is red', 'It is green', 'It is pink'][s])

  opts = rs.RejectionOptions(num_samples=3, batch_size=2, chunk_size=2, max_prompt_len=64, max_new_tokens=64,
                             select='all', max_per_prompt=3, require_format=False)
  totals = rs.rejection_sample(sampler=scripted(responder), params=None, tokenizer=tok, template='r1_zero',
                               records=recs, out_dir=tmp_path, options=opts, judge=tiny_judge)
  # The stage's verdicts are the judge's own on (question, answer, summary); the tiny judge is mostly right.
  said = ['It is red', 'It is green', 'It is pink']
  direct = tiny_judge.verdicts(['What colour is it?'] * 6, [r['answer'] for r in recs for _ in said], said * 2)
  expected = [(recs[i // 3]['id'], i % 3) for i, v in enumerate(direct) if v == 1.0]
  assert totals['judged'] == 6 and totals['num_correct'] == len(expected)
  rows = [json.loads(l) for l in (tmp_path / rs.SFT_FILE).read_text().splitlines()]
  assert [(r['id'], r['sample_index']) for r in rows] == expected
  assert np.mean([v == float(i in (0, 4)) for i, v in enumerate(direct)]) >= 5 / 6
