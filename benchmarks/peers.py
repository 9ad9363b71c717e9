"""The same GRPO step in r1jax, Tunix and TRL, side by side on one machine.

    bash benchmarks/make_peer_venvs.sh          # once: .venv-trl (torch CPU + TRL), .venv-tunix
    python benchmarks/peers.py                  # the three workloads below, three frameworks
    python benchmarks/peers.py --workloads table --frameworks r1jax,tunix

Every framework runs in its own fresh process on the same files, which this script writes:
  * a random Qwen2 checkpoint (`r1jax.models.hf.save_pretrained`: config.json + safetensors),
  * a byte-level BPE `tokenizer.json` trained offline with the `tokenizers` library,
  * prompts.jsonl: short arithmetic questions (each 8-10 tokens).
r1jax runs `configs/r1_zero.py:tiny` through the public config API (init_from = that
checkpoint); Tunix (google-tunix: its Qwen2, vanilla sampler and GRPOLearner) and TRL
(GRPOTrainer on CPU torch, HF generate) run `benchmarks/peers_tunix.py` /
`benchmarks/peers_trl.py` with their venv's python. A missing venv skips that peer.

The step: B prompts x G samples, exactly L = 64 new tokens at temperature 1 (EOS never
ends a completion: r1jax gets rl.ignore_eos, TRL min_new_tokens = L, Tunix no EOS id;
beta = 0.04 against a frozen
reference, one AdamW update per step, lr 1e-5, grad-norm clip 1. Checks: every framework's
logits for the same token batch agree with r1jax's within 1e-4 (same weights, same
network), and every completion has exactly L tokens.

Reported per framework: step time (median of steps 2..6; step 1 compiles), the
sample / reference / update split (medians, seconds), sampled tokens per second of the
whole step, and each phase's fraction of this machine's float32 matmul peak, measured
with a jitted 2048^3 matmul before and after every framework's run (best seen: other
jobs only slow a measurement down). FLOPs counted per phase (useful work, the same count
for every framework; P = the longest prompt, R = B*G rows, N = matmul params incl. the
unembedding, attention 4 * layers * heads * head_dim per (query, key) pair):
  sample    = prefill of R prompts (every framework here prefills each row) + R*L decode tokens
  reference = one forward over R x (P + L)
  update    = forward + backward (3 forwards) over R x (P + L)
r1jax runs as `python -m r1jax.main` would: `r1jax.runtime.configure_cpu_from(config)` first,
which on a CPU gives one JAX device per core (the batch split over that CPU mesh; one device
for the 25m workload's model, of >= 10M non-embedding params) and Eigen dots in the training
programs (docs/performance.md; `JAX_NUM_CPU_DEVICES=1` or
`XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=individual_dot` undo either). The peak is
the better of XLA:CPU's two matmul libraries.
The machine is shared on the development box: the 1-minute load average is printed
with every figure, and ratios between frameworks measured in the same run are the
figures to compare.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
VOCAB = 1024
NEW_TOKENS = 64

SHAPES = {
    # ~3.2M params with tied embeddings: the table.
    "3m": dict(embed_dim=256, mlp_dim=704, num_layers=4, num_heads=4, num_kv_heads=2, head_dim=64),
    # ~25M matmul params: benchmarks/grpo_step.py's "small" body.
    "25m": dict(embed_dim=512, mlp_dim=1536, num_layers=8, num_heads=8, num_kv_heads=4,
                head_dim=64),
}
# workload -> (shape, B prompts, G samples)
WORKLOADS = {"table": ("3m", 8, 8), "25m": ("25m", 8, 8), "b16g16": ("3m", 16, 16)}
PEERS = {"tunix": (".venv-tunix", "peers_tunix.py"), "trl": (".venv-trl", "peers_trl.py")}


def model_config(shape: str):
  """The random Qwen2 of a workload's shape (tied embeddings, vocab VOCAB)."""
  from r1jax.models.config import ModelConfig
  return ModelConfig(family="qwen2", vocab_size=VOCAB, qkv_bias=True, tie_embeddings=True,
                     max_position_embeddings=4096, rope_theta=10000.0, rms_norm_eps=1e-6,
                     **SHAPES[shape])


# ------------------------------------------------------------------------------- files
def _questions(n: int, seed: int = 0) -> list[dict]:
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    a, b, c = (int(x) for x in rng.integers(1, 10, 3))
    out.append({"question": f"What is {a} + {b} * {c}?", "answer": str(a + b * c)})
  return out


def _train_tokenizer(path: pathlib.Path) -> None:
  """Byte-level BPE with VOCAB ids (trained offline on generated text)."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<|pad|>", "<|eos|>"],
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                show_progress=False)
  rng = np.random.default_rng(1)
  words = ["the", "answer", "is", "what", "plus", "times", "think", "so", "we", "get", "first",
           "then", "number", "result", "add", "multiply", "<think>", "</think>", "<answer>",
           "</answer>"]
  corpus = [" ".join(rng.choice(words, 12)) + f" {int(rng.integers(0, 1000))}"
            for _ in range(4000)] + [q["question"] for q in _questions(2000, 7)]
  tok.train_from_iterator(corpus, trainer)
  tok.save(str(path))


def write_files(root: pathlib.Path, shape: str, num_prompts: int) -> dict:
  """Checkpoint dir (weights + tokenizer, EOS and pad declared), prompts, logit-check ids."""
  import jax
  from r1jax.models import create_model, hf
  ckpt = root / "ckpt"
  ckpt.mkdir(parents=True, exist_ok=True)
  _train_tokenizer(ckpt / "tokenizer.json")
  (ckpt / "tokenizer_config.json").write_text(json.dumps({
      "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|eos|>",
      "pad_token": "<|pad|>", "padding_side": "left", "model_max_length": 4096}))
  cfg = model_config(shape)
  model = create_model(cfg, jax.random.key(0))
  hf.save_pretrained(model, str(ckpt), eos_token_id=1)
  qs = _questions(max(64, num_prompts * 8))
  with open(root / "prompts.jsonl", "w") as f:
    for q in qs:
      f.write(json.dumps(q) + "\n")
  from tokenizers import Tokenizer
  tok = Tokenizer.from_file(str(ckpt / "tokenizer.json"))
  rng = np.random.default_rng(3)
  ids = rng.integers(2, VOCAB, (2, 16)).astype(np.int32)
  np.save(root / "logit_ids.npy", ids)
  lens = [len(tok.encode(q["question"] + "\n").ids) for q in qs]
  return {"ckpt": str(ckpt), "prompts": str(root / "prompts.jsonl"),
          "logit_ids": str(root / "logit_ids.npy"), "params": int(cfg.num_params()),
          "cfg": cfg, "prompt_tokens": (min(lens), max(lens))}


# ------------------------------------------------------------------------------- FLOPs
def phase_flops(cfg, rows: int, prompt: int, new: int) -> dict[str, float]:
  d, n, k, h, f = cfg.embed_dim, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.mlp_dim
  mat = cfg.num_layers * (2 * d * n * h + 2 * d * k * h + 3 * d * f) + d * cfg.vocab_size
  attn = 4 * cfg.num_layers * n * h
  seq = prompt + new
  fwd = rows * (2 * mat * seq + attn * seq * (seq + 1) / 2)
  prefill = rows * (2 * mat * prompt + attn * prompt * (prompt + 1) / 2)
  decode = rows * sum(2 * mat + attn * (prompt + t + 1) for t in range(new))
  return {"sample": prefill + decode, "reference": fwd, "update": 3 * fwd}


def matmul_peak(n: int = 2048, repeats: int = 8) -> float:
  import jax
  import jax.numpy as jnp
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  best = float("inf")
  # The better of XLA:CPU's two matmul libraries (YNNPACK, its default, and Eigen, which
  # r1jax's runtime selects): the roofline is what this machine can do, whoever does it.
  from r1jax.runtime import EIGEN_DOTS
  for opts in (None, EIGEN_DOTS):
    mm = jax.jit(lambda x, y: x @ y, **({"compiler_options": opts} if opts else {}))
    mm(a, b).block_until_ready()
    for _ in range(repeats):
      t0 = time.perf_counter()
      mm(a, b).block_until_ready()
      best = min(best, time.perf_counter() - t0)
  return 2 * n ** 3 / best


# ------------------------------------------------------------------------------- r1jax
def r1jax_config(files: dict, b: int, g: int, steps: int, workdir_base: str):
  import importlib.util
  spec = importlib.util.spec_from_file_location("r1_zero", REPO / "configs" / "r1_zero.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  c = mod.get_config("tiny")
  c.init_from = files["ckpt"]
  c.template = "plain"
  c.task = dict(name="jsonl", path=files["prompts"], question_field="question",
                answer_field="answer")
  c.eval.every = 0
  c.rl.update(num_prompts=b, group_size=g, max_new_tokens=NEW_TOKENS, temperature=1.0,
              max_prompt_len=32, stop_strings=(), sample_chunks=1, cache_dtype="float32",
              ignore_eos=True)   # every completion runs to L, as vLLM's ignore_eos
  c.rl.auto_prompt_buckets = True  # prompt widths chosen from the data (r1jax.rollout.buckets)
  c.rl.loss.beta = 0.04
  c.rewards.weights = {"format": 1.0}
  c.rewards.num_workers = 0
  c.optim.update(learning_rate=1e-5, warmup_steps=0, schedule="constant", max_grad_norm=1.0)
  c.train.update(num_steps=steps, checkpoint_every=10 ** 6, log_every=1)
  return c


def run_r1jax(files: dict, b: int, g: int, steps: int, out: str) -> None:
  import jax
  import jax.numpy as jnp
  from r1jax import runtime
  from r1jax.models import hf
  from r1jax.rl import trainer
  # What `python -m r1jax.main` does first: on this CPU, one JAX device per core and XLA's
  # own matmuls (r1jax/runtime.py); the config's defaults, as a user gets them.
  print("r1jax runtime:", runtime.configure_cpu_from(r1jax_config(files, b, g, steps, "")),
        file=sys.stderr)
  ids = np.load(files["logit_ids"])
  model = hf.load_pretrained(files["ckpt"])
  logits, _ = model(jnp.asarray(ids))
  np.save(out + ".logits.npy", np.asarray(logits, np.float32))
  del model
  records = []
  with tempfile.TemporaryDirectory() as tmp:
    c = r1jax_config(files, b, g, steps, tmp)
    trainer.train(c, os.path.join(tmp, "grpo"), on_step=lambda s, m: records.append(dict(m)))
  res = {"step": [r["time/step_s"] for r in records],
         "sample": [r["time/sample_s"] for r in records],
         "reference": [r.get("time/reference_s", float("nan")) for r in records],
         "update": [r["time/update_s"] - r.get("time/reference_s", 0.0) for r in records],
         "tokens": [r["sampled_tokens"] for r in records],
         "min_len": min(r.get("completion_len/min", r["completion_len/mean"]) for r in records),
         "max_len": max(r["completion_len/max"] for r in records),
         "prompt_width": [r.get("prompt_width", float("nan")) for r in records],
         "padding": [r.get("prompt_padding_fraction", float("nan")) for r in records],
         "version": f"r1jax (jax {jax.__version__})"}
  with open(out, "w") as f:
    json.dump(res, f)


# ------------------------------------------------------------------------------- driver
def _median(xs):
  xs = [x for x in xs[1:6] if x == x] or [x for x in xs if x == x]
  return float(np.median(xs)) if xs else float("nan")


def run_one(name: str, files: dict, b: int, g: int, steps: int, root: pathlib.Path) -> dict | None:
  out = str(root / f"{name}.json")
  args = ["--files", str(root / "files.json"), "--B", str(b), "--G", str(g),
          "--steps", str(steps), "--out", out]
  if name == "r1jax":
    cmd = [sys.executable, __file__, "--worker", "r1jax"] + args
  else:
    venv, script = PEERS[name]
    py = REPO / venv / "bin" / "python"
    if not py.exists():
      print(f"  [{name}] skipped: {py} missing (bash benchmarks/make_peer_venvs.sh {name})")
      return None
    cmd = [str(py), str(REPO / "benchmarks" / script)] + args
  env = {**os.environ, "PYTHONPATH": str(REPO)} if name == "r1jax" else {
      k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env.setdefault("TOKENIZERS_PARALLELISM", "false")
  t0 = time.perf_counter()
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
  if proc.returncode != 0 or not os.path.exists(out):
    print(f"  [{name}] failed (rc {proc.returncode}):\n" + proc.stderr[-3000:])
    return None
  with open(out) as f:
    res = json.load(f)
  res["wall"] = time.perf_counter() - t0
  res["load"] = os.getloadavg()[0]
  lg = out + ".logits.npy"
  res["logits"] = np.load(lg) if os.path.exists(lg) else None
  return res


def report(results: dict, flops: dict, peak: float) -> dict:
  """Prints one run's table (every framework in `results`) and returns its rows by framework."""
  ref_logits = results.get("r1jax", {}).get("logits")
  peers = [results[n]["step"] for n in results if n != "r1jax"]
  fastest_peer = min((_median(s) for s in peers), default=float("nan"))
  print(f"| framework | step s | / fastest peer | sample s | reference s | update s | "
        f"tok/s | sample %peak | ref %peak | update %peak | logits max diff | all {NEW_TOKENS} "
        f"tokens | load |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  rows = {}
  for name, r in results.items():
    step = _median(r["step"])
    split = {k: _median(r[k]) for k in ("sample", "reference", "update")}
    tok = _median(r["tokens"]) / step
    frac = {k: flops[k] / split[k] / peak if split[k] == split[k] and split[k] > 0
            else float("nan") for k in split}
    diff = (float(np.max(np.abs(r["logits"] - ref_logits)))
            if r.get("logits") is not None and ref_logits is not None else float("nan"))
    exact = r["min_len"] == NEW_TOKENS and r["max_len"] == NEW_TOKENS
    print(f"| {r['version']} | {step:.3f} | {step / fastest_peer:.2f} | {split['sample']:.3f} | "
          f"{split['reference']:.3f} | {split['update']:.3f} | {tok:.0f} | "
          f"{frac['sample']:.0%} | {frac['reference']:.0%} | {frac['update']:.0%} | "
          f"{diff:.1e} | {'yes' if exact else 'NO'} | {r['load']:.2f} |")
    rows[name] = {"step": step, **split, "tok_s": tok, "frac": frac, "logit_diff": diff,
                  "exact_len": exact, "load": r["load"], "steps": r["step"],
                  "version": r["version"], "ratio": step / fastest_peer}
  if "r1jax" in results:
    r = results["r1jax"]
    print(f"(r1jax prompt width per step {r.get('prompt_width')}, padding fraction "
          f"{[round(x, 2) for x in r.get('padding', [])]})")
  print(f"(peak {peak / 1e9:.1f} GFLOP/s; counted GFLOP: sample {flops['sample'] / 1e9:.1f}, "
        f"reference {flops['reference'] / 1e9:.1f}, update {flops['update'] / 1e9:.1f})")
  return rows


def print_rounds(per_round: list[dict]) -> None:
  """Summary of `--rounds`: each framework's step per round and its median over rounds, and
  r1jax's ratio to the fastest peer in each round (the figure the issue's target is on: both
  steps from the same round, minutes apart) with the median and range of those ratios."""
  names = list(per_round[0])
  print(f"\n== {len(per_round)} rounds: step s per round (median over rounds)")
  for n in names:
    steps = [r[n]["step"] for r in per_round if n in r]
    loads = [r[n]["load"] for r in per_round if n in r]
    print(f"  {per_round[0][n]['version']}: {', '.join(f'{x:.3f}' for x in steps)} "
          f"(median {np.median(steps):.3f}; load {min(loads):.2f}-{max(loads):.2f})")
  ratios = [r["r1jax"]["ratio"] for r in per_round if "r1jax" in r and len(r) > 1]
  if ratios:
    print(f"  r1jax / fastest peer of the same round: {', '.join(f'{x:.2f}' for x in ratios)} "
          f"(median {np.median(ratios):.2f}, range {min(ratios):.2f}-{max(ratios):.2f})")


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--workloads", default="table,25m,b16g16")
  ap.add_argument("--frameworks", default="tunix,trl,r1jax")
  ap.add_argument("--steps", type=int, default=6)
  ap.add_argument("--rounds", type=int, default=1,
                  help="run every framework this many times per workload, interleaved (each "
                       "round starts with the next one), and print each round's table, then "
                       "the per-round ratios to the fastest peer and their median")
  ap.add_argument("--json", default="", help="also write the results here")
  ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
  ap.add_argument("--files", default="", help=argparse.SUPPRESS)
  ap.add_argument("--B", type=int, default=8, help=argparse.SUPPRESS)
  ap.add_argument("--G", type=int, default=8, help=argparse.SUPPRESS)
  ap.add_argument("--out", default="", help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.worker == "r1jax":
    with open(args.files) as f:
      files = json.load(f)
    run_r1jax(files, args.B, args.G, args.steps, args.out)
    return

  import jax
  peak = matmul_peak()
  print(f"float32 matmul peak (jitted 2048^3, best of 8, YNNPACK or Eigen): {peak / 1e9:.1f} GFLOP/s; "
        f"cores usable {len(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.2f}")
  summary = {}
  for wl in args.workloads.split(","):
    shape, b, g = WORKLOADS[wl]
    with tempfile.TemporaryDirectory() as tmp:
      root = pathlib.Path(tmp)
      files = write_files(root, shape, b)
      cfg = files.pop("cfg")
      with open(root / "files.json", "w") as f:
        json.dump(files, f)
      print(f"\n== workload {wl}: Qwen2 {files['params'] / 1e6:.2f}M params ({shape}), vocab "
            f"{VOCAB}, B={b} x G={g}, L={NEW_TOKENS}, prompts {files['prompt_tokens'][0]}-"
            f"{files['prompt_tokens'][1]} tokens, beta 0.04, {args.steps} steps")
      flops = phase_flops(cfg, b * g, files["prompt_tokens"][1], NEW_TOKENS)
      names = args.frameworks.split(",")
      per_round = []
      for rnd in range(args.rounds):
        # Each round starts with the next framework, so no framework always runs first (or
        # right after the compile-heavy one) when the machine drifts over the workload.
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        results = {}
        for name in order:
          res = run_one(name, files, b, g, args.steps, root)
          peak = max(peak, matmul_peak())
          if res is not None:
            results[name] = res
        if args.rounds > 1:
          print(f"-- round {rnd + 1} of {args.rounds} (order {', '.join(order)})")
        per_round.append(report(results, flops, peak))
      if args.rounds > 1:
        print_rounds(per_round)
      summary[wl] = per_round[0] if args.rounds == 1 else {"rounds": per_round}
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"peak": peak, "workloads": summary}, f, indent=1)


if __name__ == "__main__":
  main()
