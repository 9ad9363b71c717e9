"""Shaping: DAPO overlong punishment, cosine length scaling, n-gram repetition."""
import numpy as np
import pytest

from r1jax.rewards import shaping as rs


def test_overlong_penalty_matches_dapo():
  out = rs.overlong_penalty([0, 384, 385, 448, 512, 513, 10_000], max_tokens=512, cache_tokens=128)
  assert out.dtype == np.float32
  np.testing.assert_allclose(out, [0, 0, -1 / 128, -0.5, -1, -1, -1])
  with pytest.raises(ValueError):
    rs.overlong_penalty([1], 10, 20)
  with pytest.raises(KeyError):
    rs.overlong_reward(['a'], max_tokens=10, cache_tokens=2)


def test_cosine_endpoints_and_monotonicity():
  kw = dict(max_tokens=100, r0_correct=2.0, rL_correct=1.0, r0_wrong=-10.0, rL_wrong=0.0, r_exceed=-10.0)
  assert rs.cosine_scaled(0, True, **kw) == pytest.approx(2.0)
  assert rs.cosine_scaled(99.999, True, **kw) == pytest.approx(1.0, abs=1e-6)
  assert rs.cosine_scaled(0, False, **kw) == pytest.approx(-10.0)
  assert rs.cosine_scaled(50, False, **kw) == pytest.approx(-5.0)
  assert rs.cosine_scaled(100, True, **kw) == -10.0
  lengths = np.arange(0, 100, 7)
  correct = [rs.cosine_scaled(l, True, **kw) for l in lengths]
  wrong = [rs.cosine_scaled(l, False, **kw) for l in lengths]
  assert np.all(np.diff(correct) < 0) and np.all(np.diff(wrong) > 0)   # short right best, short wrong worst


def test_cosine_reward_uses_correctness_sources():
  comps = ['\\boxed{1}', '\\boxed{2}']
  r1 = rs.cosine_reward(comps, completion_lengths=[10, 10], max_tokens=100, correct=[True, False])
  r2 = rs.cosine_reward(comps, completion_lengths=[10, 10], max_tokens=100, answer=['1', '1'])
  r3 = rs.cosine_reward(comps, completion_lengths=[10, 10], max_tokens=100,
                        _components={'accuracy': np.array([1.0, 0.0])})
  np.testing.assert_allclose(r1, r2)
  np.testing.assert_allclose(r1, r3)
  assert r1[0] > 0 > r1[1]


def test_repetition():
  assert rs.repetition_fraction('a b c d e f') == 0.0
  assert rs.repetition_fraction('a b') == 0.0
  loop = 'the same phrase ' * 50
  assert rs.repetition_fraction(loop) > 0.9
  r = rs.repetition_reward(['a b c d e f', loop], max_penalty=-0.5)
  assert r[0] == 0.0 and -0.5 <= r[1] < -0.45
  with pytest.raises(ValueError):
    rs.repetition_reward(['x'], max_penalty=1.0)
