"""R1 stage 2, reasoning-oriented RL: GRPO from the cold-start SFT checkpoint.

Presets (`--config=configs/r1_reasoning_rl.py:<preset> --config.init_from=<cold-start workdir>`):
  tiny      CPU: a tiny cold-start workdir (`configs/sft.py` / `configs/r1_pipeline.py:tiny`) on
            procedural arithmetic, in the readable R1 format (`r1_cold_start`: reasoning, summary)
  math      accelerator: a cold-started Qwen2.5-Math-1.5B on a MATH-style train JSONL

Rewards (weights in `config.rewards.weights`, DeepSeek-R1 sec. 2.3.2): accuracy (rule-based
verifier) + format (`<think>...</think>` then a summary: `require_answer_tag=False`, since the
readable format has no answer tags) + language consistency (share of CoT words in the language of
the question, detected per row; R1 sums it with accuracy, so its weight is 1.0 as well). In the tiny
run the arithmetic CoT is numbers only, which has no words, so `language` is a constant 0 there
unless the policy starts writing words.
"""

import ml_collections

from r1jax.config import base_config, sibling_config


def _r1_zero_module():
  return sibling_config(__file__, "r1_zero")


ARITH = dict(name="arithmetic", min_ops=2, max_ops=3, max_value=9)


def reasoning_rewards(accuracy: float = 1.0, fmt: float = 0.5, language: float = 1.0,
                      num_workers: int = 0) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      weights={"accuracy": accuracy, "format": fmt, "language": language},
      kwargs={"format": {"require_answer_tag": False}, "language": {"target_language": "auto"}},
      num_workers=num_workers, timeout_s=2.0 if num_workers == 0 else 10.0))


def get_config(arg: str = "tiny"):
  c = base_config()
  _r1_zero_module().rl_defaults(c)
  c.template = "r1_cold_start"
  c.rl.stop_strings = ()            # the readable format ends with eos after the summary
  c.rewards = reasoning_rewards()
  if arg == "tiny":
    c.model.preset = ""             # from init_from (the cold-start SFT workdir)
    c.init_from = ""                # set: e.g. runs/r1_pipeline/cold_start
    c.task = ml_collections.ConfigDict(dict(ARITH, num_examples=6000, seed=0))
    c.eval_task = ml_collections.ConfigDict(dict(ARITH, split="test", num_examples=200, seed=0))
    c.rl.update(num_prompts=16, group_size=8, max_prompt_len=48, max_new_tokens=64,
                cache_dtype="float32")
    c.eval.update(every=20, num_samples=4, max_new_tokens=64, batch_size=100, at_start=False)
    c.optim.update(learning_rate=2e-4, warmup_steps=5)
    c.train.update(num_steps=60, checkpoint_every=20, log_every=1)
  elif arg == "math":
    c.model.preset = ""
    c.init_from = ""                # set: the cold-start SFT workdir of a Qwen2.5-Math-1.5B base
    c.model.update(dtype="bfloat16", remat=True)
    c.mesh.shape = (1, -1, 1)
    c.template = "qwen2.5_math"
    c.task = ml_collections.ConfigDict(dict(name="jsonl", path="", question_field="problem",
                                            answer_field="answer"))  # set: MATH train JSONL
    c.eval_task = ml_collections.ConfigDict(dict(name="math500"))
    c.rl.update(max_new_tokens=3000, max_prompt_len=512, minibatch_size=64)
    c.rewards = reasoning_rewards(num_workers=8)
    c.optim.grad_accum_steps = 4
    c.train.num_steps = 1000
  else:
    raise ValueError(f"Unknown preset {arg!r} for configs/r1_reasoning_rl.py (tiny, math)")
  return c
