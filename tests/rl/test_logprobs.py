"""Vocab-chunked log-probs: equal to the naive log_softmax, in value and gradient."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from r1jax.models.config import get_model_config
from r1jax.models.factory import create_model, split_params
from r1jax.sharding import ShardingRules, batch_sharding, make_mesh, replicated
from r1jax.rl.logprobs import (completion_logprobs, compute_ref_logprobs, logprobs_from_hidden,
                               token_logprobs)

V = 61  # prime: no chunk size but 1 and V divides it


def _naive(h, w, targets, temperature):
  logits = jnp.einsum("btd,dv->btv", h, w, preferred_element_type=jnp.float32) / temperature
  logp_all = jax.nn.log_softmax(logits, axis=-1)
  logp = jnp.take_along_axis(logp_all, targets[..., None], axis=-1)[..., 0]
  return logp, -(jnp.exp(logp_all) * logp_all).sum(-1)


def _hw(seed=0, b=3, t=5, d=16):
  k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
  h = jax.random.normal(k1, (b, t, d))
  w = jax.random.normal(k2, (d, V)) * 0.7
  return h, w, jax.random.randint(k3, (b, t), 0, V)


@pytest.mark.parametrize("chunk,temperature", [(1, 1.0), (7, 0.6), (16, 1.0), (60, 0.6),
                                               (V, 1.0), (V + 5, 0.6), (None, 0.6)])
def test_chunked_equals_naive(chunk, temperature):
  h, w, tg = _hw()
  lp, ent = jax.jit(lambda h, w: logprobs_from_hidden(h, w, tg, temperature, chunk))(h, w)
  lp_ref, ent_ref = _naive(h, w, tg, temperature)
  assert lp.dtype == ent.dtype == jnp.float32
  np.testing.assert_allclose(lp, lp_ref, rtol=1e-5, atol=2e-6)
  np.testing.assert_allclose(ent, ent_ref, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("chunk", [7, 16, V])
def test_chunked_gradients_equal_naive(chunk):
  h, w, tg = _hw(1)
  c1, c2 = jax.random.normal(jax.random.key(5), (2,) + tg.shape)

  def objective(fn):
    def f(h, w):
      lp, ent = fn(h, w)
      return (c1 * lp).sum() + (c2 * ent).sum()
    return jax.jit(jax.grad(f, argnums=(0, 1)))

  g = objective(lambda h, w: logprobs_from_hidden(h, w, tg, 0.8, chunk))(h, w)
  g_ref = objective(lambda h, w: _naive(h, w, tg, 0.8))(h, w)
  for a, b in zip(g, g_ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _all_shapes(jaxpr, out):
  for eqn in jaxpr.eqns:
    out.update(tuple(v.aval.shape) for v in eqn.outvars if hasattr(v.aval, "shape"))
    for p in eqn.params.values():
      for sub in (p if isinstance(p, (tuple, list)) else (p,)):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          _all_shapes(inner, out)
  return out


def test_full_logits_never_materialised():
  """No intermediate of the forward or backward (scan residuals included) is B*T*V big."""
  h, w, tg = _hw(2, b=4, t=8)
  b, t, d = h.shape
  assert d * V < b * t * V  # so that W and its gradient are below the threshold

  def f(h, w):
    lp, ent = logprobs_from_hidden(h, w, tg, 1.0, 16)
    return lp.sum() + ent.sum()
  for fn in (f, jax.grad(f, argnums=(0, 1))):
    shapes = _all_shapes(jax.make_jaxpr(fn)(h, w).jaxpr, set())
    assert (b, t, 16) in shapes                     # the chunk is there ...
    big = [s for s in shapes if np.prod(s) >= b * t * V]
    assert not big, big                             # ... the [B, T, V] logits are not.
  # The naive computation does have them, so the walker would see them.
  shapes = _all_shapes(jax.make_jaxpr(lambda h, w: _naive(h, w, tg, 1.0))(h, w).jaxpr, set())
  assert (b, t, V) in shapes


@pytest.fixture(scope="module")
def model():
  cfg = get_model_config("tiny", num_layers=1, vocab_size=V, embed_dim=32, mlp_dim=64,
                         num_heads=2, num_kv_heads=1, head_dim=16)
  return create_model(cfg, 0)


def test_token_logprobs_matches_model_logits(model):
  graphdef, params = split_params(model)
  ids = jax.random.randint(jax.random.key(0), (2, 7), 0, V)
  mask = jnp.array([[0, 0, 1, 1, 1, 1, 1], [1] * 7])
  pos = jnp.maximum(jnp.cumsum(mask, 1) - 1, 0)
  tg = jnp.roll(ids, -1, axis=1)
  logits, _ = nnx.jit(lambda m: m(ids, pos, mask))(model)
  logp_all = jax.nn.log_softmax(logits / 0.7, -1)
  want = jnp.take_along_axis(logp_all, tg[..., None], -1)[..., 0]
  for m in (model, (graphdef, params)):
    lp, ent = nnx.jit(lambda m: token_logprobs(m, ids, pos, mask, tg, temperature=0.7,
                                               vocab_chunk=9))(m)
    np.testing.assert_allclose(lp, want, rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(ent, -(jnp.exp(logp_all) * logp_all).sum(-1), rtol=1e-5, atol=2e-6)
  with pytest.raises(TypeError):
    token_logprobs(params, ids, pos, mask, tg)


def _grpo_layout(seed=0, n=3, p=4, l=5):
  rng = np.random.default_rng(seed)
  plen = rng.integers(1, p + 1, n)
  clen = rng.integers(1, l + 1, n)
  pm = (np.arange(p)[None] >= p - plen[:, None]).astype(np.int32)   # left-padded prompts
  cm = (np.arange(l)[None] < clen[:, None]).astype(np.int32)        # right-padded completions
  pi = rng.integers(0, V, (n, p)) * pm
  ci = rng.integers(0, V, (n, l)) * cm
  return pi, pm, ci, cm


def test_completion_logprobs_layout_and_gradients(model):
  graphdef, params = split_params(model)
  pi, pm, ci, cm = _grpo_layout()
  p = pi.shape[1]

  def naive(params):
    # Full forward on prompt ++ completion with full logits; column t predicts t + 1.
    ids = jnp.concatenate([pi, ci], 1)
    mask = jnp.concatenate([pm, cm], 1)
    pos = jnp.maximum(jnp.cumsum(mask, 1) - 1, 0)
    from r1jax.models.factory import merge_params
    logits, _ = merge_params(graphdef, params)(ids, pos, mask)
    logp_all = jax.nn.log_softmax(logits[:, p - 1:-1], -1)
    return jnp.take_along_axis(logp_all, jnp.asarray(ci)[..., None], -1)[..., 0]

  def chunked(params):
    return completion_logprobs((graphdef, params), pi, pm, ci, cm, vocab_chunk=8)[0]

  lp = jax.jit(chunked)(params)
  np.testing.assert_allclose(lp, jax.jit(naive)(params), rtol=1e-5, atol=2e-6)
  weights = jnp.asarray(cm, jnp.float32) * jnp.arange(1.0, 6.0)
  g = jax.jit(jax.grad(lambda q: (weights * chunked(q)).sum()))(params)
  g_ref = jax.jit(jax.grad(lambda q: (weights * naive(q)).sum()))(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g, g_ref)

  # Extra left padding of the prompts and right padding of the completions change nothing.
  pad = lambda x, left, right: np.pad(x, ((0, 0), (left, right)))
  relaid = lambda q: completion_logprobs((graphdef, q), pad(pi, 3, 0), pad(pm, 3, 0),
                                         pad(ci, 0, 2), pad(cm, 0, 2), vocab_chunk=8)[0]
  lp2 = jax.jit(relaid)(params)
  np.testing.assert_allclose(lp2[:, :ci.shape[1]] * cm, lp * cm, rtol=1e-5, atol=2e-6)

  # The reference helper is the same computation, with no gradient to its params.
  batch = dict(prompt_ids=pi, prompt_mask=pm, completion_ids=ci, completion_mask=cm)
  ref_fn = lambda q: compute_ref_logprobs(q, graphdef, batch, vocab_chunk=8)
  np.testing.assert_allclose(jax.jit(ref_fn)(params), lp, rtol=1e-6, atol=1e-6)
  g0 = jax.jit(jax.grad(lambda q: ref_fn(q).sum()))(params)
  assert all(not np.asarray(x).any() for x in jax.tree.leaves(g0))


def _grouped_layout(b=4, g=3, p=6, l=7, seed=1):
  """GRPO rows: row i*g + j is sample j of prompt i (prompts repeated within a group)."""
  rng = np.random.default_rng(seed)
  pi, pm, _, _ = _grpo_layout(seed, n=b, p=p, l=l)
  clen = rng.integers(1, l + 1, b * g)
  cm = (np.arange(l)[None] < clen[:, None]).astype(np.int32)
  ci = rng.integers(0, V, (b * g, l)) * cm
  return np.repeat(pi, g, 0), np.repeat(pm, g, 0), ci, cm


@pytest.mark.parametrize("attention", ["reference", "xla", "blocked"])
def test_shared_prompt_forward_equals_one_pass(attention):
  """group_size > 1 runs each prompt once: same log-probs, entropies and gradients as the
  one-pass forward, on one device and with rows sharded over the 8-device mesh."""
  cfg = get_model_config("tiny", num_layers=2, vocab_size=V, embed_dim=32, mlp_dim=64,
                         num_heads=4, num_kv_heads=2, head_dim=8, attention=attention)
  graphdef, params = split_params(create_model(cfg, 0))
  g = 3
  pi, pm, ci, cm = _grouped_layout(b=8, g=g)
  weights = jnp.asarray(cm, jnp.float32) * jnp.linspace(1.0, 2.0, ci.shape[1])

  def loss(q, gs):
    lp, ent = completion_logprobs((graphdef, q), pi, pm, ci, cm, temperature=0.8,
                                  vocab_chunk=16, group_size=gs)
    return (weights * lp).sum() + 0.1 * (weights * ent).sum(), (lp, ent)

  (_, (lp1, ent1)), g1 = jax.jit(jax.value_and_grad(lambda q: loss(q, 1), has_aux=True))(params)
  (_, (lpg, entg)), gg = jax.jit(jax.value_and_grad(lambda q: loss(q, g), has_aux=True))(params)
  valid = cm.astype(bool)
  np.testing.assert_allclose(np.asarray(lpg)[valid], np.asarray(lp1)[valid], rtol=1e-5, atol=2e-6)
  np.testing.assert_allclose(np.asarray(entg)[valid], np.asarray(ent1)[valid], rtol=1e-5,
                             atol=2e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6), gg, g1)

  # Rows sharded over the mesh (8 prompts: one group per device), params replicated.
  mesh = make_mesh((8, 1, 1))
  sharded = [jax.device_put(jnp.asarray(x), batch_sharding(mesh, ShardingRules(), x.shape))
             for x in (pi, pm, ci, cm)]
  assert sharded[2].addressable_shards[0].data.shape[0] == g
  (_, (lps, _)), gs = jax.jit(jax.value_and_grad(
      lambda q, a, b_, c, d: ((weights * completion_logprobs(
          (graphdef, q), a, b_, c, d, temperature=0.8, vocab_chunk=16, group_size=g)[0]).sum(),
          completion_logprobs((graphdef, q), a, b_, c, d, temperature=0.8, vocab_chunk=16,
                              group_size=g)), has_aux=True))(
          jax.device_put(params, replicated(mesh)), *sharded)
  np.testing.assert_allclose(np.asarray(lps)[valid], np.asarray(lp1)[valid], rtol=1e-5,
                             atol=2e-6)
  g1_lp = jax.jit(jax.grad(lambda q: (weights * completion_logprobs(
      (graphdef, q), pi, pm, ci, cm, temperature=0.8, vocab_chunk=16)[0]).sum()))(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6), gs, g1_lp)

  # Rows that are not whole groups are an error, not a silent mix-up.
  with pytest.raises(ValueError, match="whole groups"):
    completion_logprobs((graphdef, params), pi[:-1], pm[:-1], ci[:-1], cm[:-1], group_size=g)
