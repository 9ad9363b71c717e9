"""Attention implementations against context length: peak memory and time, tiny model, CPU.

    python benchmarks/attention.py                          # 1K..32K, reference/blocked/xla
    python benchmarks/attention.py --contexts 1024,4096 --impls blocked --modes decode

Two programs per (implementation, context T), batch 1, fp32, the `tiny` preset (4 layers,
4 query heads over 2 kv heads, head dim 32) with `ModelConfig.attention` set:
  * prefill: a full forward of T tokens (no cache; the last position's logits);
  * decode: one cached step at slot T-1 of a [1, T] fp32 cache whose every slot is valid
    (so the blocked path reads all T / block blocks, its worst case).
Every (implementation, context) runs in its own subprocess, so one point's freed memory
cannot hide another's (decode, a few MiB, runs before prefill in it).
Memory, two ways:
  * `temp`: the compiled program's scratch, `compiled.memory_analysis().temp_size_in_bytes`
    (XLA's own buffer plan; arguments and outputs are listed apart as `args+out`);
  * `rss`: the process's resident-set high-water mark during the execution, minus the RSS
    just before it (peak reset through /proc/self/clear_refs; Linux only).
A point whose planned temp exceeds --max_gib is not executed: its row says `skip` with the
bytes the plan would need (the reference's fp32 [B, K, G, T, S] scores grow with T^2).
Time: wall time and the process's CPU time (`cpu`, all threads: less sensitive to other
jobs' load than wall time); prefill, one execution after compilation (XLA:CPU needs no
warm-up); decode, the best of --repeats after one warm-up. The 1-minute load average is
printed on every row: the machine may be shared and times then move by tens of percent.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

GIB = 1 << 30


def _status() -> dict[str, int]:
  """VmRSS / VmHWM in bytes (Linux)."""
  text = open("/proc/self/status").read()
  return {k: 1024 * int(re.search(k + r":\s+(\d+)", text).group(1)) for k in ("VmRSS", "VmHWM")}


def points(impl: str, context: int, modes: list[str], block: int, repeats: int,
           max_gib: float) -> list[dict]:
  """Runs the (implementation, context) points of `modes`, in this order, in this process.
  Decode runs before prefill: its few MiB cannot hide the prefill's peak."""
  import jax
  from r1jax.models import create_model, get_model_config, split_params
  cfg = get_model_config("tiny", attention=impl, attention_block=block,
                         max_position_embeddings=max(context, 1024))
  graphdef, params = split_params(create_model(cfg, 0))
  return [point(cfg, graphdef, params, context, mode, repeats, max_gib) for mode in modes]


def point(cfg, graphdef, params, context: int, mode: str, repeats: int, max_gib: float) -> dict:
  """One (context, prefill|decode) point of the model `cfg`."""
  import jax
  import jax.numpy as jnp
  from r1jax.models import init_cache
  from r1jax.models.factory import merge_params
  t = context
  if mode == "prefill":
    def fn(params, tokens_BT):
      model = merge_params(graphdef, params)
      h, _ = model(tokens_BT, return_hidden=True)
      return model.unembed(h[:, -1:])
    args = (params, jnp.ones((1, t), jnp.int32))
  else:
    def fn(params, tokens_B1, cache):
      model = merge_params(graphdef, params)
      logits, cache = model(tokens_B1, jnp.full((1, 1), t - 1, jnp.int32),
                            jnp.ones((1, t), jnp.int32), cache=cache, cache_index=jnp.int32(t - 1))
      return logits, cache
    args = (params, jnp.ones((1, 1), jnp.int32), init_cache(cfg, 1, t, jnp.float32))
  compiled = jax.jit(fn).lower(*args).compile()
  mem = compiled.memory_analysis()
  temp = int(mem.temp_size_in_bytes)
  io = int(mem.argument_size_in_bytes + mem.output_size_in_bytes)
  out = dict(impl=cfg.attention, context=context, mode=mode, temp=temp, io=io)
  if temp > max_gib * GIB:
    return dict(out, skipped=True)
  jax.block_until_ready(args)
  before = _status()["VmRSS"]
  with open("/proc/self/clear_refs", "w") as f:   # reset the high-water mark to the current RSS
    f.write("5")
  t0, c0 = time.perf_counter(), time.process_time()
  jax.block_until_ready(compiled(*args))
  seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
  if mode == "decode":
    for _ in range(repeats):
      t0, c0 = time.perf_counter(), time.process_time()
      jax.block_until_ready(compiled(*args))
      seconds = min(seconds, time.perf_counter() - t0)
      cpu = min(cpu, time.process_time() - c0)
  rss = _status()["VmHWM"] - before
  return dict(out, skipped=False, seconds=seconds, cpu=cpu, rss=rss)


def _fmt_bytes(n: float) -> str:
  for unit, size in (("GiB", GIB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
    if abs(n) >= size:
      return f"{n / size:.1f} {unit}"
  return f"{n:.0f} B"


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--contexts", default="1024,2048,4096,8192,16384,32768")
  ap.add_argument("--impls", default="reference,blocked,xla")
  ap.add_argument("--modes", default="prefill,decode")
  ap.add_argument("--block", type=int, default=512, help="attention_block of 'blocked'")
  ap.add_argument("--repeats", type=int, default=3, help="decode timings (best of)")
  ap.add_argument("--max_gib", type=float, default=4.0,
                  help="skip points whose compiled temp memory exceeds this")
  ap.add_argument("--timeout", type=int, default=300, help="seconds per point")
  ap.add_argument("--point", help=argparse.SUPPRESS)   # worker: impl,context
  a = ap.parse_args()
  modes = [m for m in ("decode", "prefill") if m in a.modes.split(",")]
  if a.point:
    impl, context = a.point.split(",")
    print(json.dumps(points(impl, int(context), modes, a.block, a.repeats, a.max_gib)))
    return

  print(f"tiny model, batch 1, fp32, block {a.block}; one subprocess per (impl, context); "
        f"{os.cpu_count()} CPUs")
  print(f"{'impl':9s} {'mode':7s} {'context':>7s} | {'time':>9s} | {'temp (plan)':>11s} | "
        f"{'args+out':>9s} | {'rss peak':>9s} | {'cpu':>8s} | load")
  for impl in a.impls.split(","):
    for context in (int(c) for c in a.contexts.split(",")):
      cmd = [sys.executable, __file__, "--point", f"{impl},{context}", "--modes", ",".join(modes),
             "--block", str(a.block), "--repeats", str(a.repeats), "--max_gib", str(a.max_gib)]
      head = f"{impl:9s} {'/'.join(modes):7s} {context:7d} |"
      try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
      except subprocess.TimeoutExpired:
        print(f"{head} timeout after {a.timeout} s | load {os.getloadavg()[0]:.1f}", flush=True)
        continue
      load = os.getloadavg()[0]
      if proc.returncode != 0:
        why = "killed (out of memory?)" if proc.returncode < 0 else proc.stderr.strip()[-200:]
        print(f"{head} failed rc={proc.returncode}: {why} | load {load:.1f}", flush=True)
        continue
      for r in json.loads(proc.stdout.strip().splitlines()[-1]):
        head = f"{impl:9s} {r['mode']:7s} {context:7d} |"
        if r["skipped"]:
          print(f"{head} {'skip':>9s} | {_fmt_bytes(r['temp']):>11s} | {_fmt_bytes(r['io']):>9s} | "
                f"{'-':>9s} | {'-':>8s} | load {load:.1f}   (plan > --max_gib {a.max_gib:g})", flush=True)
          continue
        ms = 1e3 * r["seconds"]
        cpu = f"{r['cpu']:.1f} s" if r["cpu"] >= 1 else f"{1e3 * r['cpu']:.1f} ms"
        print(f"{head} {ms:7.1f}ms | {_fmt_bytes(r['temp']):>11s} | {_fmt_bytes(r['io']):>9s} | "
              f"{_fmt_bytes(r['rss']):>9s} | {cpu:>8s} | load {load:.1f}", flush=True)


if __name__ == "__main__":
  main()
