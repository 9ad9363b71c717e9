"""One GRPO step, phase by phase, and the update's FLOP utilisation against a measured peak.

    python benchmarks/grpo_step.py                       # tiny preset + a ~29M "small" model
    python benchmarks/grpo_step.py --configs tiny --steps 4

For each model a throw-away base workdir is made (SentencePiece tokenizer and one
pretrain step with the SFT trainer, so the params are untrained), then
`r1jax.rl.trainer.train` runs `--steps` GRPO steps of the `tiny` R1-Zero preset
(configs/r1_zero.py) on procedural arithmetic, and the per-phase times the
trainer logs are reported for the steps after the first (which compiles):

  sample   time/sample_s       prefill + decode of every chunk, incl. fetching ids
  reward   time/reward_total_s host scoring (decode text + verifiers), summed over chunks;
           time/reward_wait_s is the part not hidden behind sampling
  update   time/update_s       reference log-probs (beta > 0) + the minibatch updates
  step     time/step_s         the whole step

FLOPs counted for the update phase (executed work, padded shapes):
  tokens T = rows x (prompt width + max_new_tokens), the [R, P + L] sequences the
  loss's forward runs on (padding included: the device computes it).
  matmul params N = every weight matrix a token goes through, incl. the
  unembedding (not the embedding lookup, norms or biases).
  forward + backward = 3 x 2 x N x T, plus causal attention 3 x 4 x layers x
  heads x head_dim x sum_t(t) per row (scores and weighted values).
  + one forward (2 x N x T + attention) per extra log-prob pass: the frozen
  reference when beta > 0, pi_old when it is recomputed (rl.recompute_old_logprobs, or automatically; see docs/grpo.md).
Utilisation = counted FLOPs / update time / peak, where the peak is this
machine's best measured FLOP/s of a big jitted float32 matmul (the models run
in float32 on CPU), taken as the best of a measurement before all runs and one
right after each run (other jobs only ever slow it down, so the best seen is the
closest to the real peak; on a shared machine the load average is printed too,
and utilisation is then a lower bound).
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import pathlib
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from r1jax import config as config_lib
from r1jax.experiment import load_model_config
from r1jax.rl import trainer as rl_trainer
from r1jax.sft import trainer as sft_trainer

REPO = pathlib.Path(__file__).resolve().parents[1]

# name -> (model overrides on the `tiny` preset, rl overrides on the tiny R1-Zero preset)
CONFIGS = {
    # The tiny R1-Zero preset as configured: 16 prompts x 8 samples x 64 new tokens.
    "tiny": ({}, {}),
    # ~25M matmul params (the sampler benchmark's "small" body; the vocabulary stays the
    # tokenizer's, since ids beyond it cannot be decoded): 8 prompts x 8 samples x 64 tokens.
    "small": (dict(embed_dim=512, mlp_dim=1536, num_layers=8, num_heads=8, num_kv_heads=4,
                   head_dim=64),
              dict(num_prompts=8, group_size=8)),
}


def measure_matmul_peak(n: int = 2048, repeats: int = 10, dtype=jnp.float32) -> float:
  """Best FLOP/s of a jitted [n, n] @ [n, n] matmul."""
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  f = jax.jit(lambda x, y: x @ y)
  f(a, b).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    f(a, b).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2 * n ** 3 / best


def matmul_params(cfg) -> int:
  """Weights a token is multiplied by: attention, MLP (gated) per layer, and the unembedding."""
  d, h, k, hd = cfg.embed_dim, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
  attn = d * h * hd + 2 * d * k * hd + h * hd * d
  mlp = 3 * d * cfg.mlp_dim
  return cfg.num_layers * (attn + mlp) + d * cfg.vocab_size


def update_flops(cfg, rows: int, seq: int, forwards: int) -> float:
  """fwd+bwd (x3 of a forward) plus `forwards` extra forward passes over [rows, seq]."""
  n = matmul_params(cfg)
  attn_per_row = 4 * cfg.num_layers * cfg.num_heads * cfg.head_dim * seq * (seq + 1) / 2
  forward = 2 * n * rows * seq + attn_per_row * rows
  return (3 + forwards) * forward


def _r1_zero_tiny():
  spec = importlib.util.spec_from_file_location("r1_zero_config", REPO / "configs" / "r1_zero.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config("tiny")


def make_base(workdir: str, model_overrides: dict) -> None:
  """Tokenizer + one pretrain step: a workdir GRPO can `init_from` (weights ~random)."""
  c = config_lib.base_config()
  c.stage = "pretrain"
  c.model.overrides.update(model_overrides)
  c.tokenizer.vocab_size = 400
  c.optim.warmup_steps = 0
  c.train.update(num_steps=1, batch_size=8, seq_len=64, log_every=1, checkpoint_every=1)
  c.data = dict(sources=(dict(kind="procedural", task="arithmetic", num_examples=400,
                              template="r1_zero_bare"),))
  sft_trainer.train(c, workdir)


def run(name: str, steps: int, beta: float, peak: float) -> float:
  model_overrides, rl_overrides = CONFIGS[name]
  with tempfile.TemporaryDirectory() as tmp:
    base = os.path.join(tmp, "base")
    make_base(base, model_overrides)
    c = _r1_zero_tiny()
    c.init_from = base
    c.template = "r1_zero_bare"
    c.rl.update(rl_overrides)
    c.rl.loss.beta = beta
    c.eval.every = 0
    c.train.num_steps = steps
    c.train.checkpoint_every = 10 ** 6  # one checkpoint at the end, after the timings
    records = []
    rl_trainer.train(c, os.path.join(tmp, "grpo"), on_step=lambda s, m: records.append(m))
    cfg = load_model_config(base)
  peak = max(peak, measure_matmul_peak())  # same conditions as the update just timed
  rows = int(c.rl.num_prompts) * int(c.rl.group_size)
  seq = int(c.rl.max_prompt_len) + int(c.rl.max_new_tokens)  # the single prompt bucket + L
  from r1jax import stage_config
  recompute, _ = rl_trainer.needs_recompute(stage_config.grpo_config(c).rl, cfg)
  forwards = int(beta > 0) + int(recompute)
  flops = update_flops(cfg, rows, seq, forwards)
  warm = records[1:] or records
  med = lambda k: float(np.median([r[k] for r in warm]))
  print(f"\n== {name}: {matmul_params(cfg) / 1e6:.2f}M matmul params, {cfg.num_layers} layers, "
        f"d={cfg.embed_dim}, vocab {cfg.vocab_size}; {c.rl.num_prompts} prompts x "
        f"{c.rl.group_size} samples, prompt width {c.rl.max_prompt_len} + {c.rl.max_new_tokens} "
        f"new tokens, beta={beta}; median of steps 2..{steps}")
  print(f"  step     {med('time/step_s'):8.2f} s")
  print(f"  sample   {med('time/sample_s'):8.2f} s   ({med('sampled_tokens'):.0f} tokens, "
        f"{med('sampled_tokens') / med('time/sample_s'):.0f} tok/s)")
  print(f"  reward   {med('time/reward_total_s'):8.3f} s   (waited {med('time/reward_wait_s'):.3f} s, "
        f"overlap {med('reward_overlap'):.2f})")
  print(f"  update   {med('time/update_s'):8.2f} s   ({flops / 1e9:.1f} GFLOP counted: "
        f"{rows} x {seq} tokens, fwd+bwd{' + ref fwd' if beta > 0 else ''})")
  achieved = flops / med("time/update_s")
  print(f"  update FLOP/s {achieved / 1e9:.1f} G = {100 * achieved / peak:.1f}% of the measured "
        f"matmul peak {peak / 1e9:.1f} G")
  print(f"  first step (compiles) {records[0]['time/step_s']:.1f} s; load average "
        f"{os.getloadavg()[0]:.1f} on {len(os.sched_getaffinity(0))} usable cores")
  return peak


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--configs", default="tiny,small")
  ap.add_argument("--steps", type=int, default=3)
  ap.add_argument("--beta", type=float, default=0.001, help="KL coefficient (0 = no reference)")
  args = ap.parse_args()
  logging.basicConfig(level=logging.WARNING)
  print(f"devices: {jax.devices()}  (usable cores: {len(os.sched_getaffinity(0))})")
  peak = measure_matmul_peak()
  print(f"measured float32 matmul peak: {peak / 1e9:.1f} GFLOP/s (2048^3, best of 10)")
  for name in args.configs.split(","):
    peak = run(name.strip(), args.steps, args.beta, peak)


if __name__ == "__main__":
  from r1jax import runtime
  print("r1jax runtime:", runtime.configure_cpu())  # as `python -m r1jax.main` does
  main()
