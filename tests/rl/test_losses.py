"""Property tests of the GRPO loss family (issue 6): each checks a claim that could break."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from r1jax.models.config import get_model_config
from r1jax.models.factory import create_model, split_params
from r1jax.rl.advantages import compute_advantages
from r1jax.rl.logprobs import completion_logprobs
from r1jax.rl.losses import (PRESETS, LossConfig, global_counts, grpo_loss,
                             grpo_loss_from_logprobs, kl_penalty, make_grpo_loss)
from r1jax.sharding import ShardingRules, batch_sharding, make_mesh, replicated

V = 53
CHUNK = 16  # < V and not a divisor: the chunked path with a ragged last chunk
GARBAGE = -200.0  # old/ref log-probs at padding: exp(+200) = inf if padding leaked in


@pytest.fixture(scope="module")
def policy():
  cfg = get_model_config("tiny", num_layers=1, vocab_size=V, embed_dim=32, mlp_dim=64,
                         num_heads=2, num_kv_heads=1, head_dim=16)
  return split_params(create_model(cfg, 0))


@functools.lru_cache(maxsize=None)
def _logp_fn(graphdef):
  return jax.jit(lambda params, b: completion_logprobs(
      (graphdef, params), b["prompt_ids"], b["prompt_mask"], b["completion_ids"],
      b["completion_mask"], vocab_chunk=CHUNK)[0])


@functools.lru_cache(maxsize=None)
def _value_and_grad(graphdef, cfg):
  """One jitted value_and_grad per (graphdef, config): tests share compilations."""
  return jax.jit(jax.value_and_grad(make_grpo_loss(graphdef, cfg), has_aux=True))


def make_batch(policy, seed=0, n=8, g=4, p=4, l=6, noise=0.0, rewards=None):
  """A GRPO batch: left-padded prompts, right-padded completions of varied length."""
  graphdef, params = policy
  rng = np.random.default_rng(seed)
  plen = rng.integers(1, p + 1, n)
  clen = rng.integers(1, l + 1, n)
  clen[0] = l  # at least one full-length completion
  pm = (np.arange(p)[None] >= p - plen[:, None]).astype(np.int32)
  cm = (np.arange(l)[None] < clen[:, None]).astype(np.int32)
  if rewards is None:
    rewards = rng.integers(0, 2, n).astype(np.float32)
  b = dict(prompt_ids=rng.integers(1, V, (n, p)) * pm, prompt_mask=pm,
           completion_ids=rng.integers(1, V, (n, l)) * cm, completion_mask=cm,
           advantages=compute_advantages(rewards, g).astype(np.float32))
  logp = np.asarray(_logp_fn(graphdef)(params, b))
  old = logp + noise * rng.normal(size=logp.shape).astype(np.float32)
  b["old_logprobs"] = np.where(cm > 0, old, GARBAGE).astype(np.float32)
  b["num_tokens_global"] = np.float32(cm.sum())
  b["num_seqs_global"] = np.float32(n)
  return b


def _rows(batch, idx):
  return {k: (v[idx] if np.ndim(v) else v) for k, v in batch.items()}


def _tree_close(a, b, rtol=1e-4, atol=1e-6):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


# --------------------------------------------------------------------------- on-policy


def _reinforce_weights(batch, aggregation):
  """w_{i,t} with ∇J = -Σ w_{i,t} ∇logπ(o_{i,t}): REINFORCE gradient of each aggregation."""
  mask = np.asarray(batch["completion_mask"], np.float32)
  n, l = mask.shape
  if aggregation == "seq_mean_token_mean":     # (1/N) A_i (1/|o_i|)
    weight = mask / np.maximum(mask.sum(1, keepdims=True), 1) / n
  elif aggregation == "token_mean":            # A_i / Σ|o|
    weight = mask / mask.sum()
  else:                                        # A_i / (N L_max)
    weight = mask / (n * l)
  return weight * np.asarray(batch["advantages"])[:, None]


def test_on_policy_gradient_is_reinforce(policy):
  """Model level, R1's aggregation: jax.grad of the loss == jax.grad of -Σ w logπ."""
  graphdef, params = policy
  batch = make_batch(policy, seed=1)
  weight = _reinforce_weights(batch, "seq_mean_token_mean")

  def reinforce(q):
    logp = completion_logprobs((graphdef, q), batch["prompt_ids"], batch["prompt_mask"],
                               batch["completion_ids"], batch["completion_mask"])[0]
    return -(weight * logp).sum()

  (loss, aux), grad = _value_and_grad(graphdef, LossConfig(vocab_chunk=CHUNK))(params, batch)
  want = jax.jit(jax.grad(reinforce))(params)
  _tree_close(grad, want)
  assert sum(float(jnp.abs(x).sum()) for x in jax.tree.leaves(want)) > 1e-3  # not vacuous
  np.testing.assert_allclose(loss, -(weight.sum()), rtol=1e-5, atol=1e-6)   # ρ = 1
  np.testing.assert_allclose(aux["ratio_mean"], 1.0, atol=1e-5)
  assert aux["clip_frac"] == 0


@pytest.mark.parametrize("aggregation", ["seq_mean_token_mean", "token_mean",
                                         "seq_mean_token_sum_norm"])
@pytest.mark.parametrize("ratio_level", ["token", "sequence"])
def test_on_policy_logprob_gradient_is_reinforce(aggregation, ratio_level):
  """Every aggregation, at the log-prob level (∇θ follows by the chain rule, tested above)."""
  rng = np.random.default_rng(7)
  mask = (np.arange(6)[None] < rng.integers(0, 7, 8)[:, None]).astype(np.float32)
  logp = jnp.asarray(rng.normal(-2, 1, mask.shape), jnp.float32)
  batch = dict(completion_mask=mask, advantages=rng.normal(size=8).astype(np.float32))
  cfg = LossConfig(aggregation=aggregation, ratio_level=ratio_level)
  want = -_reinforce_weights(batch, aggregation)
  for b in (dict(batch, old_logprobs=np.asarray(logp)), batch):  # explicit old / on-policy
    g = jax.grad(lambda x: grpo_loss_from_logprobs(x, b, cfg)[0])(logp)
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-8)


# --------------------------------------------------------------------------- no NaN


def test_identical_rewards_and_empty_completions_are_finite(policy):
  graphdef, params = policy
  batch = make_batch(policy, seed=2, noise=0.3, rewards=np.repeat([1.0, 0.0], 4))
  assert not batch["advantages"].any()
  empty = dict(batch, completion_mask=np.zeros_like(batch["completion_mask"]),
               advantages=np.ones(8, np.float32), num_tokens_global=np.float32(0))
  fn = _value_and_grad(graphdef, LossConfig(beta=0.0, vocab_chunk=CHUNK))
  for b in (batch, empty):
    (loss, aux), grad = fn(params, b)
    assert loss == 0
    assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves((aux, grad)))
    assert all(not np.asarray(x).any() for x in jax.tree.leaves(grad))
  # Every variant, at the log-prob level, on an all-masked batch.
  logp = jnp.asarray(batch["old_logprobs"]) + 0.05
  empty["ref_logprobs"] = batch["old_logprobs"] - 0.1
  for c in list(PRESETS.values()) + [LossConfig(dual_clip_c=3.0, kl_estimator="k2", beta=0.1)]:
    val, g = jax.value_and_grad(lambda x: grpo_loss_from_logprobs(x, empty, c)[0])(logp)
    assert val == 0 and not np.asarray(g).any()


# --------------------------------------------------------------------------- Dr. GRPO


def test_dr_grpo_has_no_length_bias():
  mask = np.array([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]], np.float32)
  batch = dict(completion_mask=mask, advantages=np.array([-1.0, -1.0], np.float32))
  logp = jnp.full(mask.shape, -1.0)
  batch["old_logprobs"] = np.asarray(logp)

  def token_weights(aggregation):
    cfg = LossConfig(aggregation=aggregation)
    return np.asarray(jax.grad(lambda x: grpo_loss_from_logprobs(x, batch, cfg)[0])(logp))

  dr = token_weights("seq_mean_token_sum_norm")
  np.testing.assert_allclose(dr[mask > 0], 1.0 / (2 * 6))   # same weight, any length
  assert not dr[mask == 0].any()
  seq = token_weights("seq_mean_token_mean")
  np.testing.assert_allclose(seq[0, :2], 1.0 / (2 * 2))      # short answer: 1/|o| = 1/2
  np.testing.assert_allclose(seq[1, :5], 1.0 / (2 * 5))      # long answer: 1/5
  # The constant is L_max from config when given, not the batch width.
  cfg = LossConfig(aggregation="seq_mean_token_sum_norm", max_completion_length=100)
  g = jax.grad(lambda x: grpo_loss_from_logprobs(x, batch, cfg)[0])(logp)
  np.testing.assert_allclose(np.asarray(g)[mask > 0], 1.0 / (2 * 100))


# --------------------------------------------------------------------------- GSPO


def _gspo_formula(logp, batch, eps_low, eps_high):
  mask = jnp.asarray(batch["completion_mask"], jnp.float32)
  log_ratio = jnp.where(mask > 0, logp - batch["old_logprobs"], 0.0)
  s = jnp.exp(log_ratio.sum(1) / jnp.maximum(mask.sum(1), 1))
  a = batch["advantages"]
  return -jnp.minimum(s * a, jnp.clip(s, 1 - eps_low, 1 + eps_high) * a).mean()


@pytest.mark.parametrize("eps", [(3e-4, 4e-4), (0.05, 0.08)])
def test_gspo_equals_sequence_formula_value_and_gradient(eps):
  rng = np.random.default_rng(3)
  mask = (np.arange(7)[None] < rng.integers(1, 8, 12)[:, None]).astype(np.float32)
  old = np.where(mask > 0, rng.normal(-2, 1, mask.shape), GARBAGE).astype(np.float32)
  batch = dict(completion_mask=mask, old_logprobs=old,
               advantages=rng.normal(size=12).astype(np.float32))
  logp = jnp.asarray(np.where(mask > 0, old + rng.normal(0, 0.05, mask.shape), -1.0), jnp.float32)
  cfg = dataclasses.replace(PRESETS["gspo"], clip_eps_low=eps[0], clip_eps_high=eps[1])
  f = lambda x: grpo_loss_from_logprobs(x, batch, cfg)[0]
  g_formula = lambda x: _gspo_formula(x, batch, *eps)
  np.testing.assert_allclose(f(logp), g_formula(logp), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(jax.grad(f)(logp), jax.grad(g_formula)(logp), rtol=1e-4, atol=1e-7)
  aux = grpo_loss_from_logprobs(logp, batch, cfg)[1]
  if eps[0] > 0.01:
    assert 0 < aux["clip_frac"] < 1   # both clipped and unclipped sequences occur
  # Each token carries its sequence's ratio: ratio_min/max are sequence ratios.
  s = np.exp((np.where(mask > 0, logp - old, 0)).sum(1) / mask.sum(1))
  np.testing.assert_allclose([aux["ratio_min"], aux["ratio_max"]], [s.min(), s.max()], rtol=1e-5)


def test_gspo_value_independent_of_token_layout(policy):
  """Same sequences, padded differently, permuted and split into minibatches: same loss."""
  graphdef, params = policy
  batch = make_batch(policy, seed=4, noise=0.02)
  cfg = LossConfig(ratio_level="sequence", clip_eps_low=0.01, clip_eps_high=0.015,
                   vocab_chunk=CHUNK)
  loss_fn = jax.jit(make_grpo_loss(graphdef, cfg))
  base, aux = loss_fn(params, batch)
  assert 0 < aux["clip_frac"] < 1

  pad = lambda x, left, right, value=0: np.pad(x, ((0, 0), (left, right)), constant_values=value)
  relaid = dict(batch, prompt_ids=pad(batch["prompt_ids"], 3, 0),
                prompt_mask=pad(batch["prompt_mask"], 3, 0),
                completion_ids=pad(batch["completion_ids"], 0, 2),
                completion_mask=pad(batch["completion_mask"], 0, 2),
                old_logprobs=pad(batch["old_logprobs"], 0, 2, GARBAGE))
  np.testing.assert_allclose(loss_fn(params, relaid)[0], base, rtol=1e-5, atol=1e-7)
  perm = np.random.default_rng(0).permutation(8)
  np.testing.assert_allclose(loss_fn(params, _rows(batch, perm))[0], base, rtol=1e-5, atol=1e-7)
  halves = [loss_fn(params, _rows(batch, idx))[0] for idx in (perm[:4], perm[4:])]
  np.testing.assert_allclose(sum(halves), base, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------- accumulation / sharding


def test_gradient_accumulation_keeps_the_normaliser(policy):
  graphdef, params = policy
  batch = make_batch(policy, seed=5, noise=0.2)
  batch["ref_logprobs"] = np.where(batch["completion_mask"] > 0,
                                   batch["old_logprobs"] + 0.1, GARBAGE).astype(np.float32)
  cfg = dataclasses.replace(PRESETS["dapo"], beta=0.01, dual_clip_c=3.0, vocab_chunk=CHUNK)
  fn = _value_and_grad(graphdef, cfg)
  batch.update(global_counts(batch, cfg))
  assert batch["num_tokens_global"] == batch["completion_mask"].sum()
  (full, _), g_full = fn(params, batch)
  mbs = [_rows(batch, slice(i, i + 4)) for i in (0, 4)]   # keep the global counts
  lens = [m["completion_mask"].sum() for m in mbs]
  assert lens[0] != lens[1]  # otherwise the negative control below is vacuous
  outs = [fn(params, m) for m in mbs]
  np.testing.assert_allclose(sum(o[0][0] for o in outs), full, rtol=1e-5, atol=1e-7)
  _tree_close(jax.tree.map(lambda a, b: a + b, outs[0][1], outs[1][1]), g_full)
  # Negative control: each minibatch normalised by its own token count is a different loss.
  local = [fn(params, dict(m, num_tokens_global=n_tok))[0][0] for m, n_tok in zip(mbs, lens)]
  assert abs(float(sum(local)) / 2 - float(full)) > 1e-4

  # All aggregations and ratio levels, at the log-prob level (rows are independent).
  logp = jnp.asarray(batch["old_logprobs"]) + 0.1 * jnp.sin(jnp.arange(6.0))
  for c in (LossConfig(beta=0.01), PRESETS["dr_grpo"], PRESETS["gspo"],
            LossConfig(ratio_level="sequence", aggregation="token_mean", clip_eps_low=0.05)):
    f = jax.jit(jax.value_and_grad(lambda x, b: grpo_loss_from_logprobs(x, b, c)[0]))
    parts = [f(logp[i:i + 4], _rows(batch, slice(i, i + 4))) for i in (0, 4)]
    val, g = f(logp, batch)
    np.testing.assert_allclose(sum(p[0] for p in parts), val, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(jnp.concatenate([p[1] for p in parts]), g, rtol=1e-5, atol=1e-8)


def test_sharded_batch_equals_single_device(policy, devices):
  graphdef, params = policy
  batch = make_batch(policy, seed=6, noise=0.2)
  batch["ref_logprobs"] = (batch["old_logprobs"] - 0.05).astype(np.float32)
  cfg = dataclasses.replace(PRESETS["dapo"], beta=0.01, dual_clip_c=3.0, vocab_chunk=CHUNK)
  (loss1, aux1), g1 = _value_and_grad(graphdef, cfg)(*jax.device_put((params, batch), devices[0]))
  # grpo_loss itself under jit, with the config and graphdef static.
  fn = jax.jit(jax.value_and_grad(grpo_loss, has_aux=True), static_argnums=(2, 3))

  mesh = make_mesh((8, 1, 1))
  rules = ShardingRules()
  sharded = {k: jax.device_put(v, batch_sharding(mesh, rules, np.shape(v)) if np.ndim(v)
                               else replicated(mesh)) for k, v in batch.items()}
  assert len(sharded["completion_ids"].sharding.device_set) == 8
  assert sharded["completion_ids"].addressable_shards[0].data.shape[0] == 1
  (loss8, aux8), g8 = fn(jax.device_put(params, replicated(mesh)), sharded, cfg, graphdef)
  np.testing.assert_allclose(loss8, loss1, rtol=1e-5, atol=1e-7)
  _tree_close(aux8, aux1, rtol=1e-5, atol=1e-6)
  _tree_close(g8, g1, rtol=1e-4, atol=1e-7)


# --------------------------------------------------------------------------- KL


def test_kl_estimators_formulas():
  logp = jnp.array([-1.0, -2.0, -0.5, -3.0])
  ref = jnp.array([-1.5, -1.0, -0.5, -0.1])
  d = np.asarray(ref - logp)
  np.testing.assert_allclose(kl_penalty(logp, ref, "k1"), -d, rtol=1e-6)
  np.testing.assert_allclose(kl_penalty(logp, ref, "k2"), 0.5 * d ** 2, rtol=1e-6)
  np.testing.assert_allclose(kl_penalty(logp, ref, "k3"), np.exp(d) - d - 1, rtol=1e-5, atol=1e-7)
  for est in ("k1", "k2", "k3"):
    assert not np.asarray(kl_penalty(logp, logp, est)).any()
  with pytest.raises(ValueError):
    kl_penalty(logp, ref, "k4")
  # k1 and k3 are unbiased estimates of KL(π||ref) under samples from π: exact expectation.
  p = jax.nn.softmax(jnp.array([0.3, -1.0, 2.0, 0.1]))
  q = jax.nn.softmax(jnp.array([0.0, 0.5, 1.0, -0.4]))
  kl = float((p * (jnp.log(p) - jnp.log(q))).sum())
  for est in ("k1", "k3"):
    np.testing.assert_allclose((p * kl_penalty(jnp.log(p), jnp.log(q), est)).sum(), kl, rtol=1e-5)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-30, 0, width=32), min_size=2, max_size=2))
def test_k3_nonnegative(pair):
  assert float(kl_penalty(jnp.float32(pair[0]), jnp.float32(pair[1]), "k3")) >= 0


def test_kl_term_and_reference_free_beta_zero():
  mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.float32)
  logp = jnp.array([[-1.0, -2.0, -0.3, 0.0], [-0.7, -1.1, 0.0, 0.0]])
  ref = np.where(mask > 0, np.asarray(logp) + np.array([[0.3, -0.2, 0.1, 0], [0.5, 0.0, 0, 0]]),
                 GARBAGE).astype(np.float32)
  batch = dict(completion_mask=mask, advantages=np.zeros(2, np.float32), ref_logprobs=ref)
  cfg = LossConfig(beta=0.04, kl_estimator="k3", aggregation="token_mean")
  loss, aux = grpo_loss_from_logprobs(logp, batch, cfg)
  d = (ref - np.asarray(logp))[mask > 0]
  k3 = np.exp(d) - d - 1
  np.testing.assert_allclose(loss, 0.04 * k3.mean(), rtol=1e-5)
  np.testing.assert_allclose(aux["kl"], k3.mean(), rtol=1e-5)
  with pytest.raises(KeyError, match="ref_logprobs"):
    grpo_loss_from_logprobs(logp, {k: v for k, v in batch.items() if k != "ref_logprobs"}, cfg)
  # beta = 0: the reference is never read (NaN reference, or none, changes nothing).
  cfg0 = cfg.replace(beta=0.0)
  nan_ref = dict(batch, ref_logprobs=np.full_like(ref, np.nan), advantages=np.ones(2, np.float32))
  no_ref = {k: v for k, v in nan_ref.items() if k != "ref_logprobs"}
  l1, a1 = grpo_loss_from_logprobs(logp, nan_ref, cfg0)
  l2, _ = grpo_loss_from_logprobs(logp, no_ref, cfg0)
  assert np.isfinite(l1) and l1 == l2 and a1["kl"] == 0


# --------------------------------------------------------------------------- clipping


def test_clip_fractions_and_dual_clip_on_crafted_ratios():
  ratios = np.array([0.5, 0.9, 1.0, 1.1, 1.5, 5.0], np.float32)
  old = np.full((2, 6), -1.0, np.float32)
  logp = jnp.asarray(old + np.log(ratios))
  batch = dict(completion_mask=np.ones((2, 6), np.float32), old_logprobs=old,
               advantages=np.array([1.0, -1.0], np.float32))
  cfg = LossConfig(clip_eps_low=0.2, clip_eps_high=0.28, dual_clip_c=3.0,
                   aggregation="token_mean")
  (loss, aux), g = jax.value_and_grad(lambda x: grpo_loss_from_logprobs(x, batch, cfg),
                                      has_aux=True)(logp)
  # A = +1: -min(ρ, clip(ρ, .8, 1.28)); A = -1: max(ρ, clip(ρ)), bounded by c = 3.
  per_token = np.array([[-0.5, -0.9, -1.0, -1.1, -1.28, -1.28],
                        [0.8, 0.9, 1.0, 1.1, 1.5, 3.0]])
  np.testing.assert_allclose(loss, per_token.mean(), rtol=1e-5)
  np.testing.assert_allclose(aux["clip_frac_high"], 2 / 12)   # 1.5 and 5.0 with A > 0
  np.testing.assert_allclose(aux["clip_frac_low"], 1 / 12)    # 0.5 with A < 0
  np.testing.assert_allclose(aux["clip_frac"], 3 / 12)
  np.testing.assert_allclose(aux["dual_clip_frac"], 1 / 12)   # 5.0 with A < 0
  np.testing.assert_allclose([aux["ratio_min"], aux["ratio_max"]], [0.5, 5.0], rtol=1e-5)
  # d loss / d logπ = -A ρ / 12 where unclipped, 0 where any clip is active.
  want = np.array([[-0.5, -0.9, -1.0, -1.1, 0, 0], [0, 0.9, 1.0, 1.1, 1.5, 0]]) / 12
  np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-8)
  # Without dual-clip the A < 0, ρ = 5 token costs 5 and keeps its gradient.
  loss_nd, aux_nd = grpo_loss_from_logprobs(logp, batch, cfg.replace(dual_clip_c=None))
  np.testing.assert_allclose(loss_nd, (per_token.sum() + 2.0) / 12, rtol=1e-5)
  assert aux_nd["dual_clip_frac"] == 0


# --------------------------------------------------------------------------- config / masks


def test_mask_truncated_and_global_counts():
  mask = np.ones((3, 4), np.float32)
  mask[2, 2:] = 0
  batch = dict(completion_mask=mask, advantages=np.array([1.0, -1.0, 1.0], np.float32),
               truncated=np.array([False, True, False]))
  logp = jnp.full((3, 4), -1.0)
  cfg = LossConfig(aggregation="token_mean", mask_truncated=True)
  counts = global_counts(batch, cfg)
  assert counts["num_tokens_global"] == 6 and counts["num_seqs_global"] == 3
  loss, aux = grpo_loss_from_logprobs(logp, batch, cfg)
  np.testing.assert_allclose(loss, -1.0)   # only the two A = +1 rows remain
  assert aux["num_tokens"] == 6
  with pytest.raises(KeyError, match="truncated"):
    grpo_loss_from_logprobs(logp, {k: v for k, v in batch.items() if k != "truncated"}, cfg)
  np.testing.assert_allclose(grpo_loss_from_logprobs(logp, batch, cfg.replace(
      mask_truncated=False))[0], -(4 - 4 + 2) / 10)


def test_config_validation_and_presets():
  for bad in (dict(ratio_level="seq"), dict(aggregation="mean"), dict(kl_estimator="k5"),
              dict(clip_eps_low=1.0), dict(dual_clip_c=1.0), dict(beta=-1.0),
              dict(temperature=0.0)):
    with pytest.raises(ValueError):
      LossConfig(**bad)
  assert PRESETS["dapo"].clip_eps_high == 0.28 and PRESETS["dapo"].aggregation == "token_mean"
  assert PRESETS["grpo"].beta == 0.001 and PRESETS["gspo"].ratio_level == "sequence"
  hash(LossConfig())  # static under jit
