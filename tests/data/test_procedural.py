"""Procedural Countdown and arithmetic: determinism, disjoint splits, valid reference solutions."""
import ast
import itertools
import re
from fractions import Fraction

import pytest

from r1jax.data import procedural as P

_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
        ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}


def _eval(expr: str):
  """Independent exact evaluator; returns (value, numbers used)."""
  used = []

  def go(n):
    if isinstance(n, ast.BinOp):
      return _OPS[type(n.op)](go(n.left), go(n.right))
    if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub):
      return -go(n.operand)
    if isinstance(n, ast.Constant) and isinstance(n.value, int):
      used.append(n.value)
      return Fraction(n.value)
    raise ValueError(ast.dump(n))

  return go(ast.parse(expr, mode='eval').body), used


def _solvable(numbers, target):
  """Tiny brute-force Countdown solver (all numbers, any order and bracketing)."""
  def values(nums):
    if len(nums) == 1:
      yield Fraction(nums[0])
      return
    for k in range(1, len(nums)):
      for left in set(itertools.combinations(range(len(nums)), k)):
        a = [nums[i] for i in left]
        b = [nums[i] for i in range(len(nums)) if i not in left]
        for x in values(a):
          for y in values(b):
            yield from (x + y, x - y, x * y)
            if y:
              yield x / y
  return any(v == target for v in values(list(numbers)))


def test_countdown_reference_solutions_are_valid():
  recs = P.countdown_dataset('train', 200, seed=0)
  for r in recs:
    assert r['task'] == 'countdown'
    value, used = _eval(r['answer'])
    assert value == r['target'], r
    assert sorted(used) == sorted(r['numbers']), r
    assert 3 <= len(r['numbers']) <= 4 and 1 <= r['target'] <= 100
    assert str(r['numbers']) in r['question'] and str(r['target']) in r['question']
  assert all(_solvable(r['numbers'], r['target']) for r in recs[:10])


def test_arithmetic_answers():
  recs = P.arithmetic_dataset('train', 200, seed=1, min_ops=2, max_ops=3, max_value=20)
  for r in recs:
    value, used = _eval(r['expression'])
    assert r['answer'] == str(value.numerator) and value.denominator == 1
    assert 3 <= len(used) <= 4 and all(1 <= u <= 20 for u in used)
    assert r['expression'] in r['question'] and r['task'] == 'arithmetic'
    assert len(r['solution_steps']) == len(used) - 1
  with_div = P.arithmetic_dataset('train', 50, ops=('+', '-', '*', '/'))
  assert any('/' in r['expression'] for r in with_div)
  for r in with_div:
    assert _eval(r['expression'])[0] == int(r['answer'])


@pytest.mark.parametrize('gen', [P.countdown_dataset, P.arithmetic_dataset])
def test_deterministic_and_disjoint_splits(gen):
  a = gen('train', 300, seed=0)
  assert a == gen('train', 300, seed=0)
  assert a != gen('train', 300, seed=1)
  key = (lambda r: (tuple(sorted(r['numbers'])), r['target'])) if gen is P.countdown_dataset \
      else (lambda r: r['expression'])
  assert len({key(r) for r in a}) == 300  # no duplicates within a split
  test_keys = {key(r) for seed in (0, 1) for r in gen('test', 60, seed=seed)}
  train_keys = {key(r) for seed in (0, 1, 2) for r in gen('train', 300, seed=seed)}
  assert not test_keys & train_keys
  assert len({r['id'] for r in a}) == 300


def test_split_errors():
  with pytest.raises(ValueError, match='split'):
    P.countdown_dataset('valid', 3)
  with pytest.raises(ValueError, match='test_fraction'):
    P.arithmetic_dataset('train', 3, test_fraction=0.0)


def test_to_string_parentheses():
  tree = ('-', ('*', ('+', 3, 4), 2), 5)
  assert P.to_string(tree) == '(3 + 4) * 2 - 5'
  assert P.to_string(('-', 9, ('-', 4, 2))) == '9 - (4 - 2)'
  assert P.to_string(('/', 8, ('*', 2, 2))) == '8 / (2 * 2)'
  assert P.steps(tree)[0] == ['3 + 4 = 7', '7 * 2 = 14', '14 - 5 = 9']


@pytest.mark.parametrize('task', ['countdown', 'arithmetic'])
def test_sft_corpus(task):
  corpus = P.make_sft_corpus(task, 300, seed=0, error_rate=0.3)
  assert corpus == P.make_sft_corpus(task, 300, seed=0, error_rate=0.3)
  for c in corpus:
    m = re.fullmatch(r'<think> (.+) </think> <answer> (.+) </answer>', c['completion'])
    assert m, c['completion']
    assert c['text'] == c['prompt'] + c['completion'] and c['question'] in c['prompt']
    value, used = _eval(m.group(2))
    if task == 'countdown':
      correct = value == c['target'] and sorted(used) == sorted(c['numbers'])
    else:
      correct = str(value) == c['answer']
    assert correct == c['correct'], c
  wrong = sum(not c['correct'] for c in corpus) / len(corpus)
  assert 0.15 < wrong < 0.45
  assert all(c['correct'] for c in P.make_sft_corpus(task, 50, error_rate=0.0))
  r1 = P.make_sft_corpus(task, 3, template='r1_zero')
  assert r1[0]['prompt'].startswith('A conversation between User and Assistant.')
