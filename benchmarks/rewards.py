"""Reward throughput: verifications/s for math and code with 2 pool workers, and p50/p99/max item latency.

Usage: python benchmarks/rewards.py [--data_dir ../shared/data] [--workers 2] [--math_n 1000] [--code_n 164]

Math items are MATH-500 solutions checked against their own answer (mostly the fast paths) and against a shuffled
answer (wrong: usually falls through to math-verify/sympy), half each. Code items are HumanEval canonical solutions
run in the sandbox (bubblewrap + seccomp + cgroup, two sandboxes per item: program server and tester). Latency is
dispatch-to-result per item, measured by the pool. The 1-minute load average is printed with every figure (the
machine may be shared).
"""
import argparse
import json
import os
import random
import time
from pathlib import Path

import numpy as np

from r1jax.rewards import code as rcode
from r1jax.rewards import math as rmath
from r1jax.rewards import registry
from r1jax.rewards.pool import RewardPool


def _load(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _report(name, results, elapsed):
  lat = np.asarray([r.latency_s for r in results]) * 1e3
  statuses = {s: sum(r.status == s for r in results) for s in {r.status for r in results}}
  passed = sum(r.status == 'ok' and r.value == 1.0 for r in results)
  print(f'{name:5s}: {len(results)} items in {elapsed:.2f}s = {len(results) / elapsed:.1f} verifications/s | '
        f'latency ms p50 {np.percentile(lat, 50):.1f} p99 {np.percentile(lat, 99):.1f} max {lat.max():.1f} | '
        f'statuses {statuses} | reward 1: {passed} | load average {os.getloadavg()[0]:.2f}')


def main():
  p = argparse.ArgumentParser()
  default = os.environ.get('R1JAX_DATA_DIR', str(Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data'))
  p.add_argument('--data_dir', default=default)
  p.add_argument('--workers', type=int, default=2)
  p.add_argument('--math_n', type=int, default=1000)
  p.add_argument('--code_n', type=int, default=164)
  p.add_argument('--timeout_s', type=float, default=10.0)
  args = p.parse_args()
  data = Path(args.data_dir)
  rng = random.Random(0)
  m5 = _load(data / 'math500' / 'test.jsonl')
  math_items = []
  for i in range(args.math_n):
    row = m5[i % len(m5)]
    gold = row['answer'] if i % 2 == 0 else rng.choice(m5)['answer']
    math_items.append(((rmath.math_reward, row['solution'], {'answer': gold}, {}), {}))
  he = _load(data / 'humaneval' / 'test.jsonl')[:args.code_n]
  code_items = [((rcode.code_reward, r['prompt'] + r['canonical_solution'],
                  {'tests': r['test'], 'entry_point': r['entry_point']}, {'extract': False, 'timeout_s': 5.0}), {})
                for r in he]
  with RewardPool(num_workers=args.workers, timeout_s=args.timeout_s) as pool:
    t0 = time.monotonic()
    pool.wait_ready()
    print(f'pool of {args.workers} workers ready in {time.monotonic() - t0:.2f}s')
    for name, items in (('math', math_items), ('code', code_items)):
      if not items:
        continue
      t0 = time.monotonic()
      res = pool.map(registry.score_one, items)
      _report(name, res, time.monotonic() - t0)
    print(f'pool counters: {dict(pool.counters)}')


if __name__ == '__main__':
  main()
