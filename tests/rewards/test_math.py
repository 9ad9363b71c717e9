"""Math extraction and equivalence: extraction order, GSM8K normalisation, math-verify cases, negatives."""
import threading
import time

import numpy as np
import pytest

from r1jax.rewards import math as rmath


@pytest.mark.parametrize('text,expected', [
    ('<think>x=3</think><answer>42</answer>', '42'),
    ('<answer>so \\boxed{7}</answer>', '7'),
    ('<answer>1</answer> then <answer>2</answer>', '2'),
    ('first \\boxed{1} then \\boxed{\\frac{1}{2}}', '\\frac{1}{2}'),
    ('\\boxed{\\left(\\frac{a}{b}, \\{c\\}\\right)}', '\\left(\\frac{a}{b}, \\{c\\}\\right)'),
    ('\\fbox{5}', '5'),
    ('\\boxed {9}', '9'),
    ('valid \\boxed{3} then unbalanced \\boxed{4', '3'),
    ('We get 12 apples and 1,234 pears.', '1,234'),
    ('#### 72\nand 5 more words 9', '72'),
    ('no number here', None),
    ('', None),
    ('<answer></answer>', None),
])
def test_extract_answer(text, expected):
  assert rmath.extract_answer(text) == expected


def test_extract_answer_fallback_none():
  assert rmath.extract_answer('it is 5', fallback='none') is None
  with pytest.raises(ValueError):
    rmath.extract_answer('it is 5', fallback='bogus')


@pytest.mark.parametrize('pred,gold', [
    ('$1,234.00', '1234'), ('50\\%', '50'), ('\\frac{3}{4}', '0.75'), ('-3/4', '-\\frac{3}{4}'),
    ('12 \\text{ cm}', '12'), ('90^\\circ', '90'), ('\\dfrac{1}{2}', '\\frac12'), ('18.', 18),
    ('27', 27.0), ('0.5', '\\frac{1}{2}'),
])
def test_numeric_equivalence(pred, gold):
  assert rmath.answers_match(pred, gold)


@pytest.mark.parametrize('pred,gold', [
    ('(3,\\pi/2)', '\\left( 3, \\frac{\\pi}{2} \\right)'),
    ('\\{-2, 1\\}', '1,-2'),
    ('[1, 2)', '[1,2)'),
    ('2\\sqrt{3}', '\\sqrt{12}'),
    ('x^2+2x+1', '(x+1)^2'),
    ('\\begin{pmatrix}1\\\\2\\end{pmatrix}', '\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}'),
    ('6-5i', '6 - 5i'),
])
def test_math_verify_equivalence(pred, gold):
  assert rmath.answers_match(pred, gold)


@pytest.mark.parametrize('pred,gold', [
    ('3', '4'), ('1,235', '1234'), ('\\frac{1}{3}', '0.33'), ('(3, \\pi)', '(3,\\pi/2)'), ('x+1', 'x-1'),
    ('[1,2]', '[1,2)'), (None, '3'), ('', '3'), ('5', ''),
])
def test_not_equivalent(pred, gold):
  assert not rmath.answers_match(pred, gold)


def test_gold_normalisation():
  assert rmath.normalize_gold('Janet ... #### 1,800') == '1,800'
  assert rmath.normalize_gold(27.0) == '27'
  assert rmath.normalize_gold(np.int64(5)) == '5'
  assert rmath.normalize_gold('so \\boxed{\\frac{1}{2}}.') == '\\frac{1}{2}'
  assert rmath.verify('The answer is 1800.', 'Janet ... #### 1,800')


def test_verify_works_off_the_main_thread():
  """math-verify's signal.alarm fails off the main thread; we must not silently return 0 there."""
  out = {}

  def run():
    out['sym'] = rmath.verify('\\boxed{2\\sqrt{3}}', '\\sqrt{12}')
    out['num'] = rmath.verify('\\boxed{0.5}', '\\frac{1}{2}')

  t = threading.Thread(target=run)
  t.start()
  t.join()
  assert out == {'sym': True, 'num': True}


def test_math_reward_batched():
  r = rmath.math_reward(['\\boxed{1}', '\\boxed{2}', 'nothing'], answer=['1', '1', '1'])
  assert r.dtype == np.float32 and r.tolist() == [1.0, 0.0, 0.0]
  with pytest.raises(KeyError):
    rmath.math_reward(['x'])


@pytest.mark.parametrize('completion,gold', [
    ('<answer>$9$</answer>', '9'), ('<answer>\\(9\\)</answer>', '9'), ('<answer>\\[9\\]</answer>', '9'),
    ('<answer>$$9$$</answer>', '9'), ('<answer>9</answer>', '$9$'), ('<answer>\\frac12</answer>', '\\(\\frac{1}{2}\\)'),
    ('<answer>The answer is $9$.</answer>', '9'), ('<answer>So we get \\(x = 9\\) here.</answer>', '9'),
    ('<answer>I think it is 9</answer>', '9'),
    ('<answer>Monday</answer>', '\\text{Monday}'), ('<answer>(C)</answer>', '\\text{(C)}'),
    ('<answer>\\boxed{1}, \\boxed{-2}</answer>', '-2, 1'), ('\\boxed{3} and \\boxed{5}', '3,5'),
    ('<answer>$x < 3$</answer>', '(-\\infty, 3)'), ('<answer>$2 \\le x < 5$</answer>', '[2, 5)'),
    ('<answer>x \\geq -1</answer>', '[-1, \\infty)'), ('<answer>$(-\\infty, 3)$</answer>', 'x<3'),
    ('<answer>0.333</answer>', '\\frac{1}{3}'), ('<answer>0.2857</answer>', '\\frac{2}{7}'),
    ('<answer>-0.67</answer>', '-\\frac{2}{3}'), ('<answer>Therefore $x = \\text{east}$.</answer>', '\\text{east}'),
])
def test_answer_forms_verify(completion, gold):
  assert rmath.verify(completion, gold)


@pytest.mark.parametrize('completion,gold', [
    ('<answer>0.34</answer>', '\\frac{1}{3}'), ('<answer>0.3</answer>', '\\frac{1}{3}'),   # <2 places: too coarse
    ('<answer>$x \\le 3$</answer>', '(-\\infty, 3)'), ('<answer>$x > 3$</answer>', '(-\\infty, 3)'),
    ('<answer>\\boxed{1}</answer>', '1, -2'), ('<answer>\\boxed{1}, \\boxed{2}, \\boxed{-2}</answer>', '1,-2'),
    ('<answer>It is 3 or 4</answer>', '4'), ('<answer>Tuesday</answer>', '\\text{Monday}'),
    ('<answer>$10$</answer>', '9'), ('<answer>0.333</answer>', '0.33'),
])
def test_answer_forms_reject(completion, gold):
  assert not rmath.verify(completion, gold)


def test_fast_paths_only_decide_true():
  # As plain numbers 50 != 1/2, but math-verify reads `50\%` as 0.5: the rational fast path must not say False.
  assert rmath.to_number('50\\%') != rmath.to_number('0.5')
  assert rmath.answers_match('50\\%', '0.5') and rmath.answers_match('12.5\\%', '\\frac{1}{8}')
  assert rmath.answers_match('\\sqrt{4}', '2')   # not a plain number: math-verify decides


@pytest.mark.parametrize('expr,costly', [
    ('x^{10^6}-(x+1)^{10^6}', True), ('2^{2^{2^5}}', True), ('2^{100000}', True), ('(10^6)!', True),
    ('100000!', True), ('\\sum_{k=1}^{10^9} k', True), ('\\prod_{i=1}^{n} i', True), ('x**10**6', True),
    ('2^{2011}', False), ('5!', False), ('x^2+1', False), ('\\sum_{k=1}^{10} k', False), ('n!', False),
    ('\\frac{3}{4}', False),
])
def test_too_costly_inputs_never_reach_sympy(expr, costly):
  assert rmath.too_costly(expr) == costly


def test_costly_answers_are_rejected_fast():
  t0 = time.monotonic()
  assert not rmath.verify('<answer>x^{10^6}-(x+1)^{10^6}</answer>', '0')
  assert not rmath.verify('\\boxed{(10^7)!}', '5')
  assert time.monotonic() - t0 < 1.0


def test_inline_calls_have_a_hard_deadline():
  """Outside a pool worker math-verify runs in a helper process killed at the inline timeout (not a 5 s alarm)."""
  old = rmath._INLINE_TIMEOUT_S
  rmath.set_inline_timeout(1.0)
  try:
    rmath.warm_up()
    t0 = time.monotonic()
    assert not rmath.answers_match('(x+1)^{5000}', 'x^{5000}+1')   # expanding takes sympy far longer than 1 s
    assert time.monotonic() - t0 < 1.0 + 1.5
    assert rmath.answers_match('2\\sqrt{3}', '\\sqrt{12}')   # the helper is replaced and keeps working
  finally:
    rmath.set_inline_timeout(old)
