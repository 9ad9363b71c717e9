"""Continuous-batching engine: parity with the static sampler (greedy and sampled, one
device and the 8-device mesh), refill in both modes, budgets, and no recompiles."""
import dataclasses

import jax
import numpy as np
import pytest

from r1jax.models import get_model_config
from r1jax.models.factory import abstract_model, create_model, param_shardings, split_params
from r1jax.rollout import FINISH_LENGTH, FINISH_STOP, Sampler, SamplerConfig
from r1jax.rollout import engine as engine_lib
from r1jax.rollout.engine import AUTO_SLOTS, Engine, EngineConfig, auto_slots, slot_bytes
from r1jax.sharding import ShardingRules, make_mesh

from test_sampler import _prompts  # noqa: E402 (left-padded random prompts)

L = 8
GREEDY = SamplerConfig(num_samples=2, max_new_tokens=L, greedy=True, cache_dtype="float32")
SAMPLED = SamplerConfig(num_samples=2, max_new_tokens=L, temperature=0.9, top_k=64,
                        cache_dtype="float32")


@pytest.fixture(scope="module")
def tiny():
  cfg = get_model_config("tiny", num_layers=2)
  graphdef, params = split_params(create_model(cfg, 0))
  return cfg, graphdef, params


@pytest.fixture(scope="module")
def prompts(tiny):
  return _prompts([3, 5, 2, 6], 6, tiny[0].vocab_size)


def _with_stops(tiny, prompts, config):
  """`config` with EOS ids that end rows at different steps (so slots really refill)."""
  cfg, graphdef, params = tiny
  ro = jax.device_get(Sampler(graphdef, cfg, config).generate(params, *prompts,
                                                              jax.random.key(7)))
  eos = tuple(sorted({int(ro.completion_ids[0, 1]), int(ro.completion_ids[3, 4])}))
  return dataclasses.replace(config, eos_ids=eos)


def _assert_same(a, b):
  for f in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "lengths",
            "finish_reason"):
    np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
  np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5, rtol=0)
  np.testing.assert_allclose(a.sampling_logprobs, b.sampling_logprobs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("base", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
@pytest.mark.parametrize("refill", ["device", "host"])
def test_engine_matches_static_sampler(tiny, prompts, base, refill):
  """3 slots for 8 rows: rows end at different steps and slots are refilled, yet every
  row's tokens, mask, finish reason and log-probs equal the static sampler's."""
  cfg, graphdef, params = tiny
  config = _with_stops(tiny, prompts, base)
  ref = jax.device_get(Sampler(graphdef, cfg, config).generate(params, *prompts,
                                                               jax.random.key(7)))
  assert len(set(ref.lengths.tolist())) > 1 and (ref.finish_reason == FINISH_STOP).any()
  engine = Engine(graphdef, cfg, config, engine=EngineConfig(num_slots=3, refill_every=2,
                                                             refill=refill))
  ro = jax.device_get(engine.generate(params, *prompts, jax.random.key(7)))
  _assert_same(ro, ref)
  assert engine.programs(params, 4, 6).slots == 3
  # 8 rows through 3 slots: more decode steps than one static batch, fewer than 3 in a row.
  assert L <= int(engine.last_decode_steps) < 3 * L


@pytest.mark.parametrize("mesh_shape", [(2, 2, 2), (8, 1, 1)])
def test_engine_sharded_matches_static(tiny, prompts, mesh_shape):
  cfg, _, params = tiny
  config = _with_stops(tiny, prompts, SAMPLED)
  ref = jax.device_get(Sampler(tiny[1], cfg, config).generate(params, *prompts,
                                                              jax.random.key(7)))
  mesh, rules = make_mesh(mesh_shape), ShardingRules()
  abstract = abstract_model(cfg, mesh, rules)
  graphdef, _ = split_params(abstract)
  sharded = jax.device_put(params, param_shardings(abstract, mesh, rules))
  engine = Engine(graphdef, cfg, config, mesh, rules, EngineConfig(num_slots=4, refill_every=1))
  ro = engine.generate(sharded, *prompts, jax.random.key(7))
  assert len(ro.completion_ids.sharding.device_set) == 8
  _assert_same(jax.device_get(ro), ref)


def test_budgets_end_rows_early(tiny, prompts):
  cfg, graphdef, params = tiny
  ref = jax.device_get(Sampler(graphdef, cfg, SAMPLED).generate(params, *prompts,
                                                                jax.random.key(7)))
  budgets = np.array([1, 8, 3, 5, 2, 7, 4, 6])
  engine = Engine(graphdef, cfg, SAMPLED, engine=EngineConfig(num_slots=2, refill_every=1))
  ro = jax.device_get(engine.generate(params, *prompts, jax.random.key(7), budgets=budgets))
  np.testing.assert_array_equal(ro.lengths, budgets)
  assert np.all(ro.finish_reason == FINISH_LENGTH)
  for i, n in enumerate(budgets):   # the budget cuts the same row short, nothing else
    np.testing.assert_array_equal(ro.completion_ids[i, :n], ref.completion_ids[i, :n])
    assert np.all(ro.completion_ids[i, n:] == SAMPLED.pad_id)
  with pytest.raises(ValueError, match="budgets"):
    engine.generate(params, *prompts, jax.random.key(7), budgets=np.full(8, L + 1))


@pytest.mark.parametrize("refill", ["device", "host"])
def test_engine_no_recompiles(tiny, refill):
  """Calls with different prompts, lengths and keys in one bucket: traced once each."""
  cfg, graphdef, params = tiny
  config = dataclasses.replace(SAMPLED, eos_ids=(5, 9), prompt_len_buckets=(8,),
                               batch_buckets=(4,))
  engine = Engine(graphdef, cfg, config, engine=EngineConfig(num_slots=3, refill=refill))
  for i, (lengths, width) in enumerate([([3, 5], 5), ([7, 2, 8], 8), ([1], 1), ([4, 6], 6)]):
    ids, mask = _prompts(lengths, width, cfg.vocab_size, seed=i)
    ro = engine.generate(params, ids, mask, jax.random.key(i))
    assert ro.completion_ids.shape == (2 * len(lengths), L)
    if i == 0:
      traces = engine.num_traces
  assert traces == 3 and engine.num_traces == 3   # prefill, run, finish
  progs = engine.programs(params, 4, 8)
  for fn in (progs.prefill, progs.run, progs.finish, progs.init):
    assert fn._cache_size() == 1


def test_engine_config_validation():
  with pytest.raises(ValueError, match="refill"):
    EngineConfig(refill="sometimes")
  with pytest.raises(ValueError, match="num_slots"):
    EngineConfig(num_slots=-1)
  with pytest.raises(ValueError, match="num_slots"):
    EngineConfig(num_slots="many")
  with pytest.raises(ValueError, match="memory_fraction"):
    EngineConfig(memory_fraction=0.0)


def _assert_bitwise(a, b):
  for f in dataclasses.fields(a):
    np.testing.assert_array_equal(getattr(a, f.name), getattr(b, f.name), err_msg=f.name)


@pytest.mark.parametrize("slots", ["auto", 8, 100])
def test_slot_per_row_is_one_static_wave(tiny, prompts, slots):
  """A slot for every row (auto within the budget, or num_slots >= R): the call runs the
  static sampler's programs, so every field is bitwise the static sampler's."""
  cfg, graphdef, params = tiny
  config = _with_stops(tiny, prompts, SAMPLED)
  ref = jax.device_get(Sampler(graphdef, cfg, config).generate(params, *prompts,
                                                               jax.random.key(7)))
  engine = Engine(graphdef, cfg, config, engine=EngineConfig(num_slots=slots))
  ro = jax.device_get(engine.generate(params, *prompts, jax.random.key(7)))
  _assert_bitwise(ro, ref)
  assert engine.last_static and not engine._programs and engine.num_traces == 2
  assert int(engine.last_decode_steps) == int(ref.num_steps) - 1
  # Per-row budgets need the slots: the same engine decodes them continuously.
  ro = jax.device_get(engine.generate(params, *prompts, jax.random.key(7), budgets=np.full(8, L)))
  assert not engine.last_static
  _assert_same(ro, ref)


def test_auto_slots_arithmetic():
  assert auto_slots(rows=8, per_slot=10, budget=80) == 8      # every row fits
  assert auto_slots(rows=8, per_slot=10, budget=1000) == 8
  assert auto_slots(rows=8, per_slot=10, budget=79) == 7
  assert auto_slots(rows=64, per_slot=10, budget=395, multiple=8) == 32   # whole shards
  assert auto_slots(rows=8, per_slot=10, budget=5) == 1      # never 0
  cfg = get_model_config("tiny", num_layers=2)
  per = slot_bytes(cfg, 100, "float32")
  assert per == 2 * 2 * 100 * cfg.num_kv_heads * cfg.head_dim * 4 + 400
  assert EngineConfig(num_slots="auto").num_slots == AUTO_SLOTS == EngineConfig().num_slots


def test_auto_slots_under_a_small_budget_refill(tiny, prompts, monkeypatch):
  """'auto' with a KV budget of 3 slots (the host budget on CPU, then a device's
  bytes_limit minus the params): 3 slots for 8 rows, continuous, same rows as static."""
  cfg, graphdef, params = tiny
  config = _with_stops(tiny, prompts, SAMPLED)
  ref = jax.device_get(Sampler(graphdef, cfg, config).generate(params, *prompts,
                                                               jax.random.key(7)))
  per = slot_bytes(cfg, 6 + L, config.cache_dtype)
  engine = Engine(graphdef, cfg, config, engine=EngineConfig(host_kv_bytes=3 * per + 1))
  ro = jax.device_get(engine.generate(params, *prompts, jax.random.key(7)))
  assert not engine.last_static and engine.programs(params, 4, 6).slots == 3
  _assert_same(ro, ref)
  # With memory stats: fraction * bytes_limit - params' bytes on the device.
  pbytes = sum(x.nbytes for x in jax.tree.leaves(params))
  monkeypatch.setattr(engine_lib, "_memory_stats", lambda dev: {"bytes_limit": 4 * (pbytes + 5 * per)})
  eng = EngineConfig(memory_fraction=0.25)
  assert engine_lib.kv_budget(params, None, None, eng) == (5 * per, 1)
  engine = Engine(graphdef, cfg, config, engine=eng)
  assert engine.num_slots(params, 4, 6) == 5


def test_auto_slots_no_recompiles(tiny):
  cfg, graphdef, params = tiny
  config = dataclasses.replace(SAMPLED, eos_ids=(5, 9), prompt_len_buckets=(8,),
                               batch_buckets=(4,))
  for budget in (1 << 30, 3 * slot_bytes(cfg, 8 + L, "float32")):   # static wave; 3 slots
    engine = Engine(graphdef, cfg, config, engine=EngineConfig(host_kv_bytes=budget))
    for i, (lengths, width) in enumerate([([3, 5], 5), ([7, 2, 8], 8), ([1], 1)]):
      engine.generate(params, *_prompts(lengths, width, cfg.vocab_size, seed=i),
                      jax.random.key(i))
      if i == 0:
        traces = engine.num_traces
    assert traces == engine.num_traces in (2, 3)
