"""Asynchronous GRPO (k = 1) with 2 JAX processes x 4 CPU devices equals the same run in one
process with 8 devices: on a shared mesh and on 2 + 2 sampler devices per process.

Run as a script, this file is one process of the multi-process run:
  python tests/rl/test_async_multihost.py --process_id=0 --num_processes=2 --port=PORT \
      --local_devices=4 --base=BASE --workdir=WORKDIR --out=OUT --sampler_devices=0
"""
import argparse
import json
import os
import pathlib
import sys

SCRIPT = pathlib.Path(__file__)


def _config(base, sampler_devices):
  import grpo_testlib as lib
  mesh = (-1, 1, 1) if sampler_devices else (2, 2, 2)
  return lib.grpo_config(base, num_steps=3, beta=0.05, minibatch_size=8, mesh=mesh,
                         async_staleness=1, async_sampler_devices=sampler_devices)


try:
  import pytest
except ImportError:  # the script side needs no pytest
  pytest = None

if pytest is not None and __name__ != "__main__":
  import grpo_testlib as lib
  from multiprocess_testlib import run_processes
  from r1jax.rl import trainer as rl_trainer

  @pytest.mark.multiprocess
  # Slow (1-2 min each on 2 cores): `pytest -m slow`. The default suite keeps the single-process
  # async tests (k=0 bitwise, k=1, exact resume).
  @pytest.mark.slow
  @pytest.mark.parametrize("sampler_devices", [0, 4])
  def test_two_processes_match_one_process(base_workdir, tmp_path, sampler_devices):
    out = tmp_path / "out"
    single = run_processes(
        SCRIPT, [f"--base={base_workdir}", f"--workdir={tmp_path / 'multi'}", f"--out={out}",
                 f"--sampler_devices={sampler_devices}"], tmp_path,
        lambda: rl_trainer.train(_config(base_workdir, sampler_devices), tmp_path / "single"),
        timeout=600)
    want = lib.deterministic(single["last"])
    assert want["async/staleness_max"] == 1.0 and want["grad_norm"] > 0
    for i in range(2):
      got = json.loads((tmp_path / f"out.{i}.json").read_text())
      assert set(got) == set(want)
      for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-4, abs=1e-6), k
    lib.assert_params_match(f"{out}.npz", single["state"].params)


def main():
  ap = argparse.ArgumentParser()
  for name in ("process_id", "num_processes", "port", "local_devices", "sampler_devices"):
    ap.add_argument(f"--{name}", type=int, default=0)
  for name in ("base", "workdir", "out"):
    ap.add_argument(f"--{name}", required=True)
  args = ap.parse_args()
  os.environ["JAX_PLATFORMS"] = "cpu"
  import jax
  jax.config.update("jax_num_cpu_devices", args.local_devices)
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=f"localhost:{args.port}",
                             num_processes=args.num_processes, process_id=args.process_id,
                             initialization_timeout=120)
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import grpo_testlib as lib
  from r1jax.rl import trainer as rl_trainer
  out = rl_trainer.train(_config(args.base, args.sampler_devices), args.workdir)
  lib.dump_process_results(out, args.out, args.process_id)
  jax.distributed.shutdown()


if __name__ == "__main__":
  main()
