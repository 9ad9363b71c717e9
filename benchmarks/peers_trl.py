"""TRL's side of benchmarks/peers.py (run with .venv-trl/bin/python; see that file).

GRPOTrainer on CPU torch with HF generate, on the checkpoint and prompts peers.py wrote.
Phase times come from wrapping the trainer's own methods: `_generate_single_turn`
(sampling) and `_get_per_token_logps_and_entropies` called with the reference model;
the step time from a TrainerCallback. update = step - sample - reference.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--files", required=True)
  ap.add_argument("--B", type=int, default=8)
  ap.add_argument("--G", type=int, default=8)
  ap.add_argument("--steps", type=int, default=6)
  ap.add_argument("--out", required=True)
  args = ap.parse_args()
  with open(args.files) as f:
    files = json.load(f)
  import datasets
  import transformers
  import trl
  from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, TrainerCallback
  from trl import GRPOConfig, GRPOTrainer

  ids = np.load(files["logit_ids"])
  model = AutoModelForCausalLM.from_pretrained(files["ckpt"], dtype=torch.float32)
  with torch.no_grad():
    logits = model(torch.as_tensor(ids, dtype=torch.long)).logits.float().numpy()
  np.save(args.out + ".logits.npy", logits)

  tok = PreTrainedTokenizerFast.from_pretrained(files["ckpt"])
  tok.padding_side = "left"
  with open(files["prompts"]) as f:
    qs = [json.loads(line)["question"] + "\n" for line in f]
  n = args.B * args.steps
  data = datasets.Dataset.from_list([{"prompt": qs[i % len(qs)]} for i in range(n)])
  lens: list[int] = []

  def reward(completions, completion_ids=None, **kw):
    lens.extend(len(c) for c in completion_ids)
    return [float("</answer>" in c) for c in completions]

  rows = args.B * args.G
  with tempfile.TemporaryDirectory() as tmp:
    cfg = GRPOConfig(
        output_dir=tmp, per_device_train_batch_size=rows, num_generations=args.G,
        max_completion_length=64, temperature=1.0, top_p=1.0, top_k=0, beta=0.04,
        learning_rate=1e-5, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=1.0, max_steps=args.steps, num_iterations=1, logging_steps=1,
        report_to="none", use_cpu=True, bf16=False, save_strategy="no", shuffle_dataset=False,
        dataloader_num_workers=0, generation_kwargs={"min_new_tokens": 64}, seed=0)
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=cfg, train_dataset=data,
                          processing_class=tok)
    times = {"sample": [], "reference": [], "step": []}
    cur = {"sample": 0.0, "reference": 0.0}

    gen = trainer._generate_single_turn

    def timed_gen(*a, **k):
      t0 = time.perf_counter()
      out = gen(*a, **k)
      cur["sample"] += time.perf_counter() - t0
      return out
    trainer._generate_single_turn = timed_gen
    logps = trainer._get_per_token_logps_and_entropies

    def timed_logps(m, *a, **k):
      t0 = time.perf_counter()
      out = logps(m, *a, **k)
      if m is trainer.ref_model:
        cur["reference"] += time.perf_counter() - t0
      return out
    trainer._get_per_token_logps_and_entropies = timed_logps

    class Timer(TrainerCallback):
      def on_step_begin(self, *a, **k):
        cur.update(sample=0.0, reference=0.0, t0=time.perf_counter())

      def on_step_end(self, *a, **k):
        times["step"].append(time.perf_counter() - cur["t0"])
        times["sample"].append(cur["sample"])
        times["reference"].append(cur["reference"])
    trainer.add_callback(Timer())
    trainer.train()
  res = {**times,
         "update": [s - a - r for s, a, r in zip(times["step"], times["sample"],
                                                 times["reference"])],
         "tokens": [float(rows * 64)] * len(times["step"]),
         "min_len": min(lens), "max_len": max(lens),
         "version": f"TRL {trl.__version__} (torch {torch.__version__.split('+')[0]} CPU, "
                    f"transformers {transformers.__version__})"}
  res["tokens"] = [float(sum(lens[i * rows:(i + 1) * rows])) for i in range(len(times["step"]))]
  with open(args.out, "w") as f:
    json.dump(res, f)


if __name__ == "__main__":
  main()
