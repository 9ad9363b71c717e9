"""Every attention implementation matches the reference to 1e-5 in fp32: the kernels alone,
and the whole model in a full forward, with left padding, packed segments, and in cached
decoding (scalar and per-row cache index). Block sizes that do not divide S are used on
purpose (the padded tail block)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.models import attention, create_model, get_model_config, init_cache
from r1jax.models.transformer import make_attention_mask

IMPLS = ["blocked", "xla"]
CFG = get_model_config("tiny", num_layers=2)


def _qkv(b=2, t=9, s=9, k=2, g=2, h=16, seed=0):
  ks = jax.random.split(jax.random.key(seed), 3)
  q = jax.random.normal(ks[0], (b, t, k, g, h))
  kk = jax.random.normal(ks[1], (b, k, h, s))
  v = jax.random.normal(ks[2], (b, k, s, h))
  return q, kk, v


@pytest.mark.parametrize("block", [1, 4, 9, 64])
def test_blocked_kernel_matches_reference(block):
  q, k, v = _qkv()
  kv_mask = jnp.array([[0, 0, 0, 1, 1, 1, 1, 1, 1], [1] * 9], jnp.int32)   # left padding
  spec = attention.MaskSpec(kv_mask, jnp.zeros((), jnp.int32))
  ref = attention.reference(q, k, v, spec.full(9), jnp.float32)
  out = attention.blocked(q, k, v, spec, block, jnp.float32)
  real = np.asarray(spec.full(9).any(-1))   # query rows with at least one valid key
  np.testing.assert_allclose(np.asarray(out)[real], np.asarray(ref)[real], atol=1e-5, rtol=1e-5)
  out = attention.dot_product(q, k, v, spec.full(9), "xla", jnp.float32)
  np.testing.assert_allclose(np.asarray(out)[real], np.asarray(ref)[real], atol=1e-5, rtol=1e-5)


def test_blocked_decode_reads_only_filled_blocks():
  """NaN in every slot past the last written one: the reference reads them (NaN out),
  the blocked decode never does, and equals the reference on a clean cache."""
  q, k, v = _qkv(t=1, s=32)
  offset = jnp.array([5, 11])                          # per-row write slots
  kv_mask = (jnp.arange(32)[None] <= offset[:, None]).astype(jnp.int32)
  spec = attention.MaskSpec(kv_mask, offset)
  ref = attention.reference(q, k, v, spec.full(1), jnp.float32)
  poison = jnp.arange(32)[None, None, :, None] >= 16   # blocks of 8: rows need blocks 0 and 1
  v_nan = jnp.where(poison, jnp.nan, v)
  out = attention.blocked(q, k, v_nan, spec, 8, jnp.float32)
  np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)
  assert np.isnan(np.asarray(attention.reference(q, k, v_nan, spec.full(1), jnp.float32))).any()


def test_blocked_prefill_skips_tiles_above_the_diagonal_and_before_the_first_key():
  """Blocks of 8 over 32 slots, both rows left-padded over the whole first block. NaN in
  the values of key block 0 (padding only) and key block 3: query blocks 1 and 2 must never
  read either (block 0 lies before every valid key, block 3 above their diagonal), so
  their rows equal the reference on clean values; without the skips they would be NaN."""
  q, k, v = _qkv(t=32, s=32)
  kv_mask = (jnp.arange(32)[None] >= jnp.array([[8], [11]])).astype(jnp.int32)
  spec = attention.MaskSpec(kv_mask, jnp.zeros((), jnp.int32))
  ref = attention.reference(q, k, v, spec.full(32), jnp.float32)
  slot = jnp.arange(32)[None, None, :, None]
  v_nan = jnp.where((slot < 8) | (slot >= 24), jnp.nan, v)
  out = attention.blocked(q, k, v_nan, spec, 8, jnp.float32)
  np.testing.assert_allclose(out[:, 11:24], ref[:, 11:24], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cached", [False, True])
def test_blocked_gradient_matches_reference(cached):
  """Every blocked path (static loop, skipped tiles under lax.cond) differentiates to the
  reference's gradient in q, k and v; a loss over the valid rows, blocks of 4. Cached: 3
  queries at per-row slots 4 and 6 of a 9-slot cache (the shared-prompt forward's shape)."""
  q, k, v = _qkv(t=3 if cached else 9)
  if cached:
    offset = jnp.array([4, 6])
    kv_mask = (jnp.arange(9)[None] < offset[:, None] + 3).astype(jnp.int32).at[0, :2].set(0)
    rows = jnp.ones((2, 3), jnp.int32)
  else:
    offset = jnp.zeros((), jnp.int32)
    kv_mask = rows = jnp.array([[0, 0, 0, 1, 1, 1, 1, 1, 1], [1] * 9], jnp.int32)
  spec = attention.MaskSpec(kv_mask, offset)
  w = jax.random.normal(jax.random.key(5), q.shape) * rows[:, :, None, None, None]

  def grads(fn):
    return jax.jit(jax.grad(lambda q, k, v: jnp.sum(fn(q, k, v) * w), argnums=(0, 1, 2)))(q, k, v)

  t = q.shape[1]
  ref = grads(lambda q, k, v: attention.reference(q, k, v, spec.full(t), jnp.float32))
  out = grads(lambda q, k, v: attention.blocked(q, k, v, spec, 4, jnp.float32))
  for a, b in zip(out, ref):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def models():
  ref = create_model(CFG, 1)
  return ref, {impl: create_model(CFG.replace(attention=impl, attention_block=5), 1)
               for impl in IMPLS}


def _toks(b, t, seed=0):
  return jax.random.randint(jax.random.key(seed), (b, t), 1, CFG.vocab_size)


@pytest.mark.parametrize("impl", IMPLS)
def test_full_forward_left_padding_and_segments(models, impl):
  ref, other = models[0], models[1][impl]
  toks = _toks(2, 12)
  mask = jnp.array([[0] * 4 + [1] * 8, [1] * 12], jnp.int32)
  a, _ = ref(toks, None, mask)
  b, _ = other(toks, None, mask)
  np.testing.assert_allclose(np.asarray(b)[mask == 1], np.asarray(a)[mask == 1], atol=1e-5,
                             rtol=1e-5)
  seg = jnp.array([[1] * 5 + [2] * 7, [1] * 3 + [2] * 9])
  pos = jnp.concatenate([jnp.arange(5), jnp.arange(7)])[None].repeat(2, 0)
  a, _ = ref(toks, pos, None, segment_ids_BT=seg)
  b, _ = other(toks, pos, None, segment_ids_BT=seg)
  np.testing.assert_allclose(b, a, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("per_row", [False, True])
def test_cached_decode_matches_reference(models, impl, per_row):
  ref, other = models[0], models[1][impl]
  b, t, s, p = 2, 14, 16, 6
  toks = _toks(b, t, seed=1)
  full, _ = ref(toks)
  cache = init_cache(CFG, b, s, dtype=jnp.float32)
  lens = jnp.array([4, 6]) if per_row else jnp.array([6, 6])
  kv_mask = (jnp.arange(s)[None] < lens[:, None]).astype(jnp.int32)
  pos = jnp.broadcast_to(jnp.arange(p), (b, p))
  logits, cache = other(toks[:, :p], pos, kv_mask.at[:, :p].set(1), cache=cache, cache_index=0)
  if not per_row:
    np.testing.assert_allclose(logits, full[:, :p], atol=1e-5, rtol=1e-5)
  rows = jnp.arange(b)
  step = jax.jit(other.__call__)
  for j in range(t - p):
    idx = lens + j
    kv_mask = kv_mask.at[rows, idx].set(1)
    ci = idx if per_row else idx[0]
    out, cache = step(toks[rows, idx][:, None], idx[:, None], kv_mask, cache=cache,
                      cache_index=ci)
    np.testing.assert_allclose(out[:, 0], full[rows, idx], atol=1e-5, rtol=1e-5)


def test_make_attention_mask_and_config_validation():
  m = make_attention_mask(jnp.array([[0, 1, 1, 1]]), 2, jnp.int32(2))
  np.testing.assert_array_equal(m[0], [[0, 1, 1, 0], [0, 1, 1, 1]])
  with pytest.raises(ValueError, match="attention"):
    CFG.replace(attention="flash")
