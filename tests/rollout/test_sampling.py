"""Unit tests of the pure sampling functions (temperature, top-k, top-p, greedy)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.rollout import sampling

# Jitted once per static setting: eager op-by-op dispatch is slower on a shared CPU.
_sample = jax.jit(sampling.sample, static_argnames=("temperature", "top_p", "top_k", "greedy"))
_truncate = jax.jit(sampling.truncate_logits, static_argnames=("top_p", "top_k"))
_row_keys = jax.jit(sampling.row_keys, static_argnums=2)

PROBS = np.array([0.5, 0.3, 0.15, 0.05], np.float32)


def _logits(probs=PROBS, rows=1):
  return jnp.tile(jnp.log(jnp.asarray(probs))[None], (rows, 1))


def _support(truncated_BV):
  return set(np.flatnonzero(np.isfinite(np.asarray(truncated_BV[0]))).tolist())


@pytest.mark.parametrize("top_p,expected", [(0.45, {0}), (0.75, {0, 1}), (0.85, {0, 1, 2}),
                                            (0.97, {0, 1, 2, 3}), (1.0, {0, 1, 2, 3})])
def test_top_p_keeps_minimal_nucleus(top_p, expected):
  assert _support(_truncate(_logits(), top_p=top_p)) == expected


def test_top_p_ignores_token_order():
  perm = np.array([2, 0, 3, 1])
  got = _support(_truncate(_logits(PROBS[perm]), top_p=0.75))
  assert got == {int(np.flatnonzero(perm == 0)[0]), int(np.flatnonzero(perm == 1)[0])}


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_keeps_k_largest(k):
  assert _support(_truncate(_logits(), top_k=k)) == set(range(k))
  assert _support(_truncate(_logits(), top_k=0)) == {0, 1, 2, 3}


def test_top_k_then_top_p_renormalises_within_top_k():
  # Top-3 renormalised: 0.5/0.95, 0.3/0.95, 0.15/0.95 = 0.526, 0.316, 0.158; p=0.8
  # needs the first two (0.842) where the full distribution's 0.8 is on the boundary.
  assert _support(_truncate(_logits(), top_p=0.8, top_k=3)) == {0, 1}
  assert _support(_truncate(_logits(), top_p=0.85, top_k=3)) == {0, 1, 2}


def test_top_k_one_equals_greedy():
  logits = jax.random.normal(jax.random.key(0), (16, 50)) * 3
  for step in range(3):
    keys = _row_keys(jax.random.key(1), step, 16)
    tok, lp, slp = _sample(logits, keys, temperature=0.7, top_k=1)
    g_tok, g_lp, g_slp = _sample(logits, None, greedy=True)
    np.testing.assert_array_equal(tok, g_tok)
    np.testing.assert_allclose(slp, 0.0, atol=1e-6)  # a point mass
    np.testing.assert_allclose(lp, sampling.token_logprobs(logits, tok, 0.7), rtol=1e-5,
                               atol=1e-6)
  np.testing.assert_array_equal(g_tok, jnp.argmax(logits, -1))
  np.testing.assert_allclose(g_lp, jnp.max(jax.nn.log_softmax(logits, -1), -1), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_array_equal(g_slp, 0.0)


def test_logprobs_full_and_truncated():
  logits = jax.random.normal(jax.random.key(2), (8, 40)) * 2
  keys = _row_keys(jax.random.key(3), 0, 8)
  t = 0.8
  tok, lp, slp = _sample(logits, keys, temperature=t, top_p=0.7, top_k=10)
  full = jax.nn.log_softmax(logits / t, -1)
  np.testing.assert_allclose(lp, jnp.take_along_axis(full, tok[:, None], -1)[:, 0], rtol=1e-5,
                             atol=1e-6)
  trunc = _truncate(logits / t, 0.7, 10)
  assert np.all(np.isfinite(np.take_along_axis(np.asarray(trunc), np.asarray(tok)[:, None], -1)))
  # Renormalised probability = full probability / kept mass.
  kept = jax.scipy.special.logsumexp(jnp.where(jnp.isfinite(trunc), full, -jnp.inf), axis=-1)
  np.testing.assert_allclose(slp, lp - kept, rtol=1e-5, atol=1e-6)
  assert np.all(np.asarray(slp) >= np.asarray(lp))
  # Without truncation the two coincide.
  _, lp2, slp2 = _sample(logits, keys, temperature=t)
  np.testing.assert_array_equal(lp2, slp2)


@pytest.mark.parametrize("temperature,top_p,top_k", [(1.0, 1.0, 0), (2.0, 1.0, 0),
                                                     (1.0, 0.75, 0), (1.0, 1.0, 3)])
def test_sampled_frequencies_follow_probabilities(temperature, top_p, top_k):
  n = 8000
  keys = _row_keys(jax.random.key(4), 0, n)
  tok, _, slp = _sample(_logits(rows=n), keys, temperature=temperature, top_p=top_p,
                        top_k=top_k)
  freq = np.bincount(np.asarray(tok), minlength=4) / n
  expected = np.asarray(jnp.exp(_truncate(
      jnp.log(jnp.asarray(PROBS)) / temperature, top_p, top_k)))
  expected = expected / expected.sum()
  np.testing.assert_allclose(freq, expected, atol=0.025)  # ~4.5 sigma at n=8000
  np.testing.assert_allclose(np.exp(slp), expected[np.asarray(tok)], rtol=1e-5)


def test_row_keys_make_draws_independent_of_batch_size():
  logits = jax.random.normal(jax.random.key(5), (6, 30))
  small = _sample(logits[:2], _row_keys(jax.random.key(6), 4, 2))
  big = _sample(logits, _row_keys(jax.random.key(6), 4, 6))
  np.testing.assert_array_equal(small[0], big[0][:2])
  other_step = _sample(logits, _row_keys(jax.random.key(6), 5, 6))
  assert not np.array_equal(big[0], other_step[0])


def test_invalid_settings():
  with pytest.raises(ValueError):
    sampling.truncate_logits(_logits(), top_p=0.0)
  with pytest.raises(ValueError):
    sampling.sample(_logits(), None, temperature=0.0)
