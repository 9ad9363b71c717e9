"""TrainState, optimiser and the jitted step: no recompiles, skip non-finite, accumulation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import sharding
from r1jax.models import create_model, get_model_config, merge_params, split_params
from r1jax.sft.trainer import make_loss_fn, _target_weights
from r1jax.train_state import (_split_microbatches, init_train_state, jit_train_step,
                               make_optimizer, make_schedule, make_train_step, state_shardings)

CFG = get_model_config("tiny", num_layers=2, vocab_size=64)


def _batch(b=8, t=16, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, CFG.vocab_size, (b, t)).astype(np.int32)
  loss_mask = np.zeros((b, t), np.float32)
  loss_mask[:, t // 2:] = 1
  return {"input_ids": ids, "loss_mask": loss_mask,
          "positions": np.broadcast_to(np.arange(t), (b, t)).astype(np.int32),
          "segment_ids": np.ones((b, t), np.int32)}


def _setup(mesh_shape=(2, 2, 2), accum=1, lr=1e-2, rows=8):
  mesh = sharding.make_mesh(mesh_shape)
  rules = sharding.ShardingRules()
  graphdef, params = split_params(create_model(CFG, 0, mesh, rules))
  opt, sched = make_optimizer({"learning_rate": lr, "warmup_steps": 2, "max_grad_norm": 1.0}, 10)
  state = init_train_state(params, opt, 0)
  prepare = lambda b: {**b, "num_targets": jnp.sum(_target_weights(b, False))}
  step = make_train_step(make_loss_fn(graphdef, False), opt, sched, grad_accum_steps=accum,
                         prepare_batch=prepare)
  b = _batch(rows)
  batch_sh = {k: sharding.batch_sharding(mesh, rules, v.shape) for k, v in b.items()}
  return mesh, rules, state, jit_train_step(step, state_shardings(state, mesh), batch_sh, mesh)


def test_second_call_does_not_recompile_and_loss_drops():
  mesh, rules, state, jitted = _setup()
  losses = []
  for i in range(4):
    batch = sharding.put_global_batch(_batch(), mesh, rules)
    state, m = jitted(state, batch)
    losses.append(float(m["loss"]))
    if i == 0:
      size_after_first = jitted._cache_size()
  assert jitted._cache_size() == size_after_first == 1
  assert losses[-1] < losses[0]
  assert int(state.step) == 4
  # Parameters keep their shardings through the donated step.
  q = state.params["layers"][0]["attn"]["q_proj"]
  assert q.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor", None)


def test_grad_accumulation_equals_full_batch():
  _, _, s1, step1 = _setup(accum=1)
  mesh, rules, s4, step4 = _setup(accum=4)
  batch = _batch()
  s1, m1 = step1(s1, sharding.put_global_batch(batch, mesh, rules))
  s4, m4 = step4(s4, sharding.put_global_batch(batch, mesh, rules))
  np.testing.assert_allclose(m1["loss"], m4["loss"], rtol=1e-5)
  np.testing.assert_allclose(m1["grad_norm"], m4["grad_norm"], rtol=1e-4)
  for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s4.params)):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)


def test_microbatches_interleave_whole_groups():
  x = {"x": jnp.arange(16), "n": jnp.float32(3.0)}
  m = _split_microbatches(x, 2, group_size=4)
  assert m["x"].tolist() == [[0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]]
  assert m["n"].tolist() == [3.0, 3.0]
  assert _split_microbatches(x, 4)["x"][1].tolist() == [1, 5, 9, 13]
  with pytest.raises(ValueError, match="not divisible"):
    _split_microbatches(x, 4, group_size=3)


def test_grad_accumulation_keeps_microbatches_sharded():
  """Each data-parallel device computes its own rows of every microbatch: the compiled step
  gathers no batch (contiguous microbatches made XLA all-gather the batch and run every
  microbatch on every device), and matches the step without accumulation."""
  mesh, rules, s1, step1 = _setup((8, 1, 1), accum=1, rows=32)
  _, _, s2, step2 = _setup((8, 1, 1), accum=2, rows=32)
  batch = sharding.put_global_batch(_batch(32), mesh, rules)
  hlo = step2.lower(s2, batch).compile().as_text()
  assert "all-gather" not in hlo
  s1, m1 = step1(s1, batch)
  s2, m2 = step2(s2, sharding.put_global_batch(_batch(32), mesh, rules))
  np.testing.assert_allclose(m1["loss"], m2["loss"], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)


def test_nonfinite_loss_skips_update():
  mesh = sharding.make_mesh((8, 1, 1))
  graphdef, params = split_params(create_model(CFG, 0))
  opt, _ = make_optimizer({"learning_rate": 1e-2}, 10)
  state = init_train_state(params, opt, 0)

  def bad_loss(p, batch):
    return jnp.sum(p["embedding"]) * batch["scale"], {}

  step = jax.jit(make_train_step(bad_loss, opt))
  new, m = step(state, {"scale": jnp.float32(jnp.nan)})
  assert int(m["skipped"]) == 1 and int(new.step) == 1
  for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(a, b)
  new2, m2 = step(state, {"scale": jnp.float32(1.0)})
  assert int(m2["skipped"]) == 0
  assert not np.allclose(new2.params["embedding"], state.params["embedding"])


def test_schedule_warmup_and_errors():
  s = make_schedule({"learning_rate": 1.0, "warmup_steps": 10, "schedule": "cosine",
                     "end_lr_factor": 0.0}, 110)
  assert float(s(0)) == 0.0 and abs(float(s(10)) - 1.0) < 1e-6 and float(s(110)) < 1e-6
  with pytest.raises(ValueError, match="schedule"):
    make_schedule({"learning_rate": 1.0, "schedule": "exp"}, 10)
  with pytest.raises(ValueError, match="optimizer"):
    make_optimizer({"learning_rate": 1.0, "name": "sgdx"}, 10)
