"""attention="splash" (the Pallas splash kernel, r1jax/models/splash.py) matches the
reference to 1e-5 in fp32 on the rows that are real tokens: the kernel alone with causal
masking, left padding, packed segments and GQA, its gradient (the kernel's custom VJP) to
1e-4, and the whole model's forward, on one device and under shard_map on a mesh. On CPU
the kernel runs through the Pallas interpreter (slow): shapes are kept tiny."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from r1jax import sharding
from r1jax.models import attention, create_model, get_model_config, init_cache, split_params
from r1jax.models import splash
from r1jax.models.factory import abstract_model, merge_params

T = 128


def _qkv(b=2, t=T, k=1, g=2, h=64, seed=0):
  ks = jax.random.split(jax.random.key(seed), 3)
  return (jax.random.normal(ks[0], (b, t, k, g, h)), jax.random.normal(ks[1], (b, k, h, t)),
          jax.random.normal(ks[2], (b, k, t, h)))


def _spec(t=T):
  """Row 0: 5 left-padding slots then one sequence; row 1: three packed segments, with
  an invalid (padding) stretch between the second and the third."""
  kv_mask = np.ones((2, t), np.int32)
  kv_mask[0, :5] = 0
  kv_mask[1, 70:75] = 0
  seg = np.zeros((2, t), np.int32)
  seg[1, 40:] = 1
  seg[1, 70:] = 2
  seg = jnp.asarray(seg)
  return attention.MaskSpec(jnp.asarray(kv_mask), jnp.zeros((), jnp.int32), seg, seg)


def test_segment_ids_mark_invalid_positions_with_a_sentinel():
  spec = _spec()
  seg = np.asarray(splash.segment_ids(spec))
  assert (seg[0, :5] == -1).all() and (seg[0, 5:] == 0).all()
  assert (seg[1, 70:75] == -1).all() and (seg[1, 75:] == 2).all() and (seg[1, 40:70] == 1).all()
  # Same-segment pairs under the causal mask give the reference mask on every valid query.
  causal = np.tril(np.ones((T, T), bool))
  mask = causal[None] & (seg[:, :, None] == seg[:, None, :])
  valid = np.asarray(spec.kv_mask_BS, bool)
  np.testing.assert_array_equal(mask[valid], np.asarray(spec.full(T))[valid])


def test_splash_kernel_matches_reference():
  t = 100      # padded to 128 inside and sliced back (T = 128, unpadded: the gradient test)
  q, k, v = _qkv(t=t)
  spec = _spec(t)
  ref = jax.jit(lambda q, k, v: attention.reference(q, k, v, spec.full(t), jnp.float32)
                )(q, k, v)
  out = jax.jit(lambda q, k, v: splash.splash(q, k, v, spec, jnp.float32, interpret=True)
                )(q, k, v)
  valid = np.asarray(spec.kv_mask_BS, bool)
  np.testing.assert_allclose(np.asarray(out)[valid], np.asarray(ref)[valid], atol=1e-5, rtol=1e-5)


def test_splash_loss_and_gradient_match_reference():
  """A loss over the valid rows (T = 128: no padding inside), its value to 1e-5 and its
  gradient in q, k and v (the kernel's custom VJP) to 1e-4."""
  q, k, v = _qkv()
  spec = _spec()
  w = jax.random.normal(jax.random.key(3), q.shape) * spec.kv_mask_BS[:, :, None, None, None]

  def loss(fn):
    return jax.jit(jax.value_and_grad(lambda q, k, v: jnp.sum(fn(q, k, v) * w),
                                      argnums=(0, 1, 2)))

  ref_l, ref_g = loss(lambda q, k, v: attention.reference(q, k, v, spec.full(T), jnp.float32)
                      )(q, k, v)
  out_l, out_g = loss(lambda q, k, v: splash.splash(q, k, v, spec, jnp.float32, interpret=True)
                      )(q, k, v)
  np.testing.assert_allclose(out_l, ref_l, atol=1e-5, rtol=1e-5)
  for a, b in zip(out_g, ref_g):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_splash_refuses_a_cache_shaped_call():
  q, k, v = jnp.zeros((2, 1, 1, 2, 8)), jnp.zeros((2, 1, 8, 8)), jnp.zeros((2, 1, 8, 8))
  with pytest.raises(ValueError, match="blocked"):
    splash.splash(q, k, v, _spec(1), jnp.float32, interpret=True)


CFG = get_model_config("tiny", num_layers=1)   # one layer: the interpreter is slow


def test_transformer_forward_and_cached_decode_with_splash():
  """Full forward (left padding; packed segments) equals the reference model; a cached
  prefill + decode step (the blocked path) equals the reference's full forward. One jit
  (eager model calls and inits cost more than the kernels here)."""
  one = sharding.make_mesh((1, 1, 1), devices=jax.devices()[:1])   # a jitted init
  _, params = split_params(create_model(CFG, 1, one))
  graphdef_ref = nnx.split(abstract_model(CFG))[0]
  graphdef_spl = nnx.split(abstract_model(CFG.replace(attention="splash", attention_block=5)))[0]
  toks = jax.random.randint(jax.random.key(0), (2, 12), 1, CFG.vocab_size)
  mask = jnp.array([[0] * 4 + [1] * 8, [1] * 12], jnp.int32)
  seg = jnp.array([[1] * 5 + [2] * 7, [1] * 3 + [2] * 9])
  pos = jnp.concatenate([jnp.arange(5), jnp.arange(7)])[None].repeat(2, 0)
  kv = (jnp.arange(16)[None] < 11).astype(jnp.int32).repeat(2, 0)

  @jax.jit
  def run(p, cache):
    ref, spl = merge_params(graphdef_ref, p), merge_params(graphdef_spl, p)
    out = {}
    for name, m in (("ref", ref), ("spl", spl)):
      out[name, "pad"] = m(toks, None, mask)[0]
      out[name, "seg"] = m(toks, pos, None, segment_ids_BT=seg)[0]
    out["ref", "full"] = ref(toks)[0]
    _, cache = spl(toks[:, :10], jnp.arange(10)[None].repeat(2, 0), kv, cache=cache,
                   cache_index=0)
    out["spl", "step"] = spl(toks[:, 10:11], jnp.full((2, 1), 10), kv, cache=cache,
                             cache_index=10)[0]
    return out

  out = jax.device_get(run(params, init_cache(CFG, 2, 16, dtype=jnp.float32)))
  valid = np.asarray(mask) == 1
  np.testing.assert_allclose(out["spl", "pad"][valid], out["ref", "pad"][valid], atol=1e-5,
                             rtol=1e-5)
  np.testing.assert_allclose(out["spl", "seg"], out["ref", "seg"], atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(out["spl", "step"][:, 0], out["ref", "full"][:, 10], atol=1e-5,
                             rtol=1e-5)


def test_sharded_splash_forward_equals_single_device():
  """On a (data 2, fsdp 1, tensor 2) mesh the kernel runs under shard_map per (batch,
  kv-head) shard; the same params through the unsharded reference model agree."""
  mesh = sharding.make_mesh((2, 1, 2), devices=jax.devices()[:4])
  graphdef, params = split_params(create_model(CFG.replace(attention="splash"), 0, mesh,
                                               sharding.ShardingRules()))
  graphdef_ref = nnx.split(abstract_model(CFG))[0]
  toks = jax.random.randint(jax.random.key(0), (2, 12), 1, CFG.vocab_size)
  out, ref = jax.jit(lambda p: (merge_params(graphdef, p)(toks)[0],
                                merge_params(graphdef_ref, p)(toks)[0]))(params)
  np.testing.assert_allclose(out, ref, atol=2e-5, rtol=2e-5)
