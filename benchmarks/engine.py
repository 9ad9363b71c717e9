"""Continuous-batching engine vs the static sampler: useful tokens/s at the same slot count.

    python benchmarks/engine.py                       # tiny model, 64 rows, 16 slots
    python benchmarks/engine.py --config 25m --rows 128 --slots 32 --max_new_tokens 512

Workload: R rows (R / G prompts x G samples) whose lengths are drawn from a log-normal
with p90 = 8 x median (R1-like long tails: sigma = ln 8 / 1.2816), clipped to
[1, max_new_tokens]. Rows end exactly at their drawn length: the engine gets them as
per-row budgets; the static sampler runs the R rows in batches of N (the slot count)
and each batch decodes until its longest row ends, i.e. a `Sampler` with
max_new_tokens = that batch's longest row (what EOS would do; compiled in the warm-up).
Useful tokens = sum of the lengths, the same for both. Idle fraction = share of decode
slot-steps that produce no useful token: 1 - (useful - R) / (N x decode steps) (token 0
of every row is drawn in the prefill, not in a decode step).
Times are the best of --repeats (one warm-up first); the load average is printed next
to every figure because the machine may be shared.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time

import jax
import numpy as np

from r1jax.models import create_model, get_model_config, split_params
from r1jax.rollout import Sampler, SamplerConfig
from r1jax.rollout.engine import Engine, EngineConfig


def lognormal_lengths(n: int, median: float, cap: int, seed: int) -> np.ndarray:
  sigma = math.log(8.0) / 1.2816      # p90 / median = exp(1.2816 sigma) = 8
  x = np.random.default_rng(seed).lognormal(math.log(median), sigma, size=n)
  return np.clip(np.round(x), 1, cap).astype(np.int32)


def _best(fn, repeats: int) -> float:
  fn()
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t0)
  return best


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--config", default="tiny")
  ap.add_argument("--rows", type=int, default=64)
  ap.add_argument("--group", type=int, default=4)
  ap.add_argument("--slots", type=int, default=16)
  ap.add_argument("--prompt_len", type=int, default=32)
  ap.add_argument("--median", type=float, default=16)
  ap.add_argument("--max_new_tokens", type=int, default=256)
  ap.add_argument("--refill_every", default="1,8")
  ap.add_argument("--repeats", type=int, default=2)
  ap.add_argument("--seed", type=int, default=0)
  args = ap.parse_args()
  if args.rows % args.group or args.slots % args.group:
    raise SystemExit("--rows and --slots must be multiples of --group")

  # The benchmark shapes of benchmarks/sampler.py (tiny, 25m, small; this script's directory
  # is on sys.path), else any model preset.
  from sampler import CONFIGS as SHAPES  # pylint: disable=import-outside-toplevel
  cfg = SHAPES[args.config]() if args.config in SHAPES else get_model_config(args.config)
  graphdef, params = split_params(create_model(cfg, 0))
  b, g, n, cap = args.rows // args.group, args.group, args.slots, args.max_new_tokens
  rng = np.random.default_rng(args.seed)
  ids = rng.integers(1, cfg.vocab_size, size=(b, args.prompt_len)).astype(np.int32)
  mask = np.ones_like(ids)
  lengths = lognormal_lengths(args.rows, args.median, cap, args.seed)
  useful = int(lengths.sum())
  key = jax.random.key(0)
  base = SamplerConfig(num_samples=g, max_new_tokens=cap, temperature=1.0,
                       cache_dtype="float32")
  print(f"[{args.config}] {cfg.num_params() / 1e6:.1f}M params | {args.rows} rows = {b} prompts x "
        f"G={g}, {n} slots, prompt {args.prompt_len}, L={cap} | lengths median "
        f"{np.median(lengths):.0f}, p90 {np.percentile(lengths, 90):.0f}, max {lengths.max()}, "
        f"useful tokens {useful}")

  # Static: batches of n rows (n / g prompts), each until its longest row ends.
  per = n // g
  batches = [(slice(i, i + per), int(lengths[i * g:(i + per) * g].max()))
             for i in range(0, b, per)]
  samplers = {m: Sampler(graphdef, cfg, dataclasses.replace(base, max_new_tokens=m))
              for m in {m for _, m in batches}}

  def static():
    for sl, m in batches:
      jax.block_until_ready(samplers[m].generate(params, ids[sl], mask[sl], key).completion_ids)
  t_static = _best(static, args.repeats)
  static_steps = sum(m for _, m in batches)
  idle_static = 1 - (useful - args.rows) / (n * static_steps)
  print(f"static     | {useful / t_static:8.0f} useful tok/s | {t_static:6.2f} s | decode steps "
        f"{static_steps:5d}, idle {idle_static:5.1%} | load {os.getloadavg()[0]:.2f}")

  for mode in ("device", "host"):
    for every in (int(k) for k in args.refill_every.split(",")):
      engine = Engine(graphdef, cfg, base, engine=EngineConfig(num_slots=n, refill_every=every,
                                                               refill=mode))
      def run():
        jax.block_until_ready(engine.generate(params, ids, mask, key, budgets=lengths)
                              .completion_ids)
      t = _best(run, args.repeats)
      steps = int(engine.last_decode_steps)
      print(f"engine {mode:6s} k={every:<3d} | {useful / t:8.0f} useful tok/s | {t:6.2f} s | "
            f"decode steps {steps:5d}, idle {1 - (useful - args.rows) / (n * steps):5.1%} | "
            f"x{t_static / t:.2f} vs static | load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
  from r1jax import runtime
  print("r1jax runtime:", runtime.configure_cpu())  # as `python -m r1jax.main` does
  main()
