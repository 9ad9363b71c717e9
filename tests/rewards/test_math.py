"""Math extraction and equivalence: extraction order, GSM8K normalisation, math-verify cases, negatives."""
import threading

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
