"""Asynchronous off-policy GRPO (`r1jax.rl.async_rollout`, `config.rl.async_staleness`) on
the tiny model and the 8-device CPU mesh."""
import os
import signal

import jax
import numpy as np
import pytest

import grpo_testlib as lib
from r1jax.metrics import read_metrics
from r1jax.rl import async_rollout
from r1jax.rl import trainer as rl_trainer

# 4 steps, beta > 0 (a reference pass), two minibatch updates per step.
KW = dict(num_steps=4, beta=0.05, minibatch_size=8)


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _train(config, workdir, on_step=None, force_async=False):
  """`train` with the setup and per-step traces recorded; `force_async` sends k = 0 through
  `AsyncRollouts` (same mesh) instead of the inline path."""
  rec = {"setup": None, "records": [], "traces": [], "jits": {}}
  with pytest.MonkeyPatch.context() as mp:
    orig = rl_trainer.setup

    def setup(c, w):
      rec["setup"] = orig(c, w)
      return rec["setup"]
    mp.setattr(rl_trainer, "setup", setup)
    for name in ("_make_update", "_make_logprob_fn"):   # keep the jitted functions
      def make(*a, _orig=getattr(rl_trainer, name), _name=name, **kw):
        rec["jits"][_name] = _orig(*a, **kw)
        return rec["jits"][_name]
      mp.setattr(rl_trainer, name, make)
    if force_async:
      mp.setattr(async_rollout, "enabled", lambda rl: True)

    def hook(step, m):
      rec["records"].append(dict(m))
      rec["traces"].append((rec["setup"].sampler.num_traces,
                            *(f._cache_size() for f in rec["jits"].values())))
      if on_step is not None:
        on_step(step, m)
    out = rl_trainer.train(config, workdir, on_step=hook)
  return out, rec


def _same_run(wa, a, wb, b, ignore=("async/", "time/")):
  ra, rb = read_metrics(wa), read_metrics(wb)
  assert [r["step"] for r in ra] == [r["step"] for r in rb]
  for x, y in zip(ra, rb):
    x, y = ({k: v for k, v in lib.deterministic(r).items() if not k.startswith(ignore)}
            for r in (x, y))
    assert x == y, x["step"]
  assert any(r["grad_norm"] > 0 for r in ra)
  for x, y in zip(_leaves(a["state"]), _leaves(b["state"])):
    np.testing.assert_array_equal(x, y)   # params, Adam moments, step


@pytest.fixture(scope="module")
def sync_run(base_workdir, tmp_path_factory):
  w = tmp_path_factory.mktemp("sync")
  out, rec = _train(lib.grpo_config(base_workdir, **KW), w)
  return w, out, rec


def test_k0_through_the_async_queue_equals_the_sync_run_bitwise(base_workdir, tmp_path,
                                                                sync_run):
  out, rec = _train(lib.grpo_config(base_workdir, **KW), tmp_path, force_async=True)
  assert rec["setup"].placement is not None   # really the async path
  assert [r["async/staleness_max"] for r in rec["records"]] == [0.0] * 4
  _same_run(sync_run[0], sync_run[1], tmp_path, out)


@pytest.fixture(scope="module")
def k1_run(base_workdir, tmp_path_factory):
  w = tmp_path_factory.mktemp("k1")
  out, rec = _train(lib.grpo_config(base_workdir, **KW, async_staleness=1), w)
  return w, out, rec


def test_k1_rows_are_at_most_one_version_old_and_corrected(k1_run, sync_run):
  _, out, rec = k1_run
  s = out["setup"]
  assert s.loss_cfg.is_correction == "tis" and s.recompute_old
  recs = rec["records"]
  # Step 0 trains on version 0 (nothing older exists); then every row is one version old.
  assert [r["async/policy_version"] for r in recs] == [0.0, 0.0, 1.0, 2.0]
  assert [r["async/staleness_max"] for r in recs] == [0.0, 1.0, 1.0, 1.0]
  assert [r["async/staleness_frac/1"] for r in recs] == [0.0, 1.0, 1.0, 1.0]
  # Stale rows: the sampler's log-probs differ from the current policy's, so the IS weight
  # (pi_current / pi_behaviour, capped) is not 1 and the sampler-trainer gap is logged.
  assert all(r["is_weight_mean"] != 1.0 and r["pi_old/gap_mean"] > 1e-4 for r in recs[1:])
  # Step 0 and 1 sample with the initial params: the same rollouts as the sync run's step 0,
  # (and step 1's prompts with version 0, which the sync run never sampled).
  sync = read_metrics(sync_run[0])
  assert recs[0]["reward/mean"] == sync[0]["reward/mean"]
  # No recompiles after warm-up (step 0 compiles: the sampler's prefill + decode, one update,
  # one log-prob program for pi_old and the reference).
  assert rec["traces"][0] == (2, 1, 1) and rec["traces"][-1] == rec["traces"][0], rec["traces"]


def test_k1_resume_after_sigterm_is_exact(base_workdir, tmp_path, k1_run):
  config = lib.grpo_config(base_workdir, **KW, async_staleness=1)

  def sigterm_at_2(step, m):
    if step == 2:
      os.kill(os.getpid(), signal.SIGTERM)
  _train(config, tmp_path, on_step=sigterm_at_2)
  assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
  from r1jax.checkpoint import Checkpointer
  with Checkpointer(tmp_path / "checkpoints") as ck:
    assert ck.restore_meta()["async_inflight_versions"] == [1]  # step 2 was launched at 1
  out, rec = _train(config, tmp_path)
  assert len(rec["records"]) == 2   # resumed at step 2
  _same_run(k1_run[0], k1_run[1], tmp_path, out, ignore=("time/",))


@pytest.mark.slow
def test_disjoint_sub_meshes_push_params_device_to_device(base_workdir, tmp_path):
  config = lib.grpo_config(base_workdir, num_steps=2, mesh=(-1, 1, 1), async_staleness=1,
                           async_sampler_devices=4)
  out, rec = _train(config, tmp_path)
  s = out["setup"]
  trainer_devs, sampler_devs = set(s.mesh.devices.flat), set(s.placement.mesh.devices.flat)
  assert len(trainer_devs) == len(sampler_devs) == 4 and not trainer_devs & sampler_devs
  assert all(set(x.sharding.device_set) == trainer_devs for x in jax.tree.leaves(out["state"]))
  # The push is a device-to-device transfer: it never goes through the host.
  with jax.transfer_guard_device_to_host("disallow"), jax.transfer_guard_host_to_device("disallow"):
    pushed = jax.block_until_ready(s.placement.push(out["state"].params))
  assert all(set(x.sharding.device_set) == sampler_devs for x in jax.tree.leaves(pushed))
  for x, y in zip(_leaves(pushed), _leaves(out["state"].params)):
    np.testing.assert_array_equal(x, y)
  recs = rec["records"]
  assert [r["async/staleness_max"] for r in recs] == [0.0, 1.0]
  assert all(np.isfinite(r["loss"]) for r in recs)
