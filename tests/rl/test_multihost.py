"""Multi-host GRPO: one step with 2 JAX processes x 4 CPU devices (loopback, gloo) equals
the same step in one process with 8 devices.

The 2-process run exercises the trainer's multi-host path (see
r1jax/rl/experience.py): every process builds the same global prompt batch, the
sampler shards it over the global mesh, each process decodes and scores its own
rows, rewards are all-gathered, and host arrays are assembled into global arrays
with `sharding.put_replicated_value`; orbax writes one checkpoint from both.
"""
import json
import pathlib

import pytest

import grpo_testlib as lib
from multiprocess_testlib import run_processes
from r1jax.metrics import read_metrics
from r1jax.rl import trainer as rl_trainer

SCRIPT = pathlib.Path(__file__).with_name("multihost_grpo_step.py")


@pytest.mark.multiprocess
def test_two_processes_match_one_process(base_workdir, tmp_path):
  out = tmp_path / "out"
  # The single-process reference runs meanwhile (8 devices from tests/conftest.py).
  single = run_processes(
      SCRIPT, [f"--base={base_workdir}", f"--workdir={tmp_path / 'multi'}", f"--out={out}"], tmp_path,
      lambda: rl_trainer.train(lib.grpo_config(base_workdir, **lib.MULTIHOST_KW), tmp_path / "single"))

  want = lib.deterministic(single["last"])
  for i in range(2):  # both processes computed the same (global) metrics
    got = json.loads((tmp_path / f"out.{i}.json").read_text())
    assert set(got) == set(want)
    for k in want:
      assert got[k] == pytest.approx(want[k], rel=1e-4, abs=1e-6), k
  # Rewards come from the sampled text: the same completions, so exactly the same values.
  for k in [k for k in want if k.startswith("reward/") or k.endswith("_rate")
            or k.startswith("completion_len")]:
    assert json.loads((tmp_path / "out.0.json").read_text())[k] == want[k], k
  assert want["grad_norm"] > 0
  # Process 0 logged the step; one checkpoint was written by both processes together.
  (rec,) = read_metrics(tmp_path / "multi")
  assert rec["reward/mean"] == want["reward/mean"]
  assert (tmp_path / "multi" / "checkpoints" / "1").is_dir()

  lib.assert_params_match(f"{out}.npz", single["state"].params)
