"""Cost of one sampling step with top-p: full-vocab sort vs the top-C candidate cap.

    python benchmarks/top_p.py                       # V = 151936 (Qwen2.5), B = 64
    python benchmarks/top_p.py --vocab 32000 --batch 256 --caps 64,256,1024

Times `r1jax.rollout.sampling.sample` (jitted, float32 logits [B, V]) for: no truncation
(the floor: softmax + categorical), top-p exact (`top_p_candidates=0`: lax.top_k over
all V, i.e. a full sort), and top-p among the C largest logits for each C. The ratio
to the untruncated step is printed next to each figure, with the load average (the
machine is shared: figures are the best of --repeats runs). Also reports how often
the capped nucleus differs from the exact one on these logits (it cannot, unless the
nucleus needs more than C tokens).
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from r1jax.rollout import sampling


def _best(fn, repeats):
  fn()
  out = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    out.append(time.perf_counter() - t0)
  return min(out)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--vocab", type=int, default=151936)
  ap.add_argument("--batch", type=int, default=64)
  ap.add_argument("--top_p", type=float, default=0.95)
  ap.add_argument("--caps", default="64,256,1024")
  ap.add_argument("--repeats", type=int, default=10)
  ap.add_argument("--scale", type=float, default=4.0, help="logit std (peakedness)")
  a = ap.parse_args()
  logits = a.scale * jax.random.normal(jax.random.key(0), (a.batch, a.vocab), jnp.float32)
  keys = sampling.row_keys(jax.random.key(1), 0, a.batch)

  def make(top_p, cap):
    f = jax.jit(lambda x, k: sampling.sample(x, k, temperature=1.0, top_p=top_p,
                                             top_p_candidates=cap))
    return lambda: jax.block_until_ready(f(logits, keys))

  base = _best(make(1.0, 0), a.repeats)
  rows = [("no top-p", base)]
  rows.append(("top-p exact (full sort)", _best(make(a.top_p, 0), a.repeats)))
  for c in [int(x) for x in a.caps.split(",") if x]:
    rows.append((f"top-p within top-{c}", _best(make(a.top_p, c), a.repeats)))
  exact = sampling.truncate_logits(logits, a.top_p, 0, 0)
  print(f"backend={jax.default_backend()} B={a.batch} V={a.vocab} top_p={a.top_p} "
        f"logit std={a.scale} load={os.getloadavg()[0]:.2f}")
  for name, t in rows:
    print(f"  {name:28s} {1e3 * t:8.2f} ms/step  ({t / base:5.2f}x the untruncated step)")
  for c in [int(x) for x in a.caps.split(",") if x]:
    capped = sampling.truncate_logits(logits, a.top_p, 0, c)
    same = np.mean(np.all(np.isfinite(np.asarray(exact)) == np.isfinite(np.asarray(capped)),
                          axis=-1))
    kept = int(np.isfinite(np.asarray(exact)).sum(-1).max())
    print(f"  top-{c}: same nucleus as exact on {same:.0%} of rows (largest exact nucleus "
          f"{kept} tokens)")
  print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
  main()
