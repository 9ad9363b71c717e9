"""GRPO steps per hour, synchronous against asynchronous rollouts (`rl.async_staleness`).

    python benchmarks/async_rl.py                          # k = 0, 1, 2; shared mesh and 4 + 4
    python benchmarks/async_rl.py --ks 0,1 --steps 6 --layouts shared

The tiny R1-Zero preset (configs/r1_zero.py: 16 prompts x 8 samples x 64 new tokens,
here with `--prompts` / `--new_tokens` overrides) on a throw-away base model (one pretrain
step, as benchmarks/grpo_step.py), on 8 virtual CPU devices. Layouts:
  shared   sampler and trainer on the same 8 devices (async_sampler_devices = 0)
  split    the trainer on devices 0-3, the sampler on 4-7 (async_sampler_devices = 4),
           params pushed with jax.device_put after every update
Steps/hour = 3600 x (steps after warm-up) / their wall time, where warm-up is the first
k + 2 steps (compilation, and the pipeline filling). The load average is printed next to
every figure: on a shared 2-core machine, 8 "devices" are threads on the same 2 cores, so
disjoint sub-meshes cannot run in parallel there and the figures are dominated by noise
and by the extra pi_old log-prob pass that stale rollouts need (TIS).
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import pathlib
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)

REPO = pathlib.Path(__file__).resolve().parents[1]


def _grpo_step_module():
  spec = importlib.util.spec_from_file_location("grpo_step_bench", REPO / "benchmarks" /
                                                "grpo_step.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def run(base: str, tmp: str, k: int, layout: str, args) -> tuple[float, float, dict]:
  from r1jax.rl import trainer as rl_trainer
  c = _grpo_step_module()._r1_zero_tiny()
  c.init_from = base
  c.template = "r1_zero_bare"
  c.rl.update(num_prompts=args.prompts, max_new_tokens=args.new_tokens, async_staleness=k,
              async_sampler_devices=4 if layout == "split" else 0)
  c.rl.loss.beta = 0.0
  c.eval.every = 0
  c.train.num_steps = args.steps
  c.train.checkpoint_every = 10 ** 6
  stamps, records = [], []

  def on_step(step, m):
    stamps.append(time.perf_counter())
    records.append(m)
  rl_trainer.train(c, os.path.join(tmp, f"grpo_{layout}_{k}"), on_step=on_step)
  warm = min(k + 2, len(stamps) - 2)
  per_hour = 3600 * (len(stamps) - 1 - warm) / (stamps[-1] - stamps[warm])
  return per_hour, os.getloadavg()[0], records[-1]


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--ks", default="0,1,2")
  ap.add_argument("--layouts", default="shared,split")
  ap.add_argument("--steps", type=int, default=7)
  ap.add_argument("--prompts", type=int, default=8)
  ap.add_argument("--new_tokens", type=int, default=64)
  args = ap.parse_args()
  logging.basicConfig(level=logging.ERROR)
  print(f"devices: {len(jax.devices())} x {jax.devices()[0].platform}; usable cores "
        f"{len(os.sched_getaffinity(0))}; {args.prompts} prompts x 8 samples x "
        f"{args.new_tokens} new tokens, {args.steps} steps")
  with tempfile.TemporaryDirectory() as tmp:
    base = os.path.join(tmp, "base")
    _grpo_step_module().make_base(base, {})
    sync = None
    for layout in args.layouts.split(","):
      for k in (int(x) for x in args.ks.split(",")):
        per_hour, load, last = run(base, tmp, k, layout, args)
        sync = per_hour if sync is None else sync
        print(f"{layout:6s} k={k}: {per_hour:7.0f} steps/h ({per_hour / sync:.2f}x the first "
              f"row) | staleness max {last.get('async/staleness_max', 0):.0f}, "
              f"IS weight mean {last.get('is_weight_mean', 1.0):.4f}, "
              f"pi_old gap mean {last.get('pi_old/gap_mean', 0.0):.2e} | load avg {load:.1f}",
              flush=True)


if __name__ == "__main__":
  main()
