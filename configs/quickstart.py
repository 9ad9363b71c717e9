"""Quickstart: R1-Zero in miniature on a 2-core CPU (10-15 minutes).

  python -m r1jax.main --config=configs/quickstart.py --workdir=runs/quickstart     # seed 0
  python -m r1jax.main --config=configs/quickstart.py:1 --workdir=runs/quickstart1  # seed 1

1. `pretrain`: a SentencePiece tokenizer and the `tiny` preset (4 layers, d=128, 0.9M
   params) are trained from scratch on 8,000 synthetic worked solutions of 2-3-operation
   integer arithmetic in the R1 format. The corpus is deliberately imperfect, so the base
   model has some, but weak, ability:
     - half of the solutions read the expression left to right, ignoring precedence and
       parentheses (right on some problems, wrong on others);
     - 60% end with the answer in prose ("</think> The answer is 7.") instead of
       `<answer> 7 </answer>`, which R1's rule-based verifier does not accept.
2. Held-out evaluation: 200 test problems (splits are by a hash of the problem, so test
   problems never appear in training), pass@1 averaged over k=4 samples at temperature
   0.6, top-p 0.95, and cons@4, with the same strict answer rule as the reward.
3. `r1_zero`: GRPO from the base model with accuracy (answer in `<answer>`, checked by
   rule) + 0.5 x format rewards, G = 8, beta = 0.001 (k3) to a frozen reference.
4. Held-out evaluation again; the table, the reward curve and the training curves are
   written to the workdir.

Stage fields can be overridden, e.g. `--config.stages.r1_zero.train.num_steps=200`.
"""
import ml_collections

from r1jax.config import base_config, sibling_config

TASK = dict(name="arithmetic", min_ops=2, max_ops=3, max_value=5)
# R1's accuracy rule: the answer must be in the specified format (here `<answer>`), so a
# bare "The answer is 7." earns nothing; `fallback='none'` turns off the last-number guess.
REWARDS = dict(weights={"accuracy": 1.0, "format": 0.5},
               kwargs={"accuracy": {"fallback": "none"}}, num_workers=0, timeout_s=2.0)


def _pretrain(seed: int):
  return sibling_config(__file__, "sft").tiny_base_pretrain(
      seed, steps=1500, arith=TASK, error_rate=0.5, examples=8000, untagged_rate=0.6,
      log_every=100, checkpoint_every=600)


def _r1_zero(seed: int):
  # R1-Zero's defaults (configs/r1_zero.py), scaled down for a 0.9M-parameter model on CPU.
  c = base_config()
  sibling_config(__file__, "r1_zero").rl_defaults(c)
  c.seed = seed
  c.model.preset = ""            # from init_from (the pretrain stage)
  c.template = "r1_zero_bare"
  c.task = ml_collections.ConfigDict(dict(TASK, num_examples=6000, seed=seed))
  c.eval_task = ml_collections.ConfigDict(dict(TASK, split="test", num_examples=200, seed=0))
  # Prompt widths from the data: the task's prompts are ~20 tokens, not max_prompt_len.
  c.rl.update(num_prompts=16, group_size=8, max_prompt_len=48, max_new_tokens=64,
              cache_dtype="float32", auto_prompt_buckets=True)
  c.rewards = ml_collections.ConfigDict(dict(REWARDS))
  c.eval.update(every=25, batch_size=100, max_new_tokens=64, at_start=False)
  c.optim.update(learning_rate=2e-4, warmup_steps=5)
  c.train.update(num_steps=100, checkpoint_every=25, log_every=1)
  return c


def get_config(arg: str = ""):
  seed = int(arg) if arg else 0
  c = ml_collections.ConfigDict()
  c.stage = "quickstart"
  c.seed = seed
  c.mesh = ml_collections.ConfigDict(dict(shape=(-1, 1, 1)))
  c.order = ("pretrain", "r1_zero")
  c.stages = ml_collections.ConfigDict(dict(pretrain=_pretrain(seed), r1_zero=_r1_zero(seed)))
  c.init_from = ml_collections.ConfigDict(dict(r1_zero="pretrain"))
  c.data_from = ml_collections.ConfigDict()
  c.eval = ml_collections.ConfigDict(dict(
      after=("pretrain", "r1_zero"), template="r1_zero_bare",
      task=dict(TASK, split="test", num_examples=200, seed=0),
      num_samples=4, temperature=0.6, top_p=0.95, max_new_tokens=64, batch_size=100,
      max_prompt_len=48, seed=1234, rewards=REWARDS))
  return c
