"""Supervised fine-tuning stages: cold start, SFT on the curated mix, pre-training.

Presets (`--config=configs/sft.py:<preset>`):
  tiny           a tiny model on procedural Countdown worked solutions (CPU, ~1 min)
  pretrain_tiny  next-token pre-training of a tiny base model on a synthetic corpus
  cold_start     cold-start SFT from a base checkpoint on a JSONL of long-CoT examples
"""
import ml_collections

from r1jax.config import base_config


def tiny_base_pretrain(seed: int, steps: int, arith: dict, error_rate: float, examples: int,
                       untagged_rate: float = 0.0, log_every: int = 50,
                       checkpoint_every: int | None = None, seq_len: int = 80,
                       corpus: dict | None = None):
  """Pre-training of a tiny base model (and its tokenizer) on the synthetic arithmetic corpus.

  The corpus is deliberately imperfect (see `r1jax.data.procedural.make_sft_corpus`):
  `error_rate` of the solutions read the expression left to right, and `untagged_rate` give
  the answer in prose instead of `<answer>` tags. Used by the quickstart and R1 in miniature.
  `corpus`: further `make_sft_corpus` options (e.g. `cot_style='worded'`, `mix_rate`,
  `reflect_rate`); `seq_len`: the training window (a worded CoT needs more than 80 tokens).
  """
  c = base_config()
  c.stage = "pretrain"
  c.seed = seed
  c.model.preset = "tiny"
  c.tokenizer.vocab_size = 400
  c.data = ml_collections.ConfigDict(dict(
      sources=(dict(kind="procedural", task="arithmetic", num_examples=examples,
                    error_rate=error_rate, template="r1_zero_bare", seed=seed,
                    options=dict({k: v for k, v in arith.items() if k != "name"},
                                 error_mode="left_to_right", untagged_rate=untagged_rate,
                                 **(corpus or {}))),),
      pack=False, overflow="truncate", loss_on_prompt=True))
  c.optim.update(learning_rate=3e-3, warmup_steps=min(50, steps // 4))
  c.train.update(num_steps=steps, batch_size=32, seq_len=seq_len, log_every=log_every,
                 checkpoint_every=checkpoint_every or steps)
  return c


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
