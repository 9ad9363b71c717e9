"""DeepSeek-R1 in miniature: every stage of the paper, chained, on the tiny preset (2-core CPU).

  python -m r1jax.main --config=configs/r1_pipeline.py:tiny --workdir=runs/r1_pipeline
  python experiments/run_r1_pipeline.py            # the same, and records the table

The chain (each stage runs in `<workdir>/<name>`; see docs/pipeline.md):

  pretrain         base model + tokenizer from scratch on worked arithmetic (`tiny`: half of the
                   solutions read left to right, 60% answer in prose: weak but non-zero
                   ability), R1-Zero format
  r1_zero          GRPO on the base (accuracy + format), R1-Zero
  cold_start_data  R1-Zero's verified outputs, filtered and rewritten in the readable format
                   (reasoning, then a summary): rejection sampling, mode 'cold_start'
  cold_start       SFT of the base on that data                                 (R1 stage 1)
  reasoning_rl     GRPO from cold_start: accuracy + format + language            (R1 stage 2)
  rejection        rejection sampling of reasoning_rl: correct, readable, shortest (R1 stage 3)
  sft_mix          SFT of the *base* on those traces + non-reasoning chit-chat    (R1 stage 4)
  all_scenarios    GRPO from sft_mix on arithmetic + general prompts, rule-based rewards and a
                   TOY scorer (helpfulness on the summary, harmlessness on everything) (stage 5)
  distill          SFT of a smaller `tiny-student` from scratch, own tokenizer, on the same mix

The chit-chat data is written by the pipeline itself (`prepare`, `r1jax.data.chitchat`). After
each model stage the held-out arithmetic test split (never trained on: splits are by a hash of
the problem) is evaluated: pass@1 over k=4 samples at temperature 0.6, top-p 0.95, and cons@4.
Stages in the R1-Zero format are evaluated with its prompt, the others with the readable one.

Presets: `tiny` (seed 0) or `tiny,seed=N`; `tiny_test` is a much shorter chain for the tests.
Any field can be overridden, e.g. `--config.stages.r1_zero.train.num_steps=40`.
"""

import ml_collections

from r1jax.config import base_config, sibling_config


def _sibling(name: str):
  return sibling_config(__file__, name)


ARITH = dict(name="arithmetic", min_ops=2, max_ops=3, max_value=9)
CHITCHAT_SFT = "{workdir}/data/chitchat_sft.jsonl"
CHITCHAT_PROMPTS = "{workdir}/data/chitchat_prompts.jsonl"
ORDER = ("pretrain", "r1_zero", "cold_start_data", "cold_start", "reasoning_rl", "rejection",
         "sft_mix", "all_scenarios", "distill")


def _pretrain(seed: int, steps: int, arith: dict, error_rate: float, examples: int,
              untagged_rate: float = 0.0):
  return _sibling("sft").tiny_base_pretrain(seed, steps, arith, error_rate, examples,
                                            untagged_rate)


def _grpo_common(c, seed: int, steps: int, num_prompts: int, arith: dict, examples: int):
  c.seed = seed
  task = dict(arith, seed=seed, num_examples=examples)
  if "sources" in c.task:
    c.task.sources = tuple(dict(s, **task) if s["name"] == "arithmetic" else s
                           for s in c.task.sources)
  else:
    c.task.update(task)
  # No periodic held-out eval inside the stage: the pipeline evaluates after it (same problems
  # for every stage), which keeps the chain short on CPU.
  c.eval_task = ml_collections.ConfigDict(dict(name=""))
  c.rl.update(num_prompts=num_prompts, group_size=8, max_prompt_len=48, max_new_tokens=64,
              temperature=1.0, cache_dtype="float32")
  c.rl.loss.beta = 0.001
  c.eval.every = 0                 # the pipeline evaluates after the stage
  c.optim.update(learning_rate=2e-4, schedule="constant", warmup_steps=5, b2=0.99)
  c.train.update(num_steps=steps, checkpoint_every=steps, log_every=1)
  return c


def _r1_zero(seed: int, steps: int, num_prompts: int, arith: dict, examples: int):
  c = _sibling("r1_zero").get_config("tiny")
  c.template = "r1_zero_bare"
  c.task = ml_collections.ConfigDict(dict(arith))
  c.rewards.weights = {"accuracy": 1.0, "format": 0.5}
  return _grpo_common(c, seed, steps, num_prompts, arith, examples)


def _rejection(seed: int, mode: str, template: str, num_prompts: int, arith: dict,
               batch_size: int = 64):
  c = _sibling("rejection_sampling").get_config("cold_start" if mode == "cold_start" else "tiny")
  c.seed = seed
  c.rejection.update(
      tasks=[dict(arith, split="train", num_examples=num_prompts, seed=seed + 100)],
      template=template, num_samples=4, temperature=0.7, max_new_tokens=64, max_prompt_len=48,
      batch_size=batch_size, chunk_size=64, seed=seed, select="shortest", max_per_prompt=1,
      stop_strings=["</answer>"] if template == "r1_zero_bare" else [])
  return c


def _sft(seed: int, steps: int, sources, lr: float = 1e-3):
  c = _sibling("sft_mix").get_config("tiny")
  c.seed = seed
  c.data.sources = sources
  c.optim.update(learning_rate=lr, warmup_steps=min(10, steps))
  c.train.update(num_steps=steps, batch_size=16, seq_len=96, log_every=10, checkpoint_every=steps,
                 num_epochs=0)     # the recorded miniature run is step-based
  return c


def _jsonl(path: str = "", weight: float = 1.0):
  return dict(kind="jsonl", path=path, prompt_field="prompt", completion_field="completion",
              weight=weight)


def get_config(arg: str = "tiny"):
  preset, opts = _sibling("sft_mix").parse_arg(arg, seed="0")
  seed = int(opts["seed"])
  if preset == "tiny":
    # The quickstart's recipe (configs/quickstart.py): a base whose errors are the strategy
    # (left-to-right reading) and the answer format (prose instead of `<answer>`), with R1's
    # strict answer rule everywhere.
    n = dict(pretrain=1500, grpo=40, prompts=16, rs=256, sft=80, distill=300, eval=100, batch=64,
             error_rate=0.5, examples=6000, untagged=0.6)
    arith = dict(ARITH, max_value=5)
  elif preset == "tiny_test":
    # Every stage runs in seconds. The problems are one or two operations on digits up to 3 and the
    # base sees no mistakes, so that even a briefly trained model gets some right and every
    # stage has data to pass on; the numbers mean nothing here.
    n = dict(pretrain=100, grpo=2, prompts=8, rs=32, sft=30, distill=4, eval=8, batch=32,
             error_rate=0.0, examples=300, untagged=0.0)
    arith = dict(name="arithmetic", min_ops=1, max_ops=2, max_value=3)
  else:
    raise ValueError(f"Unknown preset {preset!r} for configs/r1_pipeline.py (tiny, tiny_test)")
  rr, alls, dist = _sibling("r1_reasoning_rl"), _sibling("r1_all_scenarios"), _sibling("distill")

  reasoning_rl = _grpo_common(rr.get_config("tiny"), seed, n["grpo"], n["prompts"], arith,
                              n["examples"])
  all_scenarios = alls.get_config(f"tiny,general={CHITCHAT_PROMPTS}")
  all_scenarios = _grpo_common(all_scenarios, seed, n["grpo"], n["prompts"], arith,
                              n["examples"])
  distill = dist.get_config(f"tiny,general={CHITCHAT_SFT}")
  distill.seed = seed
  distill.train.update(num_steps=n["distill"], checkpoint_every=n["distill"])

  c = ml_collections.ConfigDict()
  c.stage = "pipeline"
  c.seed = seed
  c.mesh = ml_collections.ConfigDict(dict(shape=(-1, 1, 1)))
  c.order = ORDER
  c.stages = ml_collections.ConfigDict(dict(
      pretrain=_pretrain(seed, n["pretrain"], arith, n["error_rate"], 8000 if preset == "tiny"
                         else n["examples"], n["untagged"]),
      r1_zero=_r1_zero(seed, n["grpo"], n["prompts"], arith, n["examples"]),
      cold_start_data=_rejection(seed, "cold_start", "r1_zero_bare", n["rs"], arith, n["batch"]),
      cold_start=_sft(seed, n["sft"], (_jsonl(),)),
      reasoning_rl=reasoning_rl,
      rejection=_rejection(seed, "rejection", "r1_cold_start", n["rs"], arith, n["batch"]),
      sft_mix=_sft(seed, n["sft"], (_jsonl(weight=0.75), _jsonl(CHITCHAT_SFT, 0.25))),
      all_scenarios=all_scenarios,
      distill=distill))
  c.init_from = ml_collections.ConfigDict(dict(
      r1_zero="pretrain", cold_start_data="r1_zero", cold_start="pretrain",
      reasoning_rl="cold_start", rejection="reasoning_rl", sft_mix="pretrain",
      all_scenarios="sft_mix"))      # distill: none, the student starts from scratch
  c.data_from = ml_collections.ConfigDict(dict(
      cold_start="cold_start_data", sft_mix="rejection", distill="rejection"))
  c.prepare = ({"fn": "r1jax.data.chitchat:write_chitchat",
                "kwargs": {"subdir": "data", "seed": seed, "template": "r1_cold_start"}},)
  readable = "r1_cold_start"
  c.eval = ml_collections.ConfigDict(dict(
      after=("pretrain", "r1_zero", "cold_start", "reasoning_rl", "sft_mix", "all_scenarios",
             "distill"),
      template=readable,
      templates=dict(pretrain="r1_zero_bare", r1_zero="r1_zero_bare"),
      task=dict(arith, split="test", num_examples=n["eval"], seed=0),
      num_samples=4, temperature=0.6, top_p=0.95, max_new_tokens=64, batch_size=n["eval"],
      max_prompt_len=48, seed=1234))
  if preset == "tiny":
    for name in ("r1_zero", "cold_start_data", "reasoning_rl", "rejection", "all_scenarios"):
      _strict(c.stages[name])
    # The readable cold-start summary states the answer where a strict verifier reads it. (Not
    # `\\boxed{}`: the tiny tokenizer never saw a backslash, and byte pieces are hard to copy.)
    c.stages.cold_start_data.rejection.summary_format = "The answer is <answer> {answer} </answer>."
    for name in ("reasoning_rl", "all_scenarios"):
      # The format reward must accept that summary: tags in order, prose around them allowed.
      rw = c.stages[name].rewards
      weights = dict(rw.weights.to_dict() if hasattr(rw.weights, "to_dict") else rw.weights)
      weights["format_soft"] = weights.pop("format", 0.5)
      weights["language"] = 0.1     # the recorded miniature run predates the paper's weight 1.0
      rw.weights = weights
      rw.kwargs = dict(rw.kwargs.to_dict(), format_soft={"require_answer_tag": True},
                       language={"target_language": "en"})
      # A cold-started tiny policy is noisy at temperature 1; a smaller step keeps RL from
      # drifting off the SFT solution before the reward can steer it.
      c.stages[name].optim.learning_rate = 5e-5
    # Correctness is the filter that matters here; the strict R1 format check would reject
    # the readable summary's answer tags.
    c.stages.rejection.rejection.require_format = False
    c.eval.rewards = {"weights": {"accuracy": 1.0}, "kwargs": {"accuracy": STRICT_ACCURACY},
                      "num_workers": 0}
  return c


# R1's accuracy rule: the final answer must be in the specified format (`<answer>` for R1-Zero,
# `\\boxed{}` in the readable summary), so the last-number guess is off.
STRICT_ACCURACY = {"fallback": "none"}


def _strict(c):
  """Strict answer extraction for every reward / verification config a stage holds."""
  for holder in ("rewards",):
    if holder in c:
      kw = dict(c[holder].kwargs.to_dict() if hasattr(c[holder].kwargs, "to_dict")
                else c[holder].kwargs or {})
      kw["accuracy"] = dict(kw.get("accuracy", {}), **STRICT_ACCURACY)
      c[holder].kwargs = kw
  if "rejection" in c:
    reward = c.rejection.reward
    kw = dict(reward.kwargs.to_dict() if hasattr(reward.kwargs, "to_dict") else reward.kwargs or {})
    kw["accuracy"] = dict(kw.get("accuracy", {}), **STRICT_ACCURACY)
    reward.kwargs = kw
  return c
