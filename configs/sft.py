"""Supervised fine-tuning stages: cold start, SFT on the curated mix, pre-training.

Presets (`--config=configs/sft.py:<preset>`):
  tiny           a tiny model on procedural Countdown worked solutions (CPU, ~1 min)
  pretrain_tiny  next-token pre-training of a tiny base model on a synthetic corpus
  cold_start     cold-start SFT from a base checkpoint on a JSONL of long-CoT examples
"""
from r1jax.config import base_config


def get_config(arg: str = "tiny"):
  c = base_config()
  c.stage = "sft"
  c.data = dict(sources=(dict(kind="procedural", task="countdown", num_examples=2000,
                              error_rate=0.0, weight=1.0),),
                pack=False, overflow="truncate", loss_on_prompt=False)
  if arg == "tiny":
    c.train.num_steps = 100
    c.train.batch_size = 16
    c.train.seq_len = 128
  elif arg == "pretrain_tiny":
    c.stage = "pretrain"
    c.train.num_steps = 300
    c.data.sources = (dict(kind="procedural", task="arithmetic", num_examples=5000,
                           error_rate=0.3, weight=1.0),)
  elif arg == "cold_start":
    # DeepSeek-R1 cold start: a few thousand readable long-CoT examples, then RL.
    c.model.preset = ""
    c.init_from = ""           # set: a Hugging Face directory or an r1jax workdir
    c.data.sources = (dict(kind="jsonl", path="", prompt_field="prompt",
                           completion_field="completion", weight=1.0),)
    c.model.dtype = "bfloat16"
    c.model.remat = True
    c.optim.learning_rate = 1e-5
    c.optim.warmup_steps = 50
    c.optim.weight_decay = 0.01
    c.train.num_steps = 1000
    c.train.batch_size = 64
    c.train.seq_len = 4096
    c.data.pack = True
  else:
    raise ValueError(f"Unknown preset {arg!r} for configs/sft.py (tiny, pretrain_tiny, cold_start)")
  return c
