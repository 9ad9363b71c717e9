"""Model tests on the 8-device CPU mesh: counts, sharding, caching, padding."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from r1jax import sharding
from r1jax.models import (PUBLISHED_PARAM_COUNTS, abstract_model, count_params, create_model,
                          get_model_config, init_cache, logical_axes_tree, param_shardings,
                          split_params, merge_params)
from r1jax.models.config import RopeScaling

FAMILY_CFGS = {
    "qwen2": get_model_config("tiny", num_layers=2),
    "llama": get_model_config("tiny", family="llama", num_layers=2, qkv_bias=False,
                              tie_embeddings=False, rope_scaling=RopeScaling(factor=8.0,
                              original_max_position_embeddings=64)),
    "qwen3": get_model_config("tiny", family="qwen3", num_layers=2, qkv_bias=False, qk_norm=True),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAM_COUNTS))
def test_param_count_matches_published(name):
  cfg = get_model_config(name)
  model = abstract_model(cfg)  # eval_shape: no memory
  assert count_params(model) == PUBLISHED_PARAM_COUNTS[name]
  assert cfg.num_params() == PUBLISHED_PARAM_COUNTS[name]


def test_every_param_has_logical_axes():
  model = abstract_model(FAMILY_CFGS["qwen3"])
  axes = logical_axes_tree(model)
  _, params = split_params(model)
  for a, p in zip(jax.tree.leaves(axes, is_leaf=lambda x: isinstance(x, tuple)),
                  jax.tree.leaves(params)):
    assert isinstance(a, tuple) and len(a) == len(p.shape)


def _tokens(cfg, b=4, t=12, seed=0):
  return jax.random.randint(jax.random.key(seed), (b, t), 0, cfg.vocab_size)


@pytest.mark.parametrize("family", sorted(FAMILY_CFGS))
@pytest.mark.parametrize("mesh_shape", [(8, 1, 1), (2, 2, 2), (1, 4, 2)])
def test_sharded_forward_equals_single_device(family, mesh_shape):
  cfg = FAMILY_CFGS[family]
  mesh = sharding.make_mesh(mesh_shape)
  rules = sharding.ShardingRules()
  sharded = create_model(cfg, 0, mesh, rules)
  single = create_model(cfg, 0)
  # Same rng -> same parameters, whatever the layout (jit vs eager init may
  # differ in the last bit of the normal sampler's arithmetic).
  _, p_sh = split_params(sharded)
  _, p_1 = split_params(single)
  for a, b in zip(jax.tree.leaves(p_sh), jax.tree.leaves(p_1)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-8)
  q = sharded.layers[0].attn.q_proj[...]
  expected = sharding.logical_to_spec(("embed", "heads", "head_dim"), q.shape, rules, mesh)
  assert q.sharding.spec == expected
  if mesh_shape == (2, 2, 2):
    assert q.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor", None)
    assert len({s.data.shape for s in q.addressable_shards}) == 1
    assert q.addressable_shards[0].data.shape == (cfg.embed_dim // 2, cfg.num_heads // 2,
                                                  cfg.head_dim)
  toks = _tokens(cfg, b=8)
  graphdef, params = split_params(sharded)
  fwd = jax.jit(lambda p, x: merge_params(graphdef, p)(x)[0])
  out_sh = fwd(p_sh, jax.device_put(toks, sharding.batch_sharding(mesh, rules, toks.shape)))
  out_1 = single(toks)[0]
  np.testing.assert_allclose(np.asarray(out_sh), np.asarray(out_1), atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("family", sorted(FAMILY_CFGS))
def test_cached_decoding_matches_full_forward(family):
  cfg = FAMILY_CFGS[family]
  model = create_model(cfg, 1)
  step = jax.jit(model.__call__)  # eager NNX calls run op by op (minutes for llama's RoPE)
  b, t, s = 2, 10, 16
  toks = _tokens(cfg, b, t)
  full, _ = step(toks)
  cache = init_cache(cfg, b, s, dtype=jnp.float32)
  kv_mask = jnp.zeros((b, s), jnp.int32)
  # Prefill 6 tokens, then decode one at a time.
  p = 6
  kv_mask = kv_mask.at[:, :p].set(1)
  pos = jnp.broadcast_to(jnp.arange(p), (b, p))
  logits, cache = step(toks[:, :p], pos, kv_mask, cache=cache, cache_index=jnp.asarray(0))
  np.testing.assert_allclose(logits, full[:, :p], atol=1e-5, rtol=1e-5)
  for i in range(p, t):
    kv_mask = kv_mask.at[:, i].set(1)
    step_logits, cache = step(toks[:, i:i + 1], jnp.full((b, 1), i), kv_mask, cache=cache,
                              cache_index=jnp.asarray(i))
    np.testing.assert_allclose(step_logits[:, 0], full[:, i], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", sorted(FAMILY_CFGS))
def test_per_row_cache_index_matches_full_forward(family):
  """cache_index [B]: each row writes and attends at its own slot (the engine's decode)."""
  cfg = FAMILY_CFGS[family]
  model = create_model(cfg, 1)
  step = jax.jit(model.__call__)  # compiled once per shape (eager NNX calls run op by op)
  b, t, s = 2, 12, 16
  toks = _tokens(cfg, b, t)
  full, _ = step(toks)
  cache = init_cache(cfg, b, s, dtype=jnp.float32)
  # Prefill 6 slots of both rows, but row 0 keeps only 4 of them: its slots 4, 5 hold
  # keys of tokens it has not reached, masked until its own decode overwrites them.
  lens = jnp.array([4, 6])
  kv_mask = (jnp.arange(s)[None] < lens[:, None]).astype(jnp.int32)
  pos = jnp.broadcast_to(jnp.arange(6), (b, 6))
  _, cache = step(toks[:, :6], pos, jnp.ones((b, s), jnp.int32).at[:, 6:].set(0), cache=cache,
                  cache_index=jnp.asarray(0))
  rows = jnp.arange(b)
  for j in range(t - 6):
    idx = lens + j                                         # row 0 at 4+j, row 1 at 6+j
    kv_mask = kv_mask.at[rows, idx].set(1)
    step_logits, cache = step(toks[rows, idx][:, None], idx[:, None], kv_mask, cache=cache,
                              cache_index=idx)
    np.testing.assert_allclose(step_logits[:, 0], full[rows, idx], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", sorted(FAMILY_CFGS))
def test_left_padding_does_not_change_real_logits(family):
  cfg = FAMILY_CFGS[family]
  model = create_model(cfg, 2)
  toks = _tokens(cfg, 1, 7)
  ref, _ = model(toks)
  pad = 5
  padded = jnp.concatenate([jnp.zeros((1, pad), jnp.int32), toks], axis=1)
  mask = jnp.concatenate([jnp.zeros((1, pad), jnp.int32), jnp.ones((1, 7), jnp.int32)], axis=1)
  out, _ = model(padded, None, mask)  # positions default to cumsum(mask) - 1
  np.testing.assert_allclose(out[:, pad:], ref, atol=1e-5, rtol=1e-5)
  assert np.all(np.isfinite(np.asarray(out)))  # fully masked pad rows give no NaN


def test_packed_segments_are_independent():
  cfg = FAMILY_CFGS["qwen2"]
  model = create_model(cfg, 3)
  a, b = _tokens(cfg, 1, 5, seed=1), _tokens(cfg, 1, 4, seed=2)
  ref_a, _ = model(a)
  ref_b, _ = model(b)
  packed = jnp.concatenate([a, b], axis=1)
  seg = jnp.array([[1] * 5 + [2] * 4])
  pos = jnp.array([list(range(5)) + list(range(4))])
  out, _ = model(packed, pos, None, segment_ids_BT=seg)
  np.testing.assert_allclose(out[:, :5], ref_a, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(out[:, 5:], ref_b, atol=1e-5, rtol=1e-5)


def test_remat_same_gradients():
  cfg = FAMILY_CFGS["qwen2"]
  toks = _tokens(cfg, 2, 8)

  def grads(c):
    model = create_model(c, 0)
    graphdef, params = split_params(model)

    def loss(p):
      logits, _ = merge_params(graphdef, p)(toks)
      return jnp.mean(jax.nn.logsumexp(logits, -1))
    return jax.jit(jax.grad(loss))(params)

  g0, g1 = grads(cfg), grads(cfg.replace(remat=True))
  for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5)


def _logsumexp_grad(cfg):
  """(jitted gradient of a 2 x 8 batch's mean log-sum-exp of the logits, the model's params)."""
  toks = _tokens(cfg, 2, 8)
  graphdef, params = split_params(create_model(cfg, 0))

  def loss(p):
    logits, _ = merge_params(graphdef, p)(toks)
    return jnp.mean(jax.nn.logsumexp(logits, -1))
  return jax.jit(jax.grad(loss)), params


def test_rope_sin_cos_computed_once_per_forward_on_cpu():
  """The training program computes the RoPE sin / cos once (one fused computation), not per head,
  per layer and again in the backward pass, which XLA:CPU did when they were fused into their
  consumers (docs/performance.md: ~20% of the 25M update's op time)."""
  grad, params = _logsumexp_grad(FAMILY_CFGS["qwen2"])
  hlo = grad.lower(params).compile().as_text()
  assert hlo.count("cosine(") == 1 and hlo.count(" sine(") == 1, (hlo.count("cosine("),
                                                                   hlo.count(" sine("))


def test_norm_scale_and_bias_gradients_are_products_on_cpu(monkeypatch):
  """On XLA:CPU the gradients of the norms' scales and the q/k/v biases (sums over every row) are
  products by a row of ones, not reductions, which XLA:CPU split into reduce-window + reduce
  (docs/performance.md: ~10% of the 25M update's op time); the gradients equal the plain ops'."""
  import re
  from r1jax.models import transformer
  cfg = FAMILY_CFGS["qwen2"]

  def compiled():
    f, params = _logsumexp_grad(cfg)      # traced anew: after the monkeypatch, the plain ops
    hlo = f.lower(params).compile().as_text()
    return set(re.findall(r"= (f32\[[0-9,]*\])\S* reduce\(", hlo)), f(params)

  reduced, grads = compiled()
  d, n, k, h = cfg.embed_dim, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
  param_shapes = {f"f32[{d}]", f"f32[{n},{h}]", f"f32[{k},{h}]"}
  assert not reduced & param_shapes, reduced
  monkeypatch.setattr(transformer, "scale_by", lambda x, w: x * w)
  monkeypatch.setattr(transformer, "add_bias", lambda x, b: x + b)
  plain_reduced, plain = compiled()
  assert plain_reduced & param_shapes       # the check above can fail
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(plain)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_bf16_compute_close_to_fp32():
  cfg = FAMILY_CFGS["qwen2"]
  toks = _tokens(cfg, 2, 8)
  out32, _ = create_model(cfg, 0)(toks)
  out16, _ = create_model(cfg.replace(dtype="bfloat16"), 0)(toks)
  assert out16.dtype == jnp.float32  # logits always float32
  np.testing.assert_allclose(out16, out32, atol=5e-2)


def test_indivisible_heads_are_replicated_not_an_error():
  # 14 query heads (Qwen2.5-0.5B) on a tensor axis of 4: that dim is replicated.
  mesh = sharding.make_mesh((2, 1, 4))
  spec = sharding.logical_to_spec(("embed", "heads", "head_dim"), (896, 14, 64),
                                  sharding.ShardingRules(), mesh)
  assert spec == jax.sharding.PartitionSpec(None, None, None)


def test_config_errors_are_clear():
  with pytest.raises(ValueError, match="Unknown model preset"):
    get_model_config("gpt5")
  with pytest.raises(ValueError, match="Unknown model config fields"):
    get_model_config("tiny", hidden=3)
  with pytest.raises(ValueError, match="multiple of"):
    get_model_config("tiny", num_heads=3)
  with pytest.raises(ValueError, match="needs 16 devices"):
    sharding.make_mesh((4, 4, 1))
  with pytest.raises(ValueError, match="Unknown logical axis"):
    sharding.ShardingRules.from_dict({"hidden": "tensor"})
