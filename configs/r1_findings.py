"""R1's findings in miniature (issue 16): the branches `experiments/r1_findings.py` runs.

  python -m r1jax.main --config=configs/r1_findings.py:tiny,seed=0 --workdir=runs/r1_findings_s0
  python experiments/r1_findings.py --seeds 0,1      # every branch, every seed, and the table

One pipeline per seed (`r1jax.pipeline`), stages shared between findings:

  pretrain        the quickstart's base (configs/quickstart.py: tiny preset, 8,000 worked solutions
                  of 2-3-operation arithmetic, SentencePiece tokenizer), trained 1000 steps, with
                  untagged_rate=0: every solution ends in `<answer>`, so the base already writes
                  the R1 format on every sample and any RL gain is correctness, not format.
                  `error_rate` (0.4) of the solutions read the expression left to right (ignoring
                  precedence), the rest use precedence. The first design (error_rate 0.7, 600
                  steps: `error_rate=0.7,pretrain_steps=600`) gave a base right on ~1% of the
                  precedence-sensitive problems, so GRPO groups there had no variance and RL only
                  removed slips elsewhere; this one sets out on the precedence order about half
                  the time and is right on ~9% of them: weak, but with signal for RL.
  r1_zero_shipped the quickstart's R1-Zero stage unchanged (lr 2e-4, G=8, 16 prompts, 100 steps)
  r1_zero         the findings' R1-Zero recipe: lr 5e-5, G=16, 8 prompts (the same 128 samples
                  per step as the shipped stage), 300 steps (`rl_steps=N`; the first records
                  of both designs ran 150)
  r1_zero_lr      ablation: the shipped stage with only the learning rate lowered to 5e-5
  r1_zero_t06     the findings recipe sampling its rollouts at temperature 0.6 (the evaluation's)
                  instead of 1: the loss divides the logits by the same temperature, so GRPO
                  optimises the expected reward of the tempered policy the evaluation samples.
                  (Tried on the first design's base: no better than T 1.)
  r1_zero_ds      the findings recipe with DAPO's dynamic sampling (`rl.dynamic_sampling`: twice
                  the prompts are sampled and the update keeps the groups whose rewards differ),
                  so zero-variance groups (24-42% of the findings recipe's) do not thin the batch

  pretrain_lang   findings 3 and 6's base: as pretrain (same problems, sizes, error_rate), but a
                  worded CoT ("3 times 4 is 12, then 12 plus 5 is 17."), `mix_rate` (0.3) of the
                  solutions switching to Chinese from a step on, `reflect_rate` (0.2) correcting a
                  slip after "wait, let me check" (r1jax.data.procedural.make_sft_corpus); window 96
  rl_lang_off     the findings recipe from pretrain_lang, accuracy + format rewards
  rl_lang_on      the same + R1's language-consistency reward (weight `language_weight`, 1.0)

Finding 0 (RL improves correctness, not only format) compares pretrain with r1_zero_shipped and
r1_zero; finding 1 (R1-Zero without SFT: held-out pass@1 rises, cons@k > pass@1) reads r1_zero.
Held-out evaluation after every stage is the quickstart's: 200 hash-disjoint test problems,
pass@1 over k=4 samples at temperature 0.6, top-p 0.95, and cons@4, strict `<answer>` rule.
Finding 3 (language consistency removes mixing at a small accuracy cost) compares rl_lang_off with
rl_lang_on; finding 6 (response length and reflection over RL steps) reads r1_zero and rl_lang_off.

Presets: `tiny` (the recorded run), `small` (the slow test: shorter stages, same structure).
Options: `seed=N`, `branches=r1_zero_shipped+r1_zero` (which RL branches to run; default all),
`error_rate=0.4` and `pretrain_steps=N` (the base's corpus and length; the preset's by default),
`rl_steps=N` (the findings recipe's length, r1_zero and r1_zero_t06; the preset's by default).
`mix_rate=0.3`, `reflect_rate=0.2` (pretrain_lang's corpus), `language_weight=1.0` (rl_lang_on);
`rl_steps` sets rl_lang_off/on's length too. A base runs only when a selected branch starts from it.
"""
import ml_collections

from r1jax.config import sibling_config

# Run order: the main row first.
BRANCHES = ("r1_zero", "r1_zero_shipped", "r1_zero_lr", "r1_zero_t06", "r1_zero_ds")
# Findings 3 and 6: RL branches from `pretrain_lang`, the worded, language-mixing base.
LANG_BRANCHES = ("rl_lang_off", "rl_lang_on")
LANG_BASE = "pretrain_lang"


def _sizes(preset: str) -> dict:
  if preset == "tiny":
    # The base trains 1000 steps, not the quickstart's 1500 (~50 min under load on the shared
    # 2-core machine). The first design's 600-step base (error_rate 0.7) never executed the
    # precedence strategy (right on ~1% of precedence-sensitive problems), so RL had no signal there.
    # The findings recipe runs 300 RL steps: at 150 (the second design's first record, seed 0
    # +8.2) training accuracy was still rising (`rl_steps=150` reproduces that record).
    return dict(pretrain=1000, examples=8000, shipped_steps=100, steps=300, eval=200)
  if preset == "small":
    # The slow test: a shorter base and RL, fewer held-out problems (larger standard error).
    return dict(pretrain=300, examples=4000, shipped_steps=30, steps=40, eval=64)
  raise ValueError(f"Unknown preset {preset!r} for configs/r1_findings.py (tiny, small)")


def get_config(arg: str = "tiny"):
  preset, opts = sibling_config(__file__, "sft_mix").parse_arg(
      arg, seed="0", branches="+".join(BRANCHES + LANG_BRANCHES), error_rate="0.4",
      pretrain_steps="", rl_steps="", mix_rate="0.3", reflect_rate="0.2", language_weight="1.0")
  seed = int(opts["seed"])
  branches = tuple(b for b in opts["branches"].split("+") if b)
  unknown = set(branches) - set(BRANCHES + LANG_BRANCHES)
  if unknown:
    raise ValueError(f"Unknown branches {sorted(unknown)}; known: {BRANCHES + LANG_BRANCHES}")
  n = _sizes(preset)
  if opts["pretrain_steps"]:
    n["pretrain"] = int(opts["pretrain_steps"])
  if opts["rl_steps"]:
    n["steps"] = int(opts["rl_steps"])
  quick = sibling_config(__file__, "quickstart")
  q = quick.get_config(str(seed))
  task = dict(quick.TASK)

  pretrain = sibling_config(__file__, "sft").tiny_base_pretrain(
      seed, steps=n["pretrain"], arith=task, error_rate=float(opts["error_rate"]),
      examples=n["examples"], untagged_rate=0.0, log_every=100,
      checkpoint_every=min(500, n["pretrain"]))

  def rl(steps: int, lr: float | None = None, group_size: int | None = None,
         num_prompts: int | None = None, temperature: float | None = None,
         dynamic_sampling: bool = False):
    c = q.stages.r1_zero.copy_and_resolve_references()
    c.train.update(num_steps=steps, checkpoint_every=min(25, steps))   # a cut-short run keeps its last checkpoint
    c.eval.every = 0                  # the pipeline evaluates after the stage
    c.eval_task = ml_collections.ConfigDict(dict(name=""))
    if lr is not None:
      c.optim.learning_rate = lr
    if group_size is not None:
      c.rl.group_size = group_size
    if num_prompts is not None:
      c.rl.num_prompts = num_prompts
    if temperature is not None:
      c.rl.temperature = temperature
    c.rl.dynamic_sampling = dynamic_sampling
    return c

  # The second base (findings 3 and 6): the same problems, sizes and error rate, but a worded
  # CoT ("3 times 4 is 12, then ..."), `mix_rate` of the solutions switching to Chinese from a
  # step on and `reflect_rate` with a corrected slip ("..., wait, let me check, ..."). Its
  # text is up to 84 tokens, hence the window of 96 (the RL and evaluation budget of 64 new
  # tokens holds the completions: at most 66 tokens in the corpus, 99% under 60).
  pretrain_lang = sibling_config(__file__, "sft").tiny_base_pretrain(
      seed, steps=n["pretrain"], arith=task, error_rate=float(opts["error_rate"]),
      examples=n["examples"], untagged_rate=0.0, log_every=100,
      checkpoint_every=min(500, n["pretrain"]), seq_len=96,
      corpus=dict(cot_style="worded", mix_rate=float(opts["mix_rate"]),
                  reflect_rate=float(opts["reflect_rate"])))

  def lang_rl(language: float):
    # The findings recipe; `language` > 0 adds R1's language-consistency reward (share of CoT
    # words in the question's language; R1 sums it with accuracy: weight 1.0 by default), as
    # configs/r1_reasoning_rl.py's stage does.
    c = rl(n["steps"], lr=5e-5, group_size=16, num_prompts=8)
    if language:
      c.rewards.weights = dict(c.rewards.weights.to_dict(), language=language)
      c.rewards.kwargs = dict(c.rewards.kwargs.to_dict(), language={"target_language": "auto"})
    return c

  stages = dict(pretrain=pretrain)
  all_rl = dict(
      r1_zero_shipped=rl(n["shipped_steps"]),
      r1_zero=rl(n["steps"], lr=5e-5, group_size=16, num_prompts=8),
      r1_zero_lr=rl(n["shipped_steps"], lr=5e-5),
      r1_zero_t06=rl(n["steps"], lr=5e-5, group_size=16, num_prompts=8, temperature=0.6),
      r1_zero_ds=rl(n["steps"], lr=5e-5, group_size=16, num_prompts=8, dynamic_sampling=True),
      rl_lang_off=lang_rl(0.0),
      rl_lang_on=lang_rl(float(opts["language_weight"])))
  for b in branches:
    stages[b] = all_rl[b]
  # A base runs when a branch starts from it (only the findings base without any branch).
  bases = tuple(base for base, used in (
      ("pretrain", any(b in BRANCHES for b in branches) or not branches),
      (LANG_BASE, any(b in LANG_BRANCHES for b in branches))) if used)
  if LANG_BASE in bases:
    stages[LANG_BASE] = pretrain_lang
  if "pretrain" not in bases:
    del stages["pretrain"]

  c = ml_collections.ConfigDict()
  c.stage = "pipeline"
  c.seed = seed
  c.mesh = ml_collections.ConfigDict(dict(shape=(-1, 1, 1)))
  c.order = bases + branches
  c.stages = ml_collections.ConfigDict(stages)
  c.init_from = ml_collections.ConfigDict(
      {b: LANG_BASE if b in LANG_BRANCHES else "pretrain" for b in branches})
  c.data_from = ml_collections.ConfigDict()
  ev = q.eval.to_dict()
  ev["after"] = c.order
  ev["task"] = dict(ev["task"], num_examples=n["eval"])
  ev["batch_size"] = min(100, n["eval"])
  c.eval = ml_collections.ConfigDict(ev)
  return c
