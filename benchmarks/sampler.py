"""Sampler throughput: prefill and decode tokens/s next to a measured roofline.

    python benchmarks/sampler.py                      # the ~25M peer shape at batch 64 and 256
    python benchmarks/sampler.py --configs tiny,small --batches 1,8,32
    python benchmarks/sampler.py --configs tiny --batches 1,8 --prompt_len 32 --new_tokens 32

The roofline is per phase: time >= max(FLOPs / F, bytes / BW), where F is this
machine's *measured* matmul FLOP/s (a big jitted matmul in the model's compute
dtype) and BW its measured memory bandwidth (a big jitted copy). Model work per
phase (ideal, i.e. the useful work at each token's real context length c):
  FLOPs/token = 2 * (matmul params incl. unembedding) + 4 * layers * N * H * c
                (prefill: the unembedding only at each prompt's last position)
  prefill bytes = params (read once) + KV written for B*P tokens
  decode bytes per step = params (read once per step) + KV read for B rows at c
"Fraction" = measured tokens/s / roofline tokens/s (best of --repeats runs; the
machine figures are the best seen over repeated measurements: other jobs only
slow things down). The matmul peak is the better of XLA:CPU's YNNPACK and Eigen dots. Like
`python -m r1jax.main`, the script first applies r1jax's CPU runtime (r1jax/runtime.py: one
JAX device per core; the sampler keeps YNNPACK dots; `JAX_NUM_CPU_DEVICES=1` undoes the split) and, with more
than one device, shards the batch over them. The sampler's decode attends over all S = P + L cache slots
every step (static shapes), which the ideal count does not charge for; at these
sizes that is a small term.
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from r1jax import runtime, sharding
from r1jax.models import create_model, get_model_config, split_params
from r1jax.models.config import ModelConfig
from r1jax.rollout import Sampler, SamplerConfig, bucket_prompts

DEFAULT_CONFIGS = "25m"
CONFIGS = {
    "tiny": lambda: get_model_config("tiny"),
    # ~29M params: big enough that the matmuls, not dispatch, dominate on CPU.
    # The ~25M-matmul-param shape of benchmarks/peers.py and grpo_step.py (vocab 1024, tied).
    "25m": lambda: ModelConfig(family="qwen2", vocab_size=1024, embed_dim=512, mlp_dim=1536,
                               num_layers=8, num_heads=8, num_kv_heads=4, head_dim=64,
                               qkv_bias=True, tie_embeddings=True, max_position_embeddings=4096),
    "small": lambda: ModelConfig(family="qwen2", vocab_size=8192, embed_dim=512, mlp_dim=1536,
                                 num_layers=8, num_heads=8, num_kv_heads=4, head_dim=64,
                                 qkv_bias=True, max_position_embeddings=4096),
}


def _time(fn, repeats: int) -> float:
  """Best wall seconds of fn() (which must block), after one warm-up call.

  The minimum, not the median: on a shared machine the noise is one-sided (other
  jobs only ever slow a run down), and the machine figures use the same rule.
  """
  fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return min(times)


def measure_machine(dtype, n: int = 2048, copy_mib: int = 512, repeats: int = 10):
  """(matmul FLOP/s, memory bytes/s) measured with jitted jnp ops."""
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  flops = 0.0
  for opts in (None, runtime.EIGEN_DOTS):  # YNNPACK, Eigen
    mm = jax.jit(lambda x, y: x @ y, **({"compiler_options": opts} if opts else {}))
    flops = max(flops, 2 * n ** 3 / _time(lambda: mm(a, b).block_until_ready(), repeats))
  # Reads and writes every byte once. Donating the input makes the output reuse its
  # buffer: otherwise page-faulting a fresh 512 MiB each call is what gets measured.
  cp = jax.jit(lambda v: v * 1.0001, donate_argnums=0)
  buf = [jnp.ones((copy_mib * 2 ** 20 // 4,), jnp.float32)]

  def copy():
    buf[0] = cp(buf[0]).block_until_ready()
  bw = 2 * buf[0].nbytes / _time(copy, repeats)
  return flops, bw


class Machine:
  """Best matmul FLOP/s and bandwidth seen so far (re-measured between runs, so
  a burst of load from other jobs during one measurement does not set the roof)."""

  def __init__(self, dtype):
    self.dtype, self.flops, self.bw = dtype, 0.0, 0.0

  def measure(self):
    f, b = measure_machine(self.dtype)
    self.flops, self.bw = max(self.flops, f), max(self.bw, b)


def measure_sampler(cfg, batch, prompt_len, new_tokens, sc_kw, repeats):
  """(prefill seconds, decode seconds, decode-loop iterations, param bytes)."""
  model = create_model(cfg, 0)
  graphdef, params = split_params(model)
  param_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
  config = SamplerConfig(num_samples=1, max_new_tokens=new_tokens, **sc_kw)
  mesh = sharding.make_mesh((-1, 1, 1)) if jax.device_count() > 1 else None
  if mesh is not None:  # params replicated, rows and cache split over the devices
    params = jax.device_put(params, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
  sampler = Sampler(graphdef, cfg, config, mesh=mesh)
  rng = np.random.default_rng(0)
  ids = rng.integers(1, cfg.vocab_size, (batch, prompt_len)).astype(np.int32)
  mask = np.ones_like(ids)
  ids, mask, _ = bucket_prompts(ids, mask, config)
  progs = sampler.programs(params, batch, prompt_len)
  key = jax.random.key(0)

  def prefill():
    return jax.block_until_ready(progs.prefill(params, ids, mask, key))

  def decode():  # a fresh prefill each time: decode donates (consumes) the cache
    cache, state, _, _ = prefill()
    t0 = time.perf_counter()
    ro, _ = progs.decode(params, cache, state)
    jax.block_until_ready(ro)
    return time.perf_counter() - t0, int(ro.num_steps)

  t_prefill = _time(prefill, repeats)
  decode()  # warm-up (compile)
  runs = [decode() for _ in range(repeats)]
  # No EOS is set, so every row runs to L; the first token comes from the prefill.
  return t_prefill, min(r[0] for r in runs), runs[0][1] - 1, param_bytes


def report(name, cfg, batch, prompt_len, new_tokens, cache_dtype, measured, machine):
  t_prefill, t_decode, steps, param_bytes = measured
  d, f, n, k, h, v = (cfg.embed_dim, cfg.mlp_dim, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                      cfg.vocab_size)
  layer_params = cfg.num_layers * (2 * d * n * h + 2 * d * k * h + 3 * d * f)
  unembed = d * v
  attn_per_ctx = 4 * cfg.num_layers * n * h                 # QK^T and PV FLOPs per context token
  kv_tok = 2 * cfg.num_layers * k * h * jnp.dtype(cache_dtype).itemsize
  # Prefill: B*P tokens, average causal context P/2; logits at the last position only.
  pre_tokens = batch * prompt_len
  pre_flops = pre_tokens * (2 * layer_params + attn_per_ctx * prompt_len / 2) + batch * 2 * unembed
  pre_bytes = param_bytes + pre_tokens * kv_tok
  pre_roof = pre_tokens / max(pre_flops / machine.flops, pre_bytes / machine.bw)
  # Decode: steps of B tokens at average context P + L/2; all params read once per step.
  ctx = prompt_len + new_tokens / 2
  dec_flops = batch * (2 * (layer_params + unembed) + attn_per_ctx * ctx)
  dec_bytes = param_bytes + batch * ctx * kv_tok
  dec_roof = batch / max(dec_flops / machine.flops, dec_bytes / machine.bw)
  bound = "compute" if dec_flops / machine.flops > dec_bytes / machine.bw else "memory"
  pre_tps = pre_tokens / t_prefill
  dec_tps = batch * steps / t_decode
  print(f"{name:6s} B={batch:3d} P={prompt_len:4d} L={new_tokens:4d} | "
        f"prefill {pre_tps:9.0f} tok/s (roof {pre_roof:9.0f}, {pre_tps / pre_roof:6.1%}) | "
        f"decode {dec_tps:7.0f} tok/s, {1e3 * t_decode / steps:6.2f} ms/step "
        f"(roof {dec_roof:8.0f}, {dec_tps / dec_roof:6.1%}, {bound}-bound)", flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--configs", default=DEFAULT_CONFIGS)
  parser.add_argument("--batches", default="64,256")
  parser.add_argument("--prompt_len", type=int, default=64)
  parser.add_argument("--new_tokens", type=int, default=64)
  parser.add_argument("--cache_dtype", default="float32")
  parser.add_argument("--top_p", type=float, default=1.0)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()

  sc_kw = dict(cache_dtype=args.cache_dtype, top_p=args.top_p)
  print(f"devices: {jax.devices()}")
  for name in args.configs.split(","):
    cfg = CONFIGS[name]() if name in CONFIGS else get_model_config(name)
    machine = Machine(cfg.jnp_dtype)
    machine.measure()
    results = []
    for batch in (int(b) for b in args.batches.split(",")):
      results.append((batch, measure_sampler(cfg, batch, args.prompt_len, args.new_tokens, sc_kw,
                                             args.repeats)))
      machine.measure()
    print(f"\n[{name}] load average {os.getloadavg()[0]:.2f}; "
          f"{cfg.num_params() / 1e6:.1f}M params, dtype {cfg.dtype}, "
          f"cache {args.cache_dtype}, top_p {args.top_p}; best measured matmul "
          f"{machine.flops / 1e9:.1f} GFLOP/s, copy {machine.bw / 1e9:.1f} GB/s")
    for batch, measured in results:
      report(name, cfg, batch, args.prompt_len, args.new_tokens, args.cache_dtype, measured,
             machine)


def _largest_model_params() -> int:
  """Non-embedding params of the largest `--configs` model: 'auto' chooses the CPU device count
  from it, as `python -m r1jax.main` does from a stage's model (r1jax/runtime.py)."""
  p = argparse.ArgumentParser(add_help=False)
  p.add_argument("--configs", default=DEFAULT_CONFIGS)
  names = p.parse_known_args()[0].configs.split(",")
  return max(runtime.non_embedding_params(CONFIGS[n]() if n in CONFIGS else get_model_config(n))
             for n in names)


if __name__ == "__main__":
  print("r1jax runtime:", runtime.configure_cpu(model_params=_largest_model_params()))
  main()
