"""R1-Zero: GRPO straight on a base model with rule-based rewards (accuracy + format).

Presets (`--config=configs/r1_zero.py:<preset>`):
  tiny                    CPU: a tiny model (init_from a pretrain workdir) on procedural arithmetic
  qwen2.5-0.5b-gsm8k      accelerator: Qwen2.5-0.5B base from a local HF directory, GSM8K
  qwen2.5-math-1.5b-math  accelerator: Qwen2.5-Math-1.5B base, MATH (MATH-500 held out)

Hyper-parameters and their sources:
  group_size G = 16, beta = 0.001 (k3), temperature 1     DeepSeek-R1 (2501.12948), sec. 2.2 / DeepSeekMath
  clip epsilon 0.2, per-sequence token mean               DeepSeekMath GRPO (2402.03300)
  learning rate 3e-6 (R1 reports 3e-6 for R1-Zero-style RL), constant after warmup
  advantage (r - mean) / (std + 1e-4), ddof 0             rl.adv_ddof / rl.adv_eps (implementations differ)
  eval: pass@1 over k samples at temperature 0.6, top-p 0.95   DeepSeek-R1 evaluation protocol
"""
import ml_collections

from r1jax import stage_config as sc
from r1jax.config import base_config


def rl_defaults(c):
  """Sets the R1-Zero GRPO sections (stage, rl, rewards, eval) on a base config.

  The sections are generated from the typed dataclasses (`r1jax.stage_config`), where
  every default lives; only what R1-Zero changes is set here. The loss is the "grpo"
  preset (beta 0.001, k3, eps 0.2/0.2, per-sequence token mean): switching
  `--config.rl.loss.preset=gspo` gives GSPO's fields, and any loss field set explicitly
  (e.g. `--config.rl.loss.beta=0`) overrides the preset.
  """
  c.stage = "grpo"
  c.template = "r1_zero"
  c.rl = sc.rl_section()
  c.rl.loss.preset = "grpo"
  c.rl.sample_chunks = 2         # reward scoring of chunk k overlaps sampling of chunk k+1
  c.rewards = sc.configdict_of(sc.RewardsConfig)
  c.eval = sc.configdict_of(sc.GRPOEvalConfig)
  c.eval.max_new_tokens = 1024
  c.task = ml_collections.ConfigDict()
  c.eval_task = ml_collections.ConfigDict()
  c.optim.learning_rate = 3e-6
  c.optim.schedule = "constant"
  c.optim.warmup_steps = 10
  c.optim.b2 = 0.99
  c.train.checkpoint_every = 50
  c.train.log_every = 1


def get_config(arg: str = "tiny"):
  c = base_config()
  rl_defaults(c)
  if arg == "tiny":
    c.model.preset = ""          # from init_from (a tiny pretrain workdir)
    c.init_from = ""             # set: e.g. runs/quickstart/pretrain
    c.task = ml_collections.ConfigDict(dict(name="arithmetic", num_examples=20000, seed=0,
                                            min_ops=2, max_ops=3, max_value=9))
    c.eval_task = ml_collections.ConfigDict(dict(name="arithmetic", split="test",
                                                 num_examples=200, seed=0, min_ops=2, max_ops=3,
                                                 max_value=9))
    c.rl.update(num_prompts=16, group_size=8, max_prompt_len=64, max_new_tokens=64,
                cache_dtype="float32")
    c.rl.loss.beta = 0.0
    c.rewards.num_workers = 0
    c.rewards.timeout_s = 2.0
    c.eval.update(every=20, num_samples=2, max_new_tokens=64, batch_size=100)
    c.optim.learning_rate = 3e-4
    c.optim.warmup_steps = 0
    c.train.num_steps = 60
    c.train.checkpoint_every = 20
  elif arg in ("qwen2.5-0.5b-gsm8k", "qwen2.5-math-1.5b-math"):
    c.model.preset = ""
    c.init_from = ""             # set: a local Hugging Face directory of the base model
    c.model.dtype = "bfloat16"
    c.model.remat = True
    c.mesh.shape = (1, -1, 1)    # FSDP over all devices
    if arg == "qwen2.5-0.5b-gsm8k":
      c.task = ml_collections.ConfigDict(dict(name="gsm8k", split="train"))
      c.eval_task = ml_collections.ConfigDict(dict(name="gsm8k", split="test", max_examples=500))
      c.rl.max_new_tokens = 1024
    else:
      c.task = ml_collections.ConfigDict(dict(name="jsonl", path="", question_field="problem",
                                              answer_field="answer"))  # set: MATH train JSONL
      c.eval_task = ml_collections.ConfigDict(dict(name="math500"))
      c.rl.max_new_tokens = 3000
    c.rl.minibatch_size = 64
    c.optim.grad_accum_steps = 4
    c.train.num_steps = 1000
  else:
    raise ValueError(f"Unknown preset {arg!r} for configs/r1_zero.py "
                     "(tiny, qwen2.5-0.5b-gsm8k, qwen2.5-math-1.5b-math)")
  return c
