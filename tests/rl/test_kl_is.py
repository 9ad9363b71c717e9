"""KL estimators' expected gradients (exact, on a small categorical), TIS / MIS, and when the
trainer recomputes pi_old."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import stage_config as sc
from r1jax.models.config import ModelConfig
from r1jax.rl import losses
from r1jax.rl.trainer import needs_recompute

THETA = jnp.asarray([0.3, -1.2, 2.0, 0.1, -0.4])
REF = jax.nn.log_softmax(jnp.asarray([1.0, 0.5, -0.7, 0.2, 0.9]))


def expected_grad(estimator, clamp=None):
  """Σ_o π(o) ∇θ k(o): the expected gradient of the per-token KL term when o ~ πθ
  (sampling is not differentiated: the loss is a function of log πθ(o) only)."""
  def k_of(theta, o):
    logp = jax.nn.log_softmax(theta)[o]
    return losses.kl_penalty(logp, REF[o], estimator, clamp)
  pi = jax.nn.softmax(THETA)
  return sum(pi[o] * jax.grad(k_of)(THETA, o) for o in range(THETA.shape[0]))


def kl(p_log, q_log):
  return jnp.sum(jnp.exp(p_log) * (p_log - q_log))


GRAD_KL_PI_REF = jax.grad(lambda t: kl(jax.nn.log_softmax(t), REF))(THETA)     # ∇ KL(π || ref)
GRAD_KL_REF_PI = jax.grad(lambda t: kl(REF, jax.nn.log_softmax(t)))(THETA)     # ∇ KL(ref || π)


def test_k1_expected_gradient_is_zero():
  np.testing.assert_allclose(expected_grad("k1"), 0.0, atol=1e-6)


@pytest.mark.parametrize("estimator", ["k2", "k3+"])
def test_k2_and_k3plus_follow_kl_pi_ref(estimator):
  np.testing.assert_allclose(expected_grad(estimator), GRAD_KL_PI_REF, rtol=1e-5, atol=1e-6)


def test_k3_follows_kl_ref_pi():
  np.testing.assert_allclose(expected_grad("k3"), GRAD_KL_REF_PI, rtol=1e-5, atol=1e-6)
  # ... which is not the reverse KL's gradient.
  assert not np.allclose(GRAD_KL_REF_PI, GRAD_KL_PI_REF, atol=1e-3)


def test_k3plus_value_is_k3_and_clamp_bounds_the_value():
  logp = jnp.asarray([-0.1, -3.0, -8.0])
  ref = jnp.asarray([-0.2, -0.5, -0.1])
  np.testing.assert_allclose(losses.kl_penalty(logp, ref, "k3+"), losses.kl_penalty(logp, ref, "k3"))
  big = losses.kl_penalty(logp, ref, "k3")
  assert float(big[2]) > 100.0     # e^Δ on a rare token
  clamped = losses.kl_penalty(logp, ref, "k3", clamp=10.0)
  assert float(clamped.max()) == 10.0
  g = jax.grad(lambda lp: losses.kl_penalty(lp, ref, "k3", clamp=10.0).sum())(logp)
  assert float(g[2]) == 0.0 and float(g[0]) != 0.0


def _batch(n=2, length=4):
  rng = np.random.default_rng(0)
  mask = np.ones((n, length), np.float32)
  old = rng.normal(-1.0, 0.1, (n, length)).astype(np.float32)
  return {"completion_mask": jnp.asarray(mask), "advantages": jnp.asarray([1.0, -1.0]),
          "old_logprobs": jnp.asarray(old)}


def test_kl_in_reward_removes_the_kl_from_the_loss():
  b = _batch()
  b["ref_logprobs"] = b["old_logprobs"] - 0.5
  logp = b["old_logprobs"]
  in_loss = losses.LossConfig(beta=0.1)
  in_reward = losses.LossConfig(beta=0.1, kl_in_reward=True)
  l1, a1 = losses.grpo_loss_from_logprobs(logp, b, in_loss)
  l2, a2 = losses.grpo_loss_from_logprobs(logp, b, in_reward)
  assert float(a1["kl"]) > 0 and float(a2["kl"]) == 0.0
  np.testing.assert_allclose(l2, a1["pg_loss"], rtol=1e-6)


@pytest.mark.parametrize("kind", ["tis", "mis"])
def test_importance_sampling_correction(kind):
  b = _batch()
  # Sampler log-probs: token (0, 1) far below the trainer's (w = e^2 > C), the rest near.
  sampler = np.asarray(b["old_logprobs"]).copy()
  sampler[0, 1] -= 2.0
  sampler[1, 2] += 0.3
  b["sampler_logprobs"] = jnp.asarray(sampler)
  cfg = losses.LossConfig(is_correction=kind, is_cap=2.0)
  base = losses.LossConfig()

  def grads(c):
    return np.asarray(jax.grad(lambda lp: losses.grpo_loss_from_logprobs(lp, b, c)[0])(
        b["old_logprobs"]))
  g, g0 = grads(cfg), grads(base)
  w = np.exp(np.asarray(b["old_logprobs"]) - sampler)
  want = np.minimum(w, 2.0) if kind == "tis" else np.where(w <= 2.0, w, 0.0)
  np.testing.assert_allclose(g, g0 * want, rtol=1e-5, atol=1e-7)
  with pytest.raises(KeyError, match="sampler_logprobs"):
    losses.grpo_loss_from_logprobs(b["old_logprobs"], {**b, "sampler_logprobs": None}, cfg)


def test_gap_diagnostics_in_the_loss_aux():
  b = _batch()
  logp = b["old_logprobs"] + jnp.asarray([[0.0, 0.0, 0.0, 0.0], [0.0, 0.004, 0.0, 0.0]])
  _, aux = losses.grpo_loss_from_logprobs(logp, b, losses.PRESETS["gspo"])
  assert float(aux["pi_old/gap_max"]) == pytest.approx(0.004, rel=1e-3)
  assert float(aux["pi_old/seq_ratio_out_of_clip"]) == 0.5   # exp(0.001) > 1 + 4e-4


def _rl(**kw):
  loss_kw = {k: kw.pop(k) for k in ("ratio_level", "is_correction") if k in kw}
  rl = dataclasses.replace(sc.RLConfig(), **{"num_prompts": 2, "group_size": 4,
                                             "cache_dtype": "float32", **kw})
  return dataclasses.replace(rl, loss=dataclasses.replace(rl.loss, **loss_kw))


@pytest.mark.parametrize("kw,want", [
    ({}, False),
    ({"ratio_level": "sequence"}, True),
    ({"cache_dtype": "bfloat16"}, True),
    ({"num_iterations": 2}, True),
    ({"minibatch_size": 4}, True),
    ({"is_correction": "tis"}, True),
    ({"cache_dtype": "bfloat16", "recompute_old_logprobs": False}, False),
    ({"recompute_old_logprobs": True}, True),
])
def test_needs_recompute(kw, want):
  model = ModelConfig(dtype="float32")
  assert needs_recompute(_rl(**kw), model)[0] is want
