"""Countdown and arithmetic checkers: exact Fractions, number usage rules, no eval."""
from fractions import Fraction

import pytest

from r1jax.rewards import countdown as rc


@pytest.mark.parametrize('completion,ok', [
    ('<answer>(3 + 5) * 2</answer>', True),
    ('<answer>2 * (5 + 3) = 16</answer>', True),
    ('<answer>16 = (3+5)*2</answer>', True),
    ('<answer>3 * 5 + 2</answer>', False),          # 17
    ('<answer>(3 + 5) * 2 * 1</answer>', False),    # 1 is not given
    ('<answer>(3 + 3) * 2</answer>', False),        # 3 used twice, 5 unused
    ('<answer>16</answer>', False),
    ('\\boxed{(3+5)\\times 2}', True),
    ('no answer', False),
    ('<answer>__import__("os").system("x")</answer>', False),
    ('<answer>2**4</answer>', False),
])
def test_countdown(completion, ok):
  assert rc.check_countdown(completion, [3, 5, 2], 16) is ok


def test_use_all_option_and_fractions():
  assert not rc.check_countdown('<answer>8 * 2</answer>', [8, 2, 7], 16)
  assert rc.check_countdown('<answer>8 * 2</answer>', [8, 2, 7], 16, use_all=False)
  assert rc.check_countdown('<answer>(1 + 1/3) * 6</answer>', [1, 1, 3, 6], 8)   # exact, not float
  assert not rc.check_countdown('<answer>4 / (2 - 2)</answer>', [4, 2, 2], 1)


def test_evaluate_expression_rejects_unsafe():
  assert rc.evaluate_expression('(1+2)*3/4') == (Fraction(9, 4), [1, 2, 3, 4])
  for bad in ['', 'x', '1 ** 2', '1' * 300, '(' * 150 + '1' + ')' * 150, '1.5 + 1', '-1 + 2', 'abs(1)']:
    with pytest.raises(ValueError):
      rc.evaluate_expression(bad)
  assert rc.evaluate_expression('-1 + 2', allow_unary_minus=True)[0] == 1


def test_countdown_reward_and_format_score():
  comps = ['<answer>(3+5)*2</answer>', '<answer>3+5+2</answer>', 'none']
  fields = dict(numbers=[[3, 5, 2]] * 3, target=[16] * 3)
  assert rc.countdown_reward(comps, **fields).tolist() == [1.0, 0.0, 0.0]
  assert rc.countdown_reward(comps, format_score=0.1, **fields).tolist() == pytest.approx([1.0, 0.1, 0.0])


@pytest.mark.parametrize('completion,target,ok', [
    ('<answer>56</answer>', 56, True), ('so 7*8 = 56', '56', True), ('\\boxed{-3/4}', -0.75, True),
    ('<answer>55</answer>', 56, False), ('nothing', 1, False),
])
def test_arithmetic(completion, target, ok):
  assert rc.check_arithmetic(completion, target) is ok


def test_arithmetic_tolerance():
  assert rc.check_arithmetic('<answer>3.1416</answer>', 3.14159265, rel_tol=1e-4)
  assert not rc.check_arithmetic('<answer>3.1416</answer>', 3.14159265)
