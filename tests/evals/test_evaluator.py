"""evaluate(): metrics from scripted completions (known verdicts), then the real sharded sampler."""
import json
import math

import jax
import numpy as np
import pytest

from evals_testlib import load_config, r1, save_tiny_workdir
from r1jax.evals import evaluator, runner
from r1jax.rollout import Sampler, SamplerConfig

CODE = '```python\ndef add(a, b):\n  return a + b\n```'
WRONG_CODE = '```python\ndef add(a, b):\n  return a - b\n```'
RECORDS = [
    {'id': 'half', 'question': 'Compute half of one.', 'answer': '\\frac{1}{2}', 'task': 'math'},
    {'id': 'two', 'question': 'Compute two.', 'answer': '2', 'task': 'math'},
    {'id': 'poly', 'question': 'Compute the polynomial.', 'answer': 'x+1', 'task': 'math'},
    {'id': 'add', 'question': 'Write add.', 'answer': '', 'task': 'code', 'entry_point': 'add',
     'tests': 'def check(candidate):\n  assert candidate(1, 2) == 3\n'},
]
RESPONSES = {
    'half': [r1('half is', '0.5'), r1('one over two', '1/2'), r1('嗯，我们再算一次 and again', '3'), 'no idea'],
    'two': [r1('a', '7'), r1('b', '7'), r1('c', '2'), 'seven ' * 200],   # the last is truncated
    'poly': [r1('p, wait, p', '1+x'), r1('p', 'x + 1'), r1('p', 'x+1'), r1('p', '1 + x')],
    'add': [CODE, WRONG_CODE, CODE, WRONG_CODE],
}


def _responder(prompt, s):
  for rec in RECORDS:
    if rec['question'] in prompt:
      return RESPONSES[rec['id']][s]
  raise AssertionError(prompt)


def test_scripted_metrics_match_hand_computed(tok, scripted):
  sampler = scripted(_responder, max_new_tokens=128)
  res = evaluator.evaluate(sampler=sampler, params=None, tokenizer=tok, template='r1_zero',
                           records=RECORDS, num_samples=4, batch_size=3, max_prompt_len=160,
                           pass_ks=(1, 2, 4, 8))
  s = res.summary
  cfg = sampler.configs[0]
  assert (cfg.num_samples, cfg.temperature, cfg.top_p, cfg.greedy) == (4, 0.6, 0.95, False)
  assert cfg.eos_ids == tuple(tok.eos_ids) and cfg.max_new_tokens == 128
  # 4 records in batches of 3: the last batch is padded with 2 masked copies, which are dropped.
  assert len(sampler.prompts_seen) == 6
  assert [(x['id'], x['sample_index']) for x in res.samples] == [
      (r['id'], i) for r in RECORDS for i in range(4)]
  verdicts = {r['id']: [x['correct'] for x in res.samples if x['id'] == r['id']] for r in RECORDS}
  assert verdicts == {'half': [True, True, False, False], 'two': [False, False, True, False],
                      'poly': [True] * 4, 'add': [True, False, True, False]}
  per_problem = [0.5, 0.25, 1.0, 0.5]
  assert s['pass@1'] == pytest.approx(np.mean(per_problem))
  assert s['pass@1_se'] == pytest.approx(np.std(per_problem, ddof=1) / 2)
  assert s['pass@2'] == pytest.approx(np.mean([5 / 6, 0.5, 1.0, 5 / 6]))
  assert s['pass@4'] == 1.0 and 'pass@8' not in s
  # cons@4 over the 3 math problems (code does not vote): half (0.5 ~ 1/2) right, two ('7') wrong.
  assert s['cons@4'] == pytest.approx(2 / 3)
  assert s['cons@4_se'] == pytest.approx(np.std([1, 0, 1], ddof=1) / math.sqrt(3))
  assert s['num_voted'] == 3 and s['num_problems'] == 4 and s['num_samples'] == 4
  assert s['format_rate'] == pytest.approx(10 / 16)
  assert s['truncation_rate'] == pytest.approx(1 / 16)
  assert s['language_mixing_rate'] == pytest.approx(1 / 16)   # the Chinese/English CoT of 'half'
  assert s['reflection_rate'] == pytest.approx(1 / 16)        # the 'wait' of 'poly'
  assert s['summary_rate'] == 0.0                 # R1-Zero format: nothing between </think> and <answer>
  by_id = {p['id']: p for p in res.problems}
  assert by_id['half']['voted_answer'] == '0.5' and by_id['half']['cons'] is True
  assert by_id['two']['voted_answer'] == '7' and by_id['two']['cons'] is False
  assert by_id['add']['cons'] is None
  trunc = [x for x in res.samples if x['finish_reason'] == 'length']
  assert len(trunc) == 1 and trunc[0]['length'] == 128
  assert res.samples[0]['completion'] == RESPONSES['half'][0]
  assert res.samples[0]['extracted_answer'] == '0.5'


def test_real_sampler_on_mesh_is_deterministic(tok, tiny_policy, countdown_records):
  cfg, graphdef, params, mesh, rules = tiny_policy
  sampler = Sampler(graphdef, cfg, SamplerConfig(max_new_tokens=8, cache_dtype='float32'),
                    mesh, rules)
  kw = dict(sampler=sampler, params=params, tokenizer=tok, template='r1_zero',
            records=countdown_records[:3], num_samples=2, batch_size=2, max_prompt_len=160)
  a = evaluator.evaluate(seed=0, **kw)
  b = evaluator.evaluate(seed=0, **kw)
  c = evaluator.evaluate(seed=1, **kw)
  texts = lambda r: [x['completion'] for x in r.samples]
  assert len(a.samples) == 6 and texts(a) == texts(b) and texts(a) != texts(c)
  assert all(1 <= x['length'] <= 8 for x in a.samples)
  assert a.summary['num_problems'] == 3 and 0.0 <= a.summary['pass@1'] <= 1.0
  assert 'cons@2' in a.summary and a.summary['mean_length'] > 0


def test_continuous_engine_evaluates_like_the_sampler(tok, tiny_policy, countdown_records):
  """The evaluator on the continuous-batching engine (2 slots for 6 rows, on the mesh): the
  same completions and summary as with the static sampler."""
  from r1jax.rollout.engine import Engine, EngineConfig
  cfg, graphdef, params, mesh, rules = tiny_policy
  scfg = SamplerConfig(max_new_tokens=8, cache_dtype='float32')
  kw = dict(params=params, tokenizer=tok, template='r1_zero', records=countdown_records[:3],
            num_samples=2, batch_size=3, max_prompt_len=160, seed=0)
  a = evaluator.evaluate(sampler=Sampler(graphdef, cfg, scfg, mesh, rules), **kw)
  engine = Engine(graphdef, cfg, scfg, mesh, rules, EngineConfig(num_slots=2, refill_every=1))
  b = evaluator.evaluate(sampler=engine, **kw)
  assert [x['completion'] for x in a.samples] == [x['completion'] for x in b.samples]
  timeless = lambda r: {k: v for k, v in r.summary.items() if not k.endswith('time_s')}
  assert timeless(a) == timeless(b)
  # The default engine (slots 'auto'): every row of a batch gets a slot, one static wave.
  auto = Engine(graphdef, cfg, scfg, mesh, rules)
  c = evaluator.evaluate(sampler=auto, **kw)
  assert auto.last_static and a.samples == c.samples and timeless(a) == timeless(c)


def test_runner_from_workdir(tok, tiny_policy, tmp_path):
  """Stage `eval` (configs/eval.py:tiny) on a saved tiny workdir; outputs and summary table."""
  cfg, _, params, _, _ = tiny_policy
  src = save_tiny_workdir(tmp_path / 'trained', cfg, params, tok)
  config = load_config('eval', 'tiny')
  config.init_from = str(src)
  config.eval.benchmarks = [dict(name='countdown', num_examples=3),
                            dict(name='arithmetic', num_examples=2, num_samples=2)]
  config.eval.max_new_tokens = 8
  config.eval.batch_size = 4
  config.eval.pass_ks = [1, 2]
  config.eval.num_samples = 2
  config.eval.prompt_len_buckets = [256]   # both benchmarks share one compiled program
  out = tmp_path / 'eval_run'
  summaries = runner.run(config, out)
  assert set(summaries) == {'countdown', 'arithmetic'}
  assert summaries['countdown']['num_problems'] == 3
  assert summaries['arithmetic']['num_problems'] == 2
  assert {'pass@1', 'pass@1_se', 'pass@2', 'cons@2'} <= set(summaries['countdown'])
  lines = (out / 'eval' / 'countdown_samples.jsonl').read_text().splitlines()
  assert len(lines) == 6
  rec = json.loads(lines[0])
  assert {'id', 'sample_index', 'completion', 'extracted_answer', 'correct', 'format_ok',
          'length', 'finish_reason'} <= set(rec)
  summary = json.loads((out / 'eval' / 'summary.json').read_text())
  assert summary['summaries'] == summaries and summary['init_from'] == str(src)
  table = (out / 'eval' / 'summary.md').read_text()
  assert table.startswith('| benchmark') and '| countdown | 2 | 3 |' in table
  # The workdir's checkpoint restores the very params that were saved, onto the mesh.
  default, restored, _ = runner.load_policy(config, tmp_path / 'reload', corpus=None,
                                            max_new_tokens=8, sampler_cfg={})
  from r1jax.rollout.engine import AUTO_SLOTS, Engine
  assert isinstance(default, Engine) and default.engine.num_slots == AUTO_SLOTS   # the default
  engine, _, _ = runner.load_policy(config, tmp_path / 'reload', corpus=None, max_new_tokens=8,
                                    sampler_cfg={'engine': 'continuous', 'engine_slots': 4})
  assert isinstance(engine, Engine) and engine.engine.num_slots == 4
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
