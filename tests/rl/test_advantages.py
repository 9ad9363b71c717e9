"""Group advantages: formulas, numpy/jnp parity, zero-variance groups."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from r1jax.rl import advantages as adv_lib
from r1jax.rl.advantages import compute_advantages, zero_variance_groups


def _manual(r, g, estimator, ddof=1, eps=1e-6):
  r = np.asarray(r, np.float64).reshape(-1, g)
  out = np.zeros_like(r)
  for b, grp in enumerate(r):
    if grp.max() == grp.min():
      continue
    if estimator == "grpo":
      out[b] = (grp - grp.mean()) / (grp.std(ddof=ddof) + eps)
    elif estimator == "dr_grpo":
      out[b] = grp - grp.mean()
    else:  # rloo: minus the mean of the *other* completions, written out explicitly
      out[b] = [grp[i] - np.delete(grp, i).mean() for i in range(g)]
  return out.reshape(-1)


@pytest.mark.parametrize("estimator", ["grpo", "dr_grpo", "rloo"])
@pytest.mark.parametrize("ddof,eps", [(0, 1e-4), (1, 1e-6)])
def test_formulas_numpy_and_jnp(estimator, ddof, eps):
  rng = np.random.default_rng(0)
  r = rng.integers(0, 3, size=24).astype(np.float32) * 0.5
  r[:4] = 1.0  # one zero-variance group
  want = _manual(r, 4, estimator, ddof, eps)
  got_np = compute_advantages(r, 4, estimator, ddof=ddof, eps=eps)
  fn = jax.jit(lambda x: compute_advantages(x, 4, estimator, ddof=ddof, eps=eps))
  got_jnp = fn(jnp.asarray(r))
  assert isinstance(got_np, np.ndarray) and isinstance(got_jnp, jax.Array)
  np.testing.assert_allclose(got_np, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(got_jnp), want, rtol=1e-5, atol=1e-6)


def test_ddof_and_eps_matter():
  r = np.array([1.0, 0.0, 0.0, 0.0])
  a0 = compute_advantages(r, 4, "grpo", ddof=0, eps=0.0)
  a1 = compute_advantages(r, 4, "grpo", ddof=1, eps=0.0)
  np.testing.assert_allclose(a0[0], 0.75 / np.sqrt(0.1875))
  np.testing.assert_allclose(a1[0], 0.75 / np.sqrt(0.25))
  assert compute_advantages(r, 4, "grpo", ddof=1, eps=1.0)[0] < a1[0]


def test_rloo_is_rescaled_dr_grpo():
  r = np.random.default_rng(1).normal(size=(5 * 8,))
  np.testing.assert_allclose(compute_advantages(r, 8, "rloo"),
                             8 / 7 * compute_advantages(r, 8, "dr_grpo"), rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 6), st.lists(st.tuples(st.booleans(), st.floats(-5, 5, width=32)),
                                    min_size=1, max_size=6),
       st.sampled_from(["grpo", "dr_grpo", "rloo"]), st.integers(0, 1), st.integers(0, 2**31 - 1))
def test_identical_rewards_give_exact_zero(g, groups, estimator, ddof, seed):
  rng = np.random.default_rng(seed)
  rows = []
  for constant, value in groups:
    rows.append(np.full(g, value, np.float32) if constant
                else rng.normal(size=g).astype(np.float32) * 3)
  r = np.concatenate(rows)
  zero = np.array([c for c, _ in groups])
  # numpy only here (jnp would compile per shape); jnp parity is tested above and below.
  a = compute_advantages(r, g, estimator, ddof=ddof).reshape(-1, g)
  assert np.isfinite(a).all()
  assert (a[zero] == 0).all()                      # exactly zero, not 1e-17
  np.testing.assert_allclose(a.sum(axis=1), 0, atol=1e-4)  # centred within each group
  np.testing.assert_array_equal(zero_variance_groups(r, g),
                                zero | (np.ptp(r.reshape(-1, g), axis=1) == 0))


def test_rounding_residue_is_removed():
  # mean(0.1, 0.1, 0.1) != 0.1 in floating point; the naive formula is not exactly 0.
  r = np.full(3, 0.1)
  assert (r - r.mean()).any()
  assert not compute_advantages(r, 3, "dr_grpo").any()
  assert not compute_advantages(r, 3, "grpo", eps=0.0).any()
  for est in ("grpo", "dr_grpo", "rloo"):
    a = compute_advantages(jnp.full(3, 0.1), 3, est, eps=0.0)
    assert not np.asarray(a).any() and np.isfinite(np.asarray(a)).all()


def test_zero_variance_mask_per_completion():
  r = np.array([1, 1, 0, 1, 2, 2], np.float32)
  np.testing.assert_array_equal(zero_variance_groups(r, 2), [True, False, True])
  np.testing.assert_array_equal(zero_variance_groups(r, 2, per_completion=True),
                                [True, True, False, False, True, True])
  assert isinstance(zero_variance_groups(jnp.asarray(r), 2), jax.Array)


def test_int_rewards_and_errors():
  a = compute_advantages([1, 0, 0, 0], 4, "dr_grpo")
  assert a.dtype == np.float32
  with pytest.raises(ValueError):
    compute_advantages(np.zeros(6), 4)
  with pytest.raises(ValueError):
    compute_advantages(np.zeros(4), 4, "ppo")
  with pytest.raises(ValueError):
    adv_lib.grpo_advantages(np.zeros(3), 1, ddof=1)
  with pytest.raises(ValueError):
    adv_lib.rloo_advantages(np.zeros(3), 1)
