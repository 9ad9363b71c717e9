"""One GRPO step as one process of a multi-process JAX run on loopback (used by test_multihost.py).

  python tests/rl/multihost_grpo_step.py --process_id=0 --num_processes=2 --port=PORT \
      --local_devices=4 --base=BASE_WORKDIR --workdir=WORKDIR --out=OUT_PREFIX

Every process runs `r1jax.rl.trainer.train` (CPU devices, gloo collectives) on
the same config as the single-process reference in the test, then writes
OUT_PREFIX.<process_id>.json (the last logged metrics) and, from process 0,
OUT_PREFIX.npz (the updated parameters, gathered to the host).
"""
import argparse
import os
import sys


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--process_id", type=int, required=True)
  ap.add_argument("--num_processes", type=int, default=2)
  ap.add_argument("--port", type=int, required=True)
  ap.add_argument("--local_devices", type=int, default=4)
  ap.add_argument("--base", required=True)
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--out", required=True)
  args = ap.parse_args()

  os.environ["JAX_PLATFORMS"] = "cpu"
  import jax
  jax.config.update("jax_num_cpu_devices", args.local_devices)
  # The default CPU client has no cross-process collectives; gloo provides them over TCP.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=f"localhost:{args.port}",
                             num_processes=args.num_processes, process_id=args.process_id,
                             initialization_timeout=120)
  assert jax.process_count() == args.num_processes
  assert jax.device_count() == args.num_processes * args.local_devices

  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import grpo_testlib as lib
  from r1jax.rl import trainer as rl_trainer

  config = lib.grpo_config(args.base, **lib.MULTIHOST_KW)
  out = rl_trainer.train(config, args.workdir)
  lib.dump_process_results(out, args.out, args.process_id)
  jax.distributed.shutdown()


if __name__ == "__main__":
  main()
