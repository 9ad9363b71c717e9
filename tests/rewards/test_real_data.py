"""Real-data checks of the verifiers (data read from ../shared/data, never copied into the repo).

Measured rates (printed with -s): MATH-500 boxed-in-solution vs answer, rewritten gold forms for
MATH-500/AIME/AMC/GSM8K, shuffled answers, HumanEval canonical vs empty/wrong bodies.
"""
import json
import os
import random
from pathlib import Path

import pytest

from r1jax.rewards import code as rcode
from r1jax.rewards import math as rmath


def _data_dir() -> Path:
  env = os.environ.get('R1JAX_DATA_DIR')
  return Path(env) if env else Path(__file__).resolve().parents[2] / '..' / 'shared' / 'data'


DATA = _data_dir()
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f'real data folder {DATA} not found (set R1JAX_DATA_DIR)')


def _load(rel):
  path = DATA / rel
  if not path.is_file():
    pytest.skip(f'{path} not found')
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _number_forms(n: str) -> list[str]:
  """The same integer written the ways models write it."""
  v = int(float(n))
  forms = [f'The final answer is {v}.', f'\\boxed{{{v}}}', f'<think>so</think><answer>{v}</answer>',
           f'... so we get $\\boxed{{{v}.0}}$', f'#### {v}', f'\\boxed{{\\frac{{{2 * v}}}{{2}}}}',
           f'\\boxed{{{v:,}}}', f'the answer is \\boxed{{{v} \\text{{ units}}}}']
  return forms


def test_math500_boxed_solution_verifies_against_answer():
  rows = _load('math500/test.jsonl')
  ok = sum(rmath.verify(r['solution'], r['answer']) for r in rows)
  print(f'\nMATH-500 boxed(solution) vs answer: {ok}/{len(rows)} = {ok / len(rows):.3f}')
  assert ok / len(rows) >= 0.99


def test_math500_rewritten_answers_verify():
  rows = _load('math500/test.jsonl')
  ok = 0
  for r in rows:
    a = r['answer']
    rewritten = a.replace('\\frac', '\\dfrac').replace(' ', '').replace('\\left', '').replace('\\right', '')
    ok += rmath.verify(f'Thus the answer is $\\boxed{{{rewritten}}}$.', a)
  print(f'\nMATH-500 rewritten gold (dfrac, spaces, \\left/\\right) verifies: {ok}/{len(rows)} = {ok / len(rows):.3f}')
  assert ok / len(rows) >= 0.95


@pytest.mark.parametrize('rel,key', [('aime24/test.jsonl', 'answer'), ('amc23/test.jsonl', 'answer')])
def test_aime_amc_gold_in_other_forms(rel, key):
  rows = _load(rel)
  total = ok = 0
  for r in rows:
    for form in _number_forms(str(r[key])):
      total += 1
      ok += rmath.verify(form, r[key])
  print(f'\n{rel}: gold re-written forms verify {ok}/{total} = {ok / total:.3f}')
  assert ok == total


def test_gsm8k_gold_in_other_forms():
  rows = _load('gsm8k/test.jsonl')[:300]
  total = ok = 0
  for r in rows:
    gold = r['answer'].rsplit('####', 1)[1].strip().replace(',', '')
    forms = _number_forms(gold) if gold.lstrip('-').isdigit() else [f'\\boxed{{{gold}}}']
    forms.append(f'She makes ${gold} every day.')
    for form in forms:
      total += 1
      ok += rmath.verify(form, r['answer'])   # the gold is the full worked solution ending in '#### n'
  print(f'\nGSM8K (300): gold re-written forms verify {ok}/{total} = {ok / total:.3f}')
  assert ok == total


def test_shuffled_answers_almost_never_verify():
  rows = _load('math500/test.jsonl')
  rng = random.Random(0)
  perm = list(range(len(rows)))
  rng.shuffle(perm)
  pairs = [(rows[i], rows[j]) for i, j in enumerate(perm) if rows[i]['answer'].strip() != rows[j]['answer'].strip()]
  fp = sum(rmath.verify(a['solution'], b['answer']) for a, b in pairs)
  print(f'\nMATH-500 shuffled (distinct gold strings): {fp}/{len(pairs)} = {fp / len(pairs):.4f} verify')
  assert fp / len(pairs) <= 0.01
  aime = _load('aime24/test.jsonl')
  fp2 = sum(rmath.verify(f'\\boxed{{{a["answer"]}}}', b['answer'])
            for a in aime for b in aime if a['answer'] != b['answer'])
  assert fp2 == 0


@pytest.mark.skipif(bool(rcode.sandbox_problem()), reason='code sandbox unavailable')
def test_humaneval_canonical_passes_and_wrong_fails():
  import concurrent.futures
  rows = _load('humaneval/test.jsonl')

  def check(r):
    run = lambda body: rcode.run_tests(r['prompt'] + body, r['test'], r['entry_point'], timeout_s=10)
    res = run(r['canonical_solution'])
    return res, run('    pass\n').passed, run('    return None\n').passed

  with concurrent.futures.ThreadPoolExecutor(3) as ex:   # each run is its own sandboxed subprocess
    out = list(ex.map(check, rows))
  n = len(rows)
  canon = sum(res.passed for res, _, _ in out)
  empty = sum(e for _, e, _ in out)
  wrong = sum(w for _, _, w in out)
  failures = [(r['task_id'], res.status, res.error) for r, (res, _, _) in zip(rows, out) if not res.passed]
  print(f'\nHumanEval canonical pass {canon}/{n}; empty body pass {empty}/{n}; `return None` pass {wrong}/{n}')
  assert canon == n, failures[:5]
  assert empty == 0 and wrong == 0


def test_math_agreement_corpus_sample():
  """A slice of benchmarks/math_agreement.py's corpus (the full run's figures are in docs/rewards.md)."""
  import importlib.util
  path = Path(__file__).resolve().parents[2] / 'benchmarks' / 'math_agreement.py'
  spec = importlib.util.spec_from_file_location('math_agreement', path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  if not (DATA / 'math500' / 'test.jsonl').is_file():
    pytest.skip('MATH-500 not found')
  corpus = mod.build_corpus(DATA, n=12)
  pos = [rmath.verify(c, g) for _, _, c, g, label in corpus if label]
  neg = [not rmath.verify(c, g) for _, _, c, g, label in corpus if not label]
  print(f'\nagreement sample: positives accepted {sum(pos)}/{len(pos)}, negatives rejected {sum(neg)}/{len(neg)}')
  assert sum(pos) / len(pos) >= 0.97 and sum(neg) / len(neg) >= 0.93
