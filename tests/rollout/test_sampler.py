"""Sampler tests: log-prob parity, greedy parity, sharding, early stop, stop sequences,
bucketing and compile counts. Tiny 2-layer models and short lengths keep it fast."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax.models import get_model_config
from r1jax.models.factory import abstract_model, create_model, param_shardings, split_params
from r1jax.rollout import FINISH_LENGTH, FINISH_STOP, Sampler, SamplerConfig, bucket_prompts
from r1jax.sharding import ShardingRules, make_mesh

L = 8
SAMPLE_CFG = SamplerConfig(num_samples=2, max_new_tokens=L, temperature=0.8, top_p=0.95,
                           top_k=64, cache_dtype="float32")
GREEDY_CFG = SamplerConfig(num_samples=1, max_new_tokens=L, greedy=True, cache_dtype="float32")


def _prompts(lengths, width, vocab, seed=0):
  """Left-padded random prompts (ids >= 1, pad 0)."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, vocab, size=(len(lengths), width)).astype(np.int32)
  mask = (np.arange(width)[None] >= width - np.asarray(lengths)[:, None]).astype(np.int32)
  return ids * mask, mask


@pytest.fixture(scope="module")
def tiny():
  cfg = get_model_config("tiny", num_layers=2)
  model = create_model(cfg, 0)
  graphdef, params = split_params(model)
  return cfg, model, graphdef, params


@pytest.fixture(scope="module")
def prompts(tiny):
  return _prompts([3, 5, 2, 6], 6, tiny[0].vocab_size)


@pytest.fixture(scope="module")
def sampled(tiny, prompts):
  """A sampled single-device rollout (fp32 cache), shared by several tests."""
  cfg, _, graphdef, params = tiny
  sampler = Sampler(graphdef, cfg, SAMPLE_CFG)
  return jax.device_get(sampler.generate(params, *prompts, jax.random.key(7)))


@pytest.fixture(scope="module")
def greedy(tiny, prompts):
  cfg, _, graphdef, params = tiny
  return jax.device_get(Sampler(graphdef, cfg, GREEDY_CFG).generate(
      params, *prompts, jax.random.key(0)))


def _recomputed_logprobs(model, ro, temperature):
  """The trainer's view: full forward of prompt + completion, logits / T, log_softmax."""
  tokens = jnp.concatenate([ro.prompt_ids, ro.completion_ids], axis=1)
  mask = jnp.concatenate([ro.prompt_mask, ro.completion_mask], axis=1)
  logits, _ = jax.jit(lambda t, m: model(t, None, m))(tokens, mask)
  p = ro.prompt_ids.shape[1]
  logp = jax.nn.log_softmax(logits[:, p - 1:-1] / temperature, axis=-1)
  return np.asarray(jnp.take_along_axis(logp, ro.completion_ids[..., None], -1)[..., 0])


def _check_structure(ro, config):
  """Mask is a prefix; pads, zero log-probs after it; lengths and finish reasons agree."""
  mask = np.asarray(ro.completion_mask)
  lengths = np.asarray(ro.lengths)
  np.testing.assert_array_equal(mask, np.arange(mask.shape[1])[None] < lengths[:, None])
  assert np.all(np.asarray(ro.completion_ids)[mask == 0] == config.pad_id)
  assert np.all(np.asarray(ro.logprobs)[mask == 0] == 0)
  assert np.all(np.asarray(ro.logprobs)[mask == 1] < 0)
  truncated = np.asarray(ro.finish_reason) == FINISH_LENGTH
  assert np.all(lengths[truncated] == config.max_new_tokens)


def test_rollout_layout(sampled, prompts):
  ids, mask = prompts
  g = SAMPLE_CFG.num_samples
  assert sampled.completion_ids.shape == (4 * g, L)
  assert sampled.logprobs.dtype == np.float32
  # Groups are contiguous: rows i*G .. i*G+G-1 are prompt i (leading pad column dropped: none).
  np.testing.assert_array_equal(sampled.prompt_ids, np.repeat(ids, g, axis=0))
  np.testing.assert_array_equal(sampled.prompt_mask, np.repeat(mask, g, axis=0))
  # The G samples of a prompt differ (different per-row keys).
  assert not np.array_equal(sampled.completion_ids[0], sampled.completion_ids[1])
  _check_structure(sampled, SAMPLE_CFG)
  assert np.all(sampled.finish_reason == FINISH_LENGTH) and int(sampled.num_steps) == L
  # Truncation (top-p/top-k) only raises the probability of the drawn token.
  assert np.all(sampled.sampling_logprobs >= sampled.logprobs - 1e-6)


def test_logprob_parity_fp32(tiny, sampled):
  """Sampler log-probs == trainer recomputation within 1e-5 (fp32 params and cache)."""
  recomputed = _recomputed_logprobs(tiny[1], sampled, SAMPLE_CFG.temperature)
  m = np.asarray(sampled.completion_mask) == 1
  np.testing.assert_allclose(sampled.logprobs[m], recomputed[m], atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_dtype", ["float32", "bfloat16"])
def test_logprob_parity_bf16(tiny, prompts, model_dtype):
  """bf16 KV cache, with fp32 or bf16 params/compute, against the trainer's forward in
  the model's own dtype. Keys/values rounded to bf16 (8-bit mantissa) move the
  sampler's log-probs away from the cache-free forward; measured ~1.5e-3 here
  (near-uniform random model), stated tolerance 1e-2 absolute."""
  cfg, model, graphdef, params = tiny
  if model_dtype != "float32":
    cfg = cfg.replace(param_dtype=model_dtype, dtype=model_dtype)
    model = create_model(cfg, 0)
    graphdef, params = split_params(model)
  config = dataclasses.replace(SAMPLE_CFG, cache_dtype="bfloat16")
  ro = jax.device_get(Sampler(graphdef, cfg, config).generate(params, *prompts,
                                                              jax.random.key(7)))
  recomputed = _recomputed_logprobs(model, ro, config.temperature)
  m = np.asarray(ro.completion_mask) == 1
  np.testing.assert_allclose(ro.logprobs[m], recomputed[m], atol=1e-2, rtol=0)


def test_greedy_matches_stepwise_full_forward_argmax(prompts):
  """Greedy from the full tiny preset (4 layers) == argmax of a full forward per step."""
  cfg = get_model_config("tiny")
  model = create_model(cfg, 1)
  graphdef, params = split_params(model)
  ids, mask = prompts
  ro = jax.device_get(Sampler(graphdef, cfg, GREEDY_CFG).generate(params, ids, mask,
                                                                  jax.random.key(0)))
  p = ids.shape[1]
  tokens = np.concatenate([ids, np.zeros((len(ids), L), np.int32)], axis=1)
  full_mask = np.concatenate([mask, np.ones((len(ids), L), np.int32)], axis=1)
  forward = jax.jit(lambda t, m: model(t, None, m)[0])
  expected_lp = []
  for t in range(L):
    # Causal attention: the logits at slot p-1+t see only tokens <= p-1+t, all decided.
    logits = forward(tokens, full_mask)[:, p - 1 + t]
    tokens[:, p + t] = np.asarray(jnp.argmax(logits, -1))
    expected_lp.append(np.asarray(jnp.max(jax.nn.log_softmax(logits, -1), -1)))
  np.testing.assert_array_equal(ro.completion_ids, tokens[:, p:])
  np.testing.assert_allclose(ro.logprobs, np.stack(expected_lp, 1), atol=1e-5)
  np.testing.assert_array_equal(ro.sampling_logprobs, 0.0)


@pytest.mark.parametrize("mesh_shape", [(2, 2, 2), (8, 1, 1)])
def test_sharded_matches_single_device(tiny, prompts, sampled, mesh_shape):
  cfg, _, _, params = tiny
  mesh, rules = make_mesh(mesh_shape), ShardingRules()
  abstract = abstract_model(cfg, mesh, rules)
  graphdef, _ = split_params(abstract)
  sharded_params = jax.device_put(params, param_shardings(abstract, mesh, rules))
  ro = Sampler(graphdef, cfg, SAMPLE_CFG, mesh, rules).generate(
      sharded_params, *prompts, jax.random.key(7))
  # Rows (B*G = 8) really are split over the batch axes.
  assert ro.completion_ids.sharding.spec[0] is not None
  assert len(ro.completion_ids.sharding.device_set) == 8
  ro = jax.device_get(ro)
  np.testing.assert_array_equal(ro.completion_ids, sampled.completion_ids)
  np.testing.assert_array_equal(ro.completion_mask, sampled.completion_mask)
  np.testing.assert_allclose(ro.logprobs, sampled.logprobs, atol=1e-5)
  np.testing.assert_allclose(ro.sampling_logprobs, sampled.sampling_logprobs, atol=1e-5)


def _first_stop(row, eos_ids=(), stop_seqs=()):
  """Reference: index of the token that ends `row`, or None."""
  for i in range(len(row)):
    if row[i] in eos_ids:
      return i
    for s in stop_seqs:
      if i + 1 >= len(s) and tuple(row[i + 1 - len(s):i + 1]) == tuple(s):
        return i
  return None


def _check_against_reference(ro, ref_ids, config):
  _check_structure(ro, config)
  for r, row in enumerate(ref_ids):
    stop = _first_stop(list(row), config.eos_ids, config.stop_sequences)
    n = config.max_new_tokens if stop is None else stop + 1
    assert ro.lengths[r] == n
    assert ro.finish_reason[r] == (FINISH_LENGTH if stop is None else FINISH_STOP)
    np.testing.assert_array_equal(ro.completion_ids[r, :n], row[:n])  # greedy: same prefix
  return ro


def test_early_stop_when_all_rows_done(tiny, prompts, greedy):
  cfg, _, graphdef, params = tiny
  k = 3
  eos = tuple(sorted(set(int(t) for t in greedy.completion_ids[:, k])))
  config = dataclasses.replace(GREEDY_CFG, eos_ids=eos)
  ro = jax.device_get(Sampler(graphdef, cfg, config).generate(params, *prompts,
                                                              jax.random.key(0)))
  _check_against_reference(ro, greedy.completion_ids, config)
  assert np.all(ro.finish_reason == FINISH_STOP)
  # Every row ends at or before step k, so the loop stops after max(lengths) draws.
  assert int(ro.num_steps) == int(ro.lengths.max()) <= k + 1 < L


def test_stop_sequences_and_eos_on_some_rows(tiny, prompts, greedy):
  cfg, _, graphdef, params = tiny
  seq = tuple(int(t) for t in greedy.completion_ids[1, 2:5])     # a 3-token stop sequence
  never = (cfg.vocab_size - 1, cfg.vocab_size - 1, cfg.vocab_size - 1, 1)
  eos = int(greedy.completion_ids[0, 2])
  config = dataclasses.replace(GREEDY_CFG, eos_ids=(eos,), stop_sequences=(seq, never))
  ro = jax.device_get(Sampler(graphdef, cfg, config).generate(params, *prompts,
                                                              jax.random.key(0)))
  _check_against_reference(ro, greedy.completion_ids, config)
  # The row that produced the sequence ends on it, and the mask includes all of it
  # (unless the EOS id came first in that row).
  assert ro.finish_reason[1] == FINISH_STOP and ro.lengths[1] <= 5
  n = int(ro.lengths[1])
  if eos not in greedy.completion_ids[1, :5]:
    assert tuple(ro.completion_ids[1, n - 3:n]) == seq and ro.completion_mask[1, n - 3:n].all()
  assert ro.finish_reason[0] == FINISH_STOP and ro.lengths[0] <= 3
  # Rows still running keep the loop going to the end.
  if np.any(ro.finish_reason == FINISH_LENGTH):
    assert int(ro.num_steps) == L


def test_bucketing_compiles_once_per_bucket(tiny):
  cfg, _, graphdef, params = tiny
  config = dataclasses.replace(SAMPLE_CFG, max_new_tokens=4, prompt_len_buckets=(8, 16),
                               batch_buckets=(4,))
  sampler = Sampler(graphdef, cfg, config)
  rng = jax.random.key(3)
  outputs = {}
  for lengths, width in [([3, 5], 5), ([7, 2, 8], 10), ([1], 1), ([4, 6, 2], 6)]:
    ids, mask = _prompts(lengths, width, cfg.vocab_size, seed=len(lengths))
    ro = sampler.generate(params, ids, mask, rng)
    assert ro.completion_ids.shape == (len(lengths) * 2, 4)   # padded rows dropped
    assert ro.prompt_ids.shape == (len(lengths) * 2, 8)       # as fed: bucket 8
    outputs[(tuple(lengths), width)] = jax.device_get(ro)
  assert sampler.num_traces == 2                               # one prefill + one decode
  progs = sampler.programs(params, 4, 8)
  assert progs.prefill._cache_size() == 1 and progs.decode._cache_size() == 1

  ids, mask = _prompts([12, 3], 12, cfg.vocab_size)
  assert sampler.generate(params, ids, mask, rng).prompt_ids.shape == (4, 16)
  assert sampler.num_traces == 4                               # new bucket: compiled once
  sampler.generate(params, *_prompts([10], 11, cfg.vocab_size), rng)
  assert sampler.num_traces == 4

  # Padding (prompt columns, batch rows) does not change a row's samples.
  ids, mask = _prompts([4, 6, 2], 6, cfg.vocab_size, seed=3)
  ro = jax.device_get(sampler.generate(params, ids[:2], mask[:2], rng))
  ref = outputs[((4, 6, 2), 6)]
  np.testing.assert_array_equal(ro.completion_ids, ref.completion_ids[:4])
  np.testing.assert_allclose(ro.logprobs, ref.logprobs[:4], atol=1e-5)


def test_bucket_prompts_and_validation():
  config = SamplerConfig(prompt_len_buckets=(4, 8), batch_buckets=(2, 4), pad_id=9)
  ids = np.array([[0, 0, 0, 5, 6], [0, 0, 7, 8, 9], [0, 0, 0, 0, 1]], np.int32)
  mask = (ids > 0).astype(np.int32)
  out_ids, out_mask, b = bucket_prompts(ids, mask, config)
  assert b == 3 and out_ids.shape == (4, 4)
  np.testing.assert_array_equal(out_ids[:3], [[9, 9, 5, 6], [9, 7, 8, 9], [9, 9, 9, 1]])
  np.testing.assert_array_equal(out_mask[3], 0)
  with pytest.raises(ValueError, match="left-padded"):
    bucket_prompts(np.ones((1, 3)), np.array([[1, 1, 0]]), config)
  with pytest.raises(ValueError, match="at least one token"):
    bucket_prompts(np.ones((1, 3)), np.zeros((1, 3)), config)
  with pytest.raises(ValueError):
    SamplerConfig(temperature=0.0)
  assert SamplerConfig(eos_ids=[1, 2], stop_sequences=[[3, 4]]).stop_sequences == ((3, 4),)
