"""top-p among the C largest logits (no full-vocab sort) equals exact top-p whenever the
nucleus fits in C tokens, and is cut at C otherwise."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.rollout import sampling
from r1jax.rollout.sampler import SamplerConfig


@pytest.mark.parametrize("scale,top_p", [(6.0, 0.9), (3.0, 0.95), (8.0, 0.5)])
def test_capped_top_p_matches_exact_when_the_nucleus_fits(scale, top_p):
  logits = scale * jax.random.normal(jax.random.key(0), (16, 5000), jnp.float32)
  exact = np.isfinite(np.asarray(sampling.truncate_logits(logits, top_p, 0, 0)))
  cap = int(exact.sum(-1).max()) + 1
  capped = np.isfinite(np.asarray(sampling.truncate_logits(logits, top_p, 0, cap)))
  np.testing.assert_array_equal(capped, exact)


def test_capped_top_p_cuts_a_wide_nucleus_at_c():
  # Nearly uniform (no ties): the exact nucleus holds most of the vocabulary.
  logits = jnp.tile(-1e-4 * jnp.arange(1000, dtype=jnp.float32), (2, 1))
  capped = np.isfinite(np.asarray(sampling.truncate_logits(logits, 0.95, 0, 64)))
  np.testing.assert_array_equal(capped.sum(-1), 64)
  exact = np.isfinite(np.asarray(sampling.truncate_logits(logits, 0.95, 0, 0)))
  assert (exact.sum(-1) > 900).all()


def test_sample_log_probs_with_capped_top_p():
  logits = 5.0 * jax.random.normal(jax.random.key(2), (8, 3000), jnp.float32)
  keys = sampling.row_keys(jax.random.key(3), 0, 8)
  t0, lp0, slp0 = sampling.sample(logits, keys, top_p=0.9, top_p_candidates=0)
  t1, lp1, slp1 = sampling.sample(logits, keys, top_p=0.9, top_p_candidates=2000)
  np.testing.assert_array_equal(t0, t1)
  np.testing.assert_allclose(lp0, lp1, rtol=1e-6)
  np.testing.assert_allclose(slp0, slp1, rtol=1e-5)
  assert (np.asarray(slp1) >= np.asarray(lp1)).all()   # renormalised over the nucleus


def test_sampler_config_default_cap():
  assert SamplerConfig().top_p_candidates > 0
  with pytest.raises(ValueError, match="top_p_candidates"):
    SamplerConfig(top_p_candidates=-1)
