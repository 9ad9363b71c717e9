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


_ARITH = dict(error_rate=0.4, template='r1_zero_bare', error_mode='left_to_right',
              min_ops=2, max_ops=3, max_value=5)


def _digest(rows):
  import hashlib
  import json
  return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


def test_sft_corpus_defaults_unchanged_byte_for_byte():
  """The chain-of-thought options are off by default: corpora are the ones made before they existed
  (digests recorded from the code before the options were added)."""
  assert _digest(P.make_sft_corpus('arithmetic', 300, seed=0, untagged_rate=0.3, **_ARITH)) == \
      'f4c7eb75981497d4'
  assert _digest(P.make_sft_corpus('arithmetic', 200, seed=1, error_rate=0.3)) == '847b2c10f3c95422'
  assert _digest(P.make_sft_corpus('countdown', 100, seed=2, error_rate=0.3)) == 'fe48190cbf8e8da1'


_EN_STEP = r'-?\d+ (?:plus|minus|times) -?\d+ is -?\d+'
_ZH_STEP = r'-?\d+ [加减乘] -?\d+ 得 -?\d+'


def _steps_of(cot: str) -> list[str]:
  """The worded steps of a CoT without reflections (separator ', ' then the 'then' word)."""
  return re.split(r', (?:then|然后) ', cot.strip().rstrip('.'))


def test_worded_cot_same_problems_and_answers_all_english():
  sym = P.make_sft_corpus('arithmetic', 400, seed=3, **_ARITH)
  worded = P.make_sft_corpus('arithmetic', 400, seed=3, cot_style='worded', **_ARITH)
  assert worded == P.make_sft_corpus('arithmetic', 400, seed=3, cot_style='worded', **_ARITH)
  from r1jax.rewards import language as L
  for s, w in zip(sym, worded, strict=True):
    # Same problem, same strategy (right or left to right), same answer: only the words differ.
    assert (s['question'], s['correct'], s['answer']) == (w['question'], w['correct'], w['answer'])
    m = re.fullmatch(r'<think> (.+) </think> <answer> (.+) </answer>', w['completion'])
    assert m and m.group(2) == re.search(r'<answer> (.+) </answer>', s['completion']).group(1)
    steps = _steps_of(m.group(1))
    assert all(re.fullmatch(_EN_STEP, x) for x in steps), w['completion']
    sym_steps = re.findall(r'(-?\d+) ([-+*]) (-?\d+) = (-?\d+)', s['completion'])
    assert [re.findall(r'-?\d+', x) for x in steps] == [[a, b, v] for a, _, b, v in sym_steps]
    assert not w['mixed'] and not w['reflected']
    # All of the CoT's words are English for the language reward's scorer.
    assert L.language_share(m.group(1), 'en') == 1.0, m.group(1)


def test_mix_rate_switches_to_chinese_and_the_scorer_sees_it():
  from r1jax.rewards import language as L
  from r1jax.rewards.format import think_text
  rows = P.make_sft_corpus('arithmetic', 1000, seed=0, cot_style='worded', mix_rate=0.3, **_ARITH)
  plain = P.make_sft_corpus('arithmetic', 1000, seed=0, cot_style='worded', **_ARITH)
  assert 0.25 < sum(r['mixed'] for r in rows) / len(rows) < 0.35
  for r, p in zip(rows, plain, strict=True):
    assert (r['question'], r['answer'], r['correct']) == (p['question'], p['answer'], p['correct'])
    assert r['prompt'] == p['prompt'] and r['prompt'].isascii()     # prompts stay English
    cot = think_text(r['completion'])
    steps = _steps_of(cot)
    assert L.is_mixed(cot, 'en') == r['mixed'], cot
    if r['mixed']:   # English first, then Chinese to the end: one switch
      langs = ['en' if re.fullmatch(_EN_STEP, x) else 'zh' if re.fullmatch(_ZH_STEP, x) else '?'
               for x in steps]
      assert langs[0] == 'en' and '?' not in langs and langs == sorted(langs), cot
      assert [re.findall(r'-?\d+', x) for x in steps] == [
          re.findall(r'-?\d+', x) for x in _steps_of(think_text(p['completion']))]
    else:
      assert cot == think_text(p['completion'])
  # The target language the reward detects from the question is English.
  assert L.resolve_targets(3, 'auto', [r['question'] for r in rows[:3]]) == ['en'] * 3


@pytest.mark.parametrize('style', ['worded', 'symbolic'])
def test_reflect_rate_corrects_one_step(style):
  rows = P.make_sft_corpus('arithmetic', 600, seed=1, cot_style=style, reflect_rate=0.2,
                           mix_rate=0.3 if style == 'worded' else 0.0, **_ARITH)
  plain = P.make_sft_corpus('arithmetic', 600, seed=1, cot_style=style,
                            mix_rate=0.3 if style == 'worded' else 0.0, **_ARITH)
  assert 0.15 < sum(r['reflected'] for r in rows) / len(rows) < 0.25
  sep = ', ' if style == 'worded' else '. '
  for r, p in zip(rows, plain, strict=True):
    # Only the reflection differs: same answer, same switch to the second language.
    assert (r['answer'], r['correct'], r['mixed']) == (p['answer'], p['correct'], p.get('mixed', False))
    assert (P.REFLECTION in r['completion']) == r['reflected']
    if not r['reflected']:
      assert r['completion'] == p['completion']
      continue
    assert r['completion'].count(P.REFLECTION) == 1
    before, after = r['completion'].split(sep + P.REFLECTION + sep)
    wrong, right = before.rsplit(' ', 1), after.split(sep)[0].split('.')[0].rsplit(' ', 1)
    # The step is written again with the same operands, and only its result changed (by 1 to 3).
    assert wrong[0].endswith(right[0]) and 1 <= abs(int(wrong[1]) - int(right[1])) <= 3
    wrong_step = re.sub(r'^(?:<think> |then |然后 )', '', before.rsplit(sep, 1)[-1])
    assert r['completion'].replace(wrong_step + sep + P.REFLECTION + sep, '') == p['completion']


def test_cot_options_splits_and_errors():
  train = P.make_sft_corpus('arithmetic', 300, seed=0, cot_style='worded', mix_rate=0.5, **_ARITH)
  test = P.make_sft_corpus('arithmetic', 100, seed=0, split='test', cot_style='worded',
                           mix_rate=0.5, **_ARITH)
  assert not {r['question'] for r in train} & {r['question'] for r in test}
  with pytest.raises(ValueError, match='mix_rate needs'):
    P.make_sft_corpus('arithmetic', 5, mix_rate=0.3, **_ARITH)
  with pytest.raises(ValueError, match="task='arithmetic'"):
    P.make_sft_corpus('countdown', 5, cot_style='worded')
  with pytest.raises(ValueError, match="error_mode='left_to_right'"):
    P.make_sft_corpus('arithmetic', 5, cot_style='worded')
  with pytest.raises(ValueError, match='cot_style'):
    P.make_sft_corpus('arithmetic', 5, cot_style='prose', **_ARITH)
  with pytest.raises(ValueError, match=r'reflect_rate must be in \[0, 1\]'):
    P.make_sft_corpus('arithmetic', 5, reflect_rate=1.5, **_ARITH)
  with pytest.raises(ValueError, match='second_language'):
    P.make_sft_corpus('arithmetic', 5, cot_style='worded', mix_rate=0.1, second_language='fr',
                      **_ARITH)


def test_summary_adds_a_readable_summary_only():
  """`summary=True`: R1's cold-start format (reasoning, a summary, the answer), nothing else changes."""
  from r1jax.rewards import format as rformat
  rows = P.make_sft_corpus('arithmetic', 200, seed=3, summary=True, **_ARITH)
  plain = P.make_sft_corpus('arithmetic', 200, seed=3, **_ARITH)
  for r, p in zip(rows, plain, strict=True):
    line = f"The answer is {p['completion'].split('<answer> ')[1].split(' </answer>')[0]}."
    assert r['completion'] == p['completion'].replace('</think> ', f'</think> {line} ', 1)
    assert rformat.summary_text(r['completion'], keep_answer=False) == line
    assert rformat.is_strict_format(r['completion'], allow_summary=True)
    assert (r['question'], r['answer'], r['correct']) == (p['question'], p['answer'], p['correct'])
  with pytest.raises(ValueError, match="summary needs task='arithmetic'"):
    P.make_sft_corpus('countdown', 5, summary=True)
