"""A few reward-model steps as one process of a multi-process JAX run on loopback (used by test_multihost_rm.py).

  python tests/rm/multihost_rm.py --process_id=0 --num_processes=2 --port=PORT --local_devices=4 \
      --data=DATA_DIR --workdir=WORKDIR --out=OUT_PREFIX

Every process runs `r1jax.rm.train.train` on the config of `rm_testlib.multihost_setup(DATA_DIR)`, then writes
OUT_PREFIX.<process_id>.json (the final metrics) and, from process 0, OUT_PREFIX.npz (the parameters, gathered).
"""
import argparse
import json
import os
import sys


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--process_id', type=int, required=True)
  ap.add_argument('--num_processes', type=int, default=2)
  ap.add_argument('--port', type=int, required=True)
  ap.add_argument('--local_devices', type=int, default=4)
  ap.add_argument('--data', required=True)
  ap.add_argument('--workdir', required=True)
  ap.add_argument('--out', required=True)
  args = ap.parse_args()

  os.environ['JAX_PLATFORMS'] = 'cpu'
  import jax
  jax.config.update('jax_num_cpu_devices', args.local_devices)
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')   # cross-process collectives on CPU
  jax.distributed.initialize(coordinator_address=f'localhost:{args.port}', num_processes=args.num_processes,
                             process_id=args.process_id, initialization_timeout=120)
  assert jax.process_count() == args.num_processes

  import numpy as np
  from jax.experimental import multihost_utils

  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import rm_testlib as lib
  from r1jax.rm import train as rm_train

  config, opts = lib.multihost_setup(args.data)
  out = rm_train.train(config, args.workdir, opts)
  leaves = [np.asarray(multihost_utils.process_allgather(x, tiled=True)) for x in jax.tree.leaves(out['params'])]
  with open(f'{args.out}.{args.process_id}.json', 'w') as f:
    json.dump({k: v for k, v in out.items() if isinstance(v, (int, float))}, f)
  if args.process_id == 0:
    np.savez(f'{args.out}.npz', *leaves)
  jax.distributed.shutdown()


if __name__ == '__main__':
  main()
