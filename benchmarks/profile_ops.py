"""Where a GRPO step's device time goes, per XLA op: a jax.profiler trace, aggregated.

    python benchmarks/profile_ops.py                       # decode, reference and update
    python benchmarks/profile_ops.py --programs decode --top 30
    python benchmarks/profile_ops.py --ab_decode_attention   # the decode-attention change, A/B
    python benchmarks/profile_ops.py --ab_shared_prompt      # prompt forward once per group, A/B
    python benchmarks/profile_ops.py --ab_grad_accum         # the update in 1, 2, 4, 8 microbatches

Builds the peers "table" model (random Qwen2: hidden 256, 4 layers, vocab 1024, tied; or with
`--shape 25m` the peers' 25M workload: hidden 512, 8 layers) and
the step's three programs at R = 64 rows, prompt width 12, 64 new tokens:
  decode     the sampler's prefill + decode loop (`Sampler.generate`, top-p off),
  reference  completion log-probs of a frozen copy (`completion_logprobs`),
  update     one GRPO update (`make_train_step` of `make_grpo_loss`, beta 0.04, AdamW);
both with each group's prompt run once, as the trainer does (`rl.share_prompt_forward`).
Each is run once to compile, then once under `jax.profiler.trace`; the trace's per-op
events (XLA:CPU thunks: `ynn_fusion` = the matmuls XNNPACK/YNNPACK runs, `dot` = XLA's own
dots, `*_fusion` = elementwise / copy fusions) are summed by op kind and by instance. The
op names refer to the compiled HLO (`--hlo DIR` writes it). Times are wall time on a
possibly shared machine: compare shares within one program, not absolute figures.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from r1jax import runtime
from r1jax.models import create_model, split_params
from r1jax.rl import losses
from r1jax.rl.logprobs import completion_logprobs
from r1jax.rollout import Sampler, SamplerConfig
from r1jax.train_state import init_train_state, make_train_step

from peers import SHAPES, model_config  # the same shapes as the peers benchmark (benchmarks/)

CFG = model_config("3m")
B, G, P, L = 8, 8, 12, 64


def _grpo_batch(rng: np.random.Generator, prompt_ids_RP) -> dict:
  """A GRPO batch of R = B * G rows with the given prompts, random completions, full masks."""
  r = B * G
  return {"prompt_ids": jnp.asarray(prompt_ids_RP, jnp.int32),
          "prompt_mask": jnp.ones((r, P), jnp.int32),
          "completion_ids": jnp.asarray(rng.integers(2, 1000, (r, L)), jnp.int32),
          "completion_mask": jnp.ones((r, L), jnp.int32),
          "advantages": jnp.asarray(rng.normal(size=r), jnp.float32),
          "old_logprobs": jnp.full((r, L), -7.0), "ref_logprobs": jnp.full((r, L), -7.0)}


def _update_step(gd, group_size: int, donate: bool, grad_accum: int = 1):
  """(jitted GRPO update of the peers workload: beta 0.04, AdamW 1e-5, clip 1; its optimizer)."""
  lcfg = losses.LossConfig(beta=0.04)
  opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-5))
  step = make_train_step(losses.make_grpo_loss(gd, lcfg, group_size), opt,
                         prepare_batch=lambda b: {**b, **losses.global_counts(b, lcfg)},
                         grad_accum_steps=grad_accum, group_size=group_size)
  # As the trainer jits it (runtime.train_jit_kwargs: Eigen dots on CPU by default).
  return jax.jit(step, donate_argnums=0 if donate else (), **runtime.train_jit_kwargs()), opt


def programs():
  """name -> a zero-argument callable that runs the program and blocks."""
  model = create_model(CFG, jax.random.key(0))
  gd, params = split_params(model)
  r = B * G
  rng = np.random.default_rng(0)
  sampler = Sampler(gd, CFG, SamplerConfig(num_samples=G, max_new_tokens=L, cache_dtype="float32",
                                           prompt_len_buckets=(P,)))
  ids = rng.integers(2, CFG.vocab_size, (B, 9))
  # As the trainer runs them: prompts repeated within each group of G rows, each group's prompt
  # forward run once (`rl.share_prompt_forward`, on by default).
  batch = _grpo_batch(rng, np.repeat(rng.integers(2, 1000, (B, P)), G, 0))
  step, opt = _update_step(gd, G, donate=True)
  ref = jax.jit(lambda p, b: completion_logprobs(
      (gd, p), b["prompt_ids"], b["prompt_mask"], b["completion_ids"], b["completion_mask"],
      group_size=G)[0], **runtime.train_jit_kwargs())
  state = [init_train_state(jax.tree.map(jnp.copy, params), opt, 0)]

  def update():
    state[0], m = step(state[0], batch)
    jax.block_until_ready(m)
  return {
      "decode": lambda: jax.block_until_ready(
          sampler.generate(params, ids, np.ones_like(ids), jax.random.key(0))),
      "reference": lambda: jax.block_until_ready(ref(params, batch)),
      "update": update,
  }, {"update": lambda: step.lower(state[0], batch), "reference": lambda: ref.lower(params, batch)}


def op_times(trace_dir: str) -> collections.Counter:
  """Per-op-instance total microseconds from the trace's XLA thunk events."""
  path = sorted(glob.glob(os.path.join(trace_dir, "plugins/profile/*/*.trace.json.gz")))[-1]
  events = json.load(gzip.open(path))["traceEvents"]
  skip = ("end:", "$", "Thunk", "Pjit", "Common", "Slinky", "PjRt", "Execute")
  out = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and not e["name"].startswith(skip):
      out[e["name"]] += e["dur"]
  return out


def ab_decode_attention(repeats: int = 8) -> None:
  """Sampler generate with the decode attention as batched dots (attention.SMALL_QUERY_ROWS
  = 0, the code before the change) and as multiply-reduce (the default), compiled side by
  side and timed interleaved, in process CPU time (less sensitive to other jobs than wall)."""
  from r1jax.models import attention
  model = create_model(CFG, jax.random.key(0))
  gd, params = split_params(model)
  ids = np.random.default_rng(0).integers(2, CFG.vocab_size, (B, 9))
  default = attention.SMALL_QUERY_ROWS
  runs = {}
  for name, rows in (("batched dots", 0), ("multiply-reduce", default)):
    attention.SMALL_QUERY_ROWS = rows   # read at trace time: compile now
    smp = Sampler(gd, CFG, SamplerConfig(num_samples=G, max_new_tokens=L, cache_dtype="float32",
                                         prompt_len_buckets=(P,)))
    fn = lambda smp=smp: jax.block_until_ready(
        smp.generate(params, ids, np.ones_like(ids), jax.random.key(0)))
    fn()
    runs[name] = (fn, [])
  attention.SMALL_QUERY_ROWS = default
  for _ in range(repeats):
    for fn, times in runs.values():
      c0, t0 = time.process_time(), time.perf_counter()
      fn()
      times.append((time.process_time() - c0, time.perf_counter() - t0))
  for name, (_, times) in runs.items():
    t = np.asarray(times)
    print(f"{name}: CPU s min {t[:, 0].min():.3f} median {np.median(t[:, 0]):.3f}; wall s min "
          f"{t[:, 1].min():.3f} median {np.median(t[:, 1]):.3f}; load {os.getloadavg()[0]:.2f}")


def ab_shared_prompt(repeats: int = 8) -> None:
  """The update and the reference pass with every row's prompt run (group_size 1, the code
  before the change) and with each group's prompt run once (group_size G, the trainer's
  default: `rl.share_prompt_forward`), compiled side by side, timed interleaved in process
  CPU time. Prompts repeat within each group of G rows, as in a GRPO batch."""
  model = create_model(CFG, jax.random.key(0))
  gd, params = split_params(model)
  rng = np.random.default_rng(0)
  batch = _grpo_batch(rng, np.repeat(rng.integers(2, 1000, (B, P)), G, 0))
  runs = {}
  for name, gs in (("one pass per row", 1), ("prompt once per group", G)):
    step, opt = _update_step(gd, gs, donate=False)
    ref = jax.jit(lambda p, b, gs=gs: completion_logprobs(
        (gd, p), b["prompt_ids"], b["prompt_mask"], b["completion_ids"], b["completion_mask"],
        group_size=gs)[0])
    state = init_train_state(jax.tree.map(jnp.copy, params), opt, 0)
    fns = {"update": lambda step=step, state=state: jax.block_until_ready(step(state, batch)),
           "reference": lambda ref=ref: jax.block_until_ready(ref(params, batch))}
    for f in fns.values():
      f()
    runs[name] = (fns, {k: [] for k in fns})
  for _ in range(repeats):
    for fns, times in runs.values():
      for k, f in fns.items():
        c0, t0 = time.process_time(), time.perf_counter()
        f()
        times[k].append((time.process_time() - c0, time.perf_counter() - t0))
  for name, (_, times) in runs.items():
    for k, tt in times.items():
      t = np.asarray(tt)
      print(f"{k:9s} {name}: CPU s min {t[:, 0].min():.3f} median {np.median(t[:, 0]):.3f}; "
            f"wall s min {t[:, 1].min():.3f} median {np.median(t[:, 1]):.3f}; "
            f"load {os.getloadavg()[0]:.2f}")


def ab_grad_accum(repeats: int = 8, counts=(1, 2, 4, 8)) -> None:
  """The update in one batch and in 2, 4 and 8 microbatches of whole groups
  (`optim.grad_accum_steps`; 'auto' picks `runtime.auto_grad_accum`'s), sharded over every
  device as the trainer runs it, compiled side by side and timed interleaved (wall and process
  CPU time, and the page faults each run takes: XLA:CPU maps its temporaries afresh per run)."""
  import resource   # pylint: disable=import-outside-toplevel
  from r1jax import sharding   # pylint: disable=import-outside-toplevel
  mesh, rules = sharding.make_mesh((-1, 1, 1)), sharding.ShardingRules()
  gd, params = split_params(create_model(CFG, 0, mesh, rules))
  rng = np.random.default_rng(0)
  batch = _grpo_batch(rng, np.repeat(rng.integers(2, 1000, (B, P)), G, 0))
  batch = {k: jax.device_put(v, sharding.batch_sharding(mesh, rules, v.shape))
           for k, v in batch.items()}
  shards = sharding.batch_shards(mesh, rules, B * G)
  auto = runtime.auto_grad_accum(CFG, B * G, P + L, G, shards)
  runs = {}
  for n in counts:
    step, opt = _update_step(gd, G, donate=False, grad_accum=n)
    state = init_train_state(jax.tree.map(jnp.copy, params), opt, 0)
    fn = lambda step=step, state=state: jax.block_until_ready(step(state, batch))
    fn()
    runs[n] = (fn, [])
  for _ in range(repeats):
    for fn, times in runs.values():
      f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
      c0, t0 = time.process_time(), time.perf_counter()
      fn()
      times.append((time.perf_counter() - t0, time.process_time() - c0,
                    resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0))
  print(f"{jax.device_count()} device(s), {shards} batch shards; 'auto' gives {auto} "
        f"(estimated activations {runtime.activation_bytes(CFG, B * G * (P + L), P + L) / 2**20:.0f} MiB)")
  for n, (_, times) in runs.items():
    t = np.asarray(times)
    print(f"grad_accum_steps {n}: wall s median {np.median(t[:, 0]):.3f} min {t[:, 0].min():.3f}; "
          f"CPU s median {np.median(t[:, 1]):.3f}; page faults median {np.median(t[:, 2]):.0f}; "
          f"load {os.getloadavg()[0]:.2f}")


def parse_args():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--shape", default="3m", choices=sorted(SHAPES),
                  help="the model: the peers table's 3.2M or its 25M workload")
  ap.add_argument("--programs", default="decode,reference,update")
  ap.add_argument("--top", type=int, default=12, help="op instances listed per program")
  ap.add_argument("--hlo", default="", help="write each program's compiled HLO here")
  ap.add_argument("--ab_decode_attention", action="store_true")
  ap.add_argument("--ab_shared_prompt", action="store_true")
  ap.add_argument("--ab_grad_accum", action="store_true")
  return ap.parse_args()


def main(args):
  global CFG
  CFG = model_config(args.shape)
  if args.ab_decode_attention:
    ab_decode_attention()
    return
  if args.ab_shared_prompt:
    ab_shared_prompt()
    return
  if args.ab_grad_accum:
    ab_grad_accum()
    return
  progs, lowerings = programs()
  for name in args.programs.split(","):
    fn = progs[name]
    fn()
    with tempfile.TemporaryDirectory() as tmp:
      t0 = time.perf_counter()
      with jax.profiler.trace(tmp, create_perfetto_trace=True):
        fn()
      wall = time.perf_counter() - t0
      ops = op_times(tmp)
    total = sum(ops.values())
    kinds = collections.Counter()
    counts = collections.Counter()
    for op, us in ops.items():
      kind = re.sub(r"\.\d+$", "", op)
      kinds[kind] += us
      counts[kind] += 1
    print(f"\n== {name}: {wall:.3f} s under the profiler, {total / 1e6:.3f} s in ops; "
          f"load average {os.getloadavg()[0]:.2f}")
    print("| op kind | instances | s | share |\n|---|---|---|---|")
    for kind, us in kinds.most_common(10):
      print(f"| {kind} | {counts[kind]} | {us / 1e6:.3f} | {us / total:.0%} |")
    print("largest instances: " + ", ".join(f"{op} {us / 1e3:.0f} ms"
                                            for op, us in ops.most_common(args.top)))
    if args.hlo and name in lowerings:
      os.makedirs(args.hlo, exist_ok=True)
      with open(os.path.join(args.hlo, f"{name}.hlo.txt"), "w") as f:
        f.write(lowerings[name]().compile().as_text())


if __name__ == "__main__":
  cli = parse_args()
  params = runtime.non_embedding_params(model_config(cli.shape))
  # As `python -m r1jax.main` does for a model of this size (one device from 10M parameters).
  print("r1jax runtime:", runtime.configure_cpu(model_params=params))
  main(cli)
