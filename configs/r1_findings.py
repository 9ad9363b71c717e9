"""R1's findings in miniature (issue 16): the branches `experiments/r1_findings.py` runs.

  python -m r1jax.main --config=configs/r1_findings.py:tiny,seed=0 --workdir=runs/r1_findings_s0
  python experiments/r1_findings.py --seeds 0,1      # every branch, every seed, and the table

One pipeline per seed (`r1jax.pipeline`), stages shared between findings:

  pretrain        the quickstart's base (configs/quickstart.py: tiny preset, 8,000 worked solutions
                  of 2-3-operation arithmetic, SentencePiece tokenizer), trained 2000 steps, with
                  untagged_rate=0: every solution ends in `<answer>`, so the base already writes
                  the R1 format on every sample and any RL gain is correctness, not format.
                  `error_rate` (0.4) of the solutions read the expression left to right (ignoring
                  precedence), the rest use precedence. The first design (error_rate 0.7, 600
                  steps: `error_rate=0.7,pretrain_steps=600`) gave a base right on ~1% of the
                  precedence-sensitive problems, so GRPO groups there had no variance and RL only
                  removed slips elsewhere. The second, at 1000 steps (`pretrain_steps=1000`, the
                  records up to session 14), set out on the precedence order about half the time
                  but carried it out on ~9-13% of those problems (operands copied wrongly): RL
                  gained +4 to +6 on seed 1, removing slips on the other problems while the
                  left-to-right reading spread. At 2000 steps it is right on ~25% of them, and
                  RL moves them to ~49% (session 15: seed 1 +14.5, seed 0 +16.8).
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

  pretrain_lang   findings 3 and 6's base: as pretrain (same problems, sizes, error_rate; 600
                  steps, `lang_pretrain_steps=N`, 1000 until session 21: finding 3 needs a base
                  that mixes, not the precedence skill), but a worded CoT ("3 times 4 is 12,
                  then 12 plus 5 is 17."), `mix_rate` (0.3) of the solutions switching to
                  Chinese from a step on, `reflect_rate` (0.2) correcting a slip after "wait,
                  let me check" (r1jax.data.procedural.make_sft_corpus); window 96
  rl_lang_off     the findings recipe from pretrain_lang, accuracy + format rewards, 100 steps
                  (`lang_rl_steps=N`; 300 until session 20, 150 in session 21)
  rl_lang_on      the same + R1's language-consistency reward (weight `language_weight`, 1.0)

  cold_start .. distill   findings 2, 4 and 5: R1's stages after R1-Zero (`_stage_branches`):
                  cold-start SFT of pretrain on readable traces, reasoning RL from it, rejection
                  sampling, SFT of the base on the traces (sft_rs); a smaller student's own base
                  (student_base) trained with R1-Zero RL (student_rl) or on the traces (distill)

Finding 0 (RL improves correctness, not only format) compares pretrain with r1_zero (and with
the ablations, when run); finding 1 (R1-Zero without SFT: held-out pass@1 rises, cons@k > pass@1) reads r1_zero.
Held-out evaluation after every stage is the quickstart's: 200 hash-disjoint test problems,
pass@1 over k=4 samples at temperature 0.6, top-p 0.95, and cons@4, strict `<answer>` rule.
Finding 3 (language consistency removes mixing at a small accuracy cost) compares rl_lang_off with
rl_lang_on; finding 6 (response length and reflection over RL steps) reads r1_zero and rl_lang_off.
Finding 2 (cold start starts higher, converges faster, stays readable) compares cold_rl with
r1_zero; finding 4 sft_rs with cold_rl; finding 5 distill with student_rl.

Presets: `tiny` (the recorded run and the slow test's seed), `small` (the config tests: shorter
stages, same structure; too short to show the findings: its base is right on ~6%).
Options: `seed=N`, `branches=r1_zero_shipped+r1_zero` (which branches to run; default every
finding's, `DEFAULT_BRANCHES`: all but the R1-Zero ablations, which `branches=all` adds; a
stage branch brings the stages it starts from),
`error_rate=0.4` (the corpus of the base and of the student's base) and `pretrain_steps=N` (the
base's length; the preset's by default), `lang_pretrain_steps=N` (pretrain_lang's length),
`student_pretrain_steps=N` (student_base's length), `max_ops=3` and
`max_value=5` (the arithmetic task of every stage; session 15 tried `max_ops=2,max_value=9` with
the 1000-step base: R1-Zero +11.7 / +12.3 on seeds 0 / 1, but a worded base at 22.6%),
`rl_steps=N` (the findings recipe's length: r1_zero, r1_zero_t06, r1_zero_ds and student_rl;
the preset's by default), `lang_rl_steps=N` (rl_lang_off / rl_lang_on's length),
`all_rl_steps=N` (all_scenarios' length).
`mix_rate=0.3`, `reflect_rate=0.2` (pretrain_lang's corpus), `language_weight=1.0` (rl_lang_on).
`rs_prompts=N`, `rs_samples=N`
(rejection sampling's training prompts and samples per prompt), `sft_steps=N` (sft_rs's and
distill's length), `cold_examples=N` and `cold_steps=N` (the cold start's traces and SFT steps):
the preset's by default. Every stage keeps the library's `train.seq_buckets` (pretrain / SFT
steps at the width their batch needs) and `optim.grad_accum_steps` (0: CPU updates in
microbatches, r1jax.runtime.auto_grad_accum) unless pinned: `seq_buckets=1` runs every pretrain /
SFT step at its full window and `grad_accum=1` each update in one batch, as the records up to
session 20 were taken (with the session-21 lengths below and `lang_rl_steps=300`, run with
`--no-pin-cores`, session 16's record's config).
Either is the same training up to float rounding, which draws like another seed
(docs/performance.md, sessions 19-20). A base runs only when a selected branch starts from it.
"""
import ml_collections

from r1jax.config import sibling_config

# Run order: the main row first.
BRANCHES = ("r1_zero", "r1_zero_shipped", "r1_zero_lr", "r1_zero_t06", "r1_zero_ds")
# R1-Zero recipe ablations: not a finding's row, so not run by default (`branches=all` or naming
# them runs them; roughly 20 more minutes a seed, estimated from their step counts).
ABLATIONS = BRANCHES[1:]
# Findings 3 and 6: RL branches from `pretrain_lang`, the worded, language-mixing base.
LANG_BRANCHES = ("rl_lang_off", "rl_lang_on")
LANG_BASE = "pretrain_lang"
# Findings 2, 4 and 5: R1's stages after R1-Zero, in run order. Selecting one selects what it
# needs (`STAGE_NEEDS`); `rejection` samples traces and is not evaluated.
STAGE_BRANCHES = ("cold_start", "cold_rl", "rejection", "sft_rs", "rm_helpful", "all_scenarios",
                  "student_rl", "distill")
STAGE_NEEDS = dict(cold_rl=("cold_start",), rejection=("cold_rl",), sft_rs=("rejection",),
                   all_scenarios=("sft_rs", "rm_helpful"), distill=("rejection",))
# Every finding's branches (0-6); the ablations run when named or with `branches=all`.
DEFAULT_BRANCHES = ("r1_zero",) + LANG_BRANCHES + STAGE_BRANCHES
# Stages that train no policy: not evaluated on the held-out problems.
NOT_EVALUATED = ("rejection", "rm_helpful")
# The non-reasoning data (r1jax.data.chitchat), written by the pipeline's `prepare` hook.
CHITCHAT_SFT = "{workdir}/data/chitchat_sft.jsonl"
CHITCHAT_PROMPTS = "{workdir}/data/chitchat_prompts.jsonl"
PREFS = "{workdir}/data/prefs_{split}.jsonl"
STUDENT_BASE = "student_base"
# Where each branch starts (`init_from`) and whose traces it trains on (`data_from`).
INIT_FROM = dict(cold_start="pretrain", cold_rl="cold_start", rejection="cold_rl",
                 sft_rs="pretrain", rm_helpful=None, all_scenarios="sft_rs",
                 student_rl=STUDENT_BASE, distill=STUDENT_BASE)
DATA_FROM = dict(sft_rs="rejection", distill="rejection")


# Options that override one preset size each ("" keeps the preset's): option -> (table, key),
# table "n" for `_sizes`, "m" for `_stage_sizes`.
SIZE_OPTIONS = dict(
    pretrain_steps=("n", "pretrain"), lang_pretrain_steps=("n", "lang_pretrain"),
    student_pretrain_steps=("n", "student_pretrain"), rl_steps=("n", "steps"),
    lang_rl_steps=("n", "lang_steps"), rs_prompts=("m", "rs_prompts"),
    rs_samples=("m", "rs_samples"), sft_steps=("m", "sft_steps"),
    cold_examples=("m", "cold_examples"), cold_steps=("m", "cold_steps"),
    all_rl_steps=("m", "all_rl"))


def _sizes(preset: str) -> dict:
  if preset == "tiny":
    # The base trains 2000 steps: at 1000 (sessions 6-14) it chose the precedence order but could
    # not carry it out, and R1-Zero's gain on seed 1 was +4 to +6 (docs/pipeline.md, session 15).
    # The first design's 600-step base (error_rate 0.7) never executed the precedence strategy
    # (right on ~1% of precedence-sensitive problems), so RL had no signal there.
    # The findings recipe runs 300 RL steps: at 150 (the second design's first record, seed 0
    # +8.2) training accuracy was still rising (`rl_steps=150` reproduces that record).
    # The language branches run 100 RL steps from a 600-step worded base: finding 3 is about
    # mixing, not skill. With the language reward the rollouts' mixing rate had fallen from
    # ~28% to ~2% by step 150 of the 300-step records (sessions 15-20) and to ~4% by step 100
    # of the 150-step one (session 21, both seeds), whose base trained 1000 steps.
    # The student's base trains 1000 steps, half the teacher's: finding 5 compares two ways of
    # training the same student base, and at 2000 (session 21) it cost 265 s a seed.
    # `lang_pretrain_steps=1000,lang_rl_steps=150,student_pretrain_steps=2000,all_rl_steps=100`
    # is session 21's record's config; with `lang_rl_steps=300` instead, sessions 15-20's lengths.
    # Session 22's record on these sizes (41 min against 51): the worded base at 22.1 / 14.5%
    # (40.2 / 33.9 at 1000 steps), the language reward's cost +4.0 / +2.4 points (+0.8 / -0.6);
    # the student's base at 20.0 / 24.1% (57.5 / 52.2), distillation over RL +32.4 / +20.0
    # (+9.6 / +8.2).
    return dict(pretrain=2000, lang_pretrain=600, student_pretrain=1000, examples=8000,
                shipped_steps=100, steps=300, lang_steps=100, eval=200)
  if preset == "small":
    # The config tests: a shorter base and RL, fewer held-out problems. Too short for the
    # findings (session 11, seed 0: base 6.2%, R1-Zero 3.9%, distill 10.9%), so the slow test
    # runs `tiny`.
    return dict(pretrain=300, lang_pretrain=300, student_pretrain=300, examples=4000,
                shipped_steps=30, steps=40, lang_steps=40, eval=64)
  raise ValueError(f"Unknown preset {preset!r} for configs/r1_findings.py (tiny, small)")


def _stage_sizes(preset: str) -> dict:
  """Findings 2, 4 and 5's stages (`cold_*`, `rejection`, `sft_rs`, `student_*`, `distill`)."""
  if preset == "tiny":
    # 4,000 cold-start traces (R1: thousands) for 600 steps: with 400 for 100 steps the tiny
    # model could not yet copy its result into the summary (held-out pass@1 23%, the base's 38%).
    # With 2,000 for 300 steps (sessions 8-12) the teacher's strength followed its base's: on a
    # base at 35.1 (the slow test's, 8 devices) cold start reached 43.4 and the distilled
    # student fell 2.0 below student_rl; 4,000 for 600 steps on that base: cold start 54.6,
    # cold_rl 54.8, distill 59.0 against student_rl's 44.5 (session 13).
    # 6,000 training prompts sampled twice for rejection sampling (3,903 traces for seed 0), SFT
    # 800 steps: after the longer cold start, SFT of the base for 600 steps on its traces fell
    # 6.0 / 6.0 points below cold_rl (seeds 0 / 1), for 800 steps 2.2 on seed 0 (session 13).
    # With 2,000 prompts (~1,400 traces) and 300 steps, seed 0's SFT of the base fell 4.8 points
    # below cold_rl and the distilled student 2.5 below student_rl; with 6,000 and 600, +1.5 and
    # +15.1 (session 10; 2,000 and 600: -1.1 and +8.0). The student's RL is as long as
    # R1-Zero.
    # All-scenario RL runs 50 steps (100, cold_rl's length, until session 21): it kept reasoning
    # (+0.5 / +0.8 over sft_rs) and the reward model's score did not move in either record.
    return dict(cold_examples=4000, cold_steps=600, cold_rl=100, all_rl=50, rs_prompts=6000,
                rs_samples=2, sft_steps=800)
  return dict(cold_examples=1000, cold_steps=150, cold_rl=20, all_rl=20, rs_prompts=512,
              rs_samples=2, sft_steps=100)


def get_config(arg: str = "tiny"):
  preset, opts = sibling_config(__file__, "sft_mix").parse_arg(
      arg, seed="0", branches="+".join(DEFAULT_BRANCHES), error_rate="0.4",
      max_ops="3", max_value="5", mix_rate="0.3", reflect_rate="0.2", language_weight="1.0",
      seq_buckets="", grad_accum="", **dict.fromkeys(SIZE_OPTIONS, ""))
  seed = int(opts["seed"])
  known = BRANCHES + LANG_BRANCHES + STAGE_BRANCHES
  branches = known if opts["branches"] == "all" else tuple(
      b for b in opts["branches"].split("+") if b)
  unknown = set(branches) - set(known)
  if unknown:
    raise ValueError(f"Unknown branches {sorted(unknown)}; known: {known}")
  wanted, todo = set(branches), list(branches)
  while todo:                       # a stage branch brings the stages it starts from
    for need in STAGE_NEEDS.get(todo.pop(), ()):
      if need not in wanted:
        wanted.add(need)
        todo.append(need)
  branches = tuple(b for b in known if b in wanted)
  n, m = _sizes(preset), _stage_sizes(preset)
  for opt, (table, key) in SIZE_OPTIONS.items():
    if opts[opt]:
      (n if table == "n" else m)[key] = int(opts[opt])
  quick = sibling_config(__file__, "quickstart")
  q = quick.get_config(str(seed))
  task = dict(quick.TASK, max_ops=int(opts["max_ops"]), max_value=int(opts["max_value"]))
  # The quickstart's RL and evaluation tasks carry its own problem sizes: overridden with these.
  task_sizes = {k: task[k] for k in ("min_ops", "max_ops", "max_value")}

  pretrain = sibling_config(__file__, "sft").tiny_base_pretrain(
      seed, steps=n["pretrain"], arith=task, error_rate=float(opts["error_rate"]),
      examples=n["examples"], untagged_rate=0.0, log_every=100,
      checkpoint_every=min(500, n["pretrain"]))

  def rl(steps: int, lr: float | None = None, group_size: int | None = None,
         num_prompts: int | None = None, temperature: float | None = None,
         dynamic_sampling: bool = False):
    c = q.stages.r1_zero.copy_and_resolve_references()
    c.task.update(task_sizes)
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
      seed, steps=n["lang_pretrain"], arith=task, error_rate=float(opts["error_rate"]),
      examples=n["examples"], untagged_rate=0.0, log_every=100,
      checkpoint_every=min(500, n["lang_pretrain"]), seq_len=96,
      corpus=dict(cot_style="worded", mix_rate=float(opts["mix_rate"]),
                  reflect_rate=float(opts["reflect_rate"])))

  def lang_rl(language: float):
    # The findings recipe; `language` > 0 adds R1's language-consistency reward (share of CoT
    # words in the question's language; R1 sums it with accuracy: weight 1.0 by default), as
    # configs/r1_reasoning_rl.py's stage does.
    c = rl(n["lang_steps"], lr=5e-5, group_size=16, num_prompts=8)
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
  all_rl.update(_stage_branches(seed, task, n, rl, m))
  for b in branches:
    stages[b] = all_rl[b]
  # A base runs when a branch starts from it (only the findings base without any branch).
  on = {b: INIT_FROM.get(b, LANG_BASE if b in LANG_BRANCHES else "pretrain") for b in branches}
  bases = tuple(base for base in ("pretrain", LANG_BASE, STUDENT_BASE)
                if base in on.values() or (base == "pretrain" and not branches))
  if LANG_BASE in bases:
    stages[LANG_BASE] = pretrain_lang
  if STUDENT_BASE in bases:
    stages[STUDENT_BASE] = student_base(seed, task, n, opts)
  if "pretrain" not in bases:
    del stages["pretrain"]
  for st in stages.values():       # pins; by default every stage keeps the library's own
    if opts["seq_buckets"] and st.stage in ("pretrain", "sft"):
      st.train.seq_buckets = int(opts["seq_buckets"])
    if opts["grad_accum"] and "optim" in st:
      st.optim.grad_accum_steps = int(opts["grad_accum"])

  c = ml_collections.ConfigDict()
  c.stage = "pipeline"
  c.seed = seed
  c.mesh = ml_collections.ConfigDict(dict(shape=(-1, 1, 1)))
  c.order = bases + branches
  c.stages = ml_collections.ConfigDict(stages)
  c.init_from = ml_collections.ConfigDict({b: v for b, v in on.items() if v})
  c.data_from = ml_collections.ConfigDict({b: DATA_FROM[b] for b in branches if b in DATA_FROM})
  if "sft_rs" in branches:         # the chit-chat SFT rows, RL prompts and preference pairs
    c.prepare = ({"fn": "r1jax.data.chitchat:write_chitchat",
                  "kwargs": {"subdir": "data", "seed": seed, "template": "r1_zero_bare",
                             "num_pairs": 800, "style": "short"}},)
  ev = q.eval.to_dict()
  ev["after"] = tuple(s for s in c.order if s not in NOT_EVALUATED)
  ev["task"] = dict(ev["task"], num_examples=n["eval"], **task_sizes)
  ev["batch_size"] = min(100, n["eval"])
  c.eval = ml_collections.ConfigDict(ev)
  return c


def student_base(seed: int, task: dict, n: dict, opts: dict):
  """Finding 5's student: the teacher's `tiny` shape with 2 layers instead of 4 (half its
  non-embedding parameters), pre-trained on the teacher base's corpus (its own base, not from
  scratch), `student_pretrain` steps (the teacher base's 2000 until session 21). The
  `tiny-student` preset (2 layers, d=64) was too small to do the arithmetic: base 8-9% held-out
  pass@1, and neither RL (9.2 / 8.6) nor SFT on the teacher's traces (8.0 / 7.2) moved it."""
  c = sibling_config(__file__, "sft").tiny_base_pretrain(
      seed, steps=n["student_pretrain"], arith=task, error_rate=float(opts["error_rate"]),
      examples=n["examples"], untagged_rate=0.0, log_every=100,
      checkpoint_every=min(500, n["student_pretrain"]))
  c.model.overrides = {"num_layers": 2}
  return c


def _stage_branches(seed: int, task: dict, n: dict, rl, m: dict) -> dict:
  """Findings 2, 4 and 5's stages, R1's order after R1-Zero (docs/pipeline.md), in miniature.

  cold_start  SFT of `pretrain` on `cold_examples` correct solutions in the readable format
              (reasoning, then "The answer is N.": `make_sft_corpus(summary=True)`), problems
              drawn with another seed than the base's corpus: R1's few thousand curated
              cold-start traces
  cold_rl     reasoning RL from cold_start: the findings recipe, `cold_rl` steps (a third of
              R1-Zero's), format_soft (tags in order, the summary between them allowed)
  rejection   `rs_prompts` training prompts sampled `rs_samples` times from cold_rl at T 0.7;
              the shortest correct sample of each prompt is kept (R1 stage 3)
  sft_rs      SFT of the *base* on those traces, 3 in 4 rows, and chit-chat (r1jax.data.chitchat,
              the short style: the base's tokenizer writes English in byte pieces), 1 in 4: R1
              stage 4's curated mix with non-reasoning data (finding 4)
  rm_helpful  a helpfulness reward model (tiny, from scratch) on chit-chat preference pairs:
              the reply that answers what was asked over another exchange's reply
  all_scenarios  RL from sft_rs on arithmetic (3 in 4 prompts) and chit-chat prompts: accuracy
              and format rules, plus the reward model's score of the summary on general rows
              (R1 stage 5; finding 4's second half), `all_rl` steps
  student_rl  R1-Zero RL of the student's own base (finding 5a), the findings recipe
  distill     SFT of the student's base on the same traces (finding 5b)
  """
  sft = sibling_config(__file__, "sft_mix")
  quick_task = dict(task, seed=seed)

  def sft_stage(steps: int, sources, lr: float = 1e-3):
    c = sft.get_config("tiny")
    c.seed = seed
    c.data.sources = sources
    c.data.epoch_proportions = ()
    c.optim.update(learning_rate=lr, warmup_steps=min(10, steps))
    c.train.update(num_steps=steps, batch_size=16, seq_len=96, log_every=10,
                   checkpoint_every=steps, num_epochs=0)     # step-based, as the other stages
    return c

  cold_data = dict(kind="procedural", task="arithmetic", num_examples=m["cold_examples"],
                   error_rate=0.0, template="r1_zero_bare", seed=seed + 1000, weight=1.0,
                   options=dict({k: v for k, v in task.items() if k != "name"},
                                error_mode="left_to_right", summary=True))
  cold_start = sft_stage(m["cold_steps"], (cold_data,))
  cold_start.data.loss_on_prompt = False

  cold_rl = rl(m["cold_rl"], lr=5e-5, group_size=16, num_prompts=8)
  weights = cold_rl.rewards.weights.to_dict()
  weights["format_soft"] = weights.pop("format")
  cold_rl.rewards.weights = weights

  rej = sibling_config(__file__, "rejection_sampling").get_config("tiny")
  rej.seed = seed
  rej.rejection.update(
      tasks=[dict(quick_task, split="train", num_examples=m["rs_prompts"], seed=seed + 100)],
      template="r1_zero_bare", num_samples=m["rs_samples"], temperature=0.7, max_new_tokens=64,
      max_prompt_len=48, batch_size=128, chunk_size=256, seed=seed, select="shortest",
      max_per_prompt=1, stop_strings=["</answer>"],
      allow_summary=True)         # R1-Zero's format, with cold start's summary before <answer>
  rej.rejection.reward.kwargs = {"accuracy": {"fallback": "none"}}   # R1's strict answer rule

  traces = dict(kind="jsonl", path="", prompt_field="prompt", completion_field="completion",
                weight=1.0)
  sft_rs = sft_stage(m["sft_steps"], (dict(traces, weight=0.75),
                                dict(traces, path=CHITCHAT_SFT, weight=0.25)))

  rm = sibling_config(__file__, "reward_model").get_config("tiny")
  rm.seed = seed
  rm.reward_model.update(train_path=PREFS.format(workdir="{workdir}", split="train"),
                         eval_path=PREFS.format(workdir="{workdir}", split="eval"), seed=seed)

  alls = rl(m["all_rl"], lr=5e-5, group_size=16, num_prompts=8)
  alls.task = ml_collections.ConfigDict(dict(
      sources=(cold_rl.task.to_dict(), dict(name="jsonl", task="general", path=CHITCHAT_PROMPTS,
                                           question_field="question")),
      weights=(0.75, 0.25)))
  alls.rewards.weights = dict(weights, helpfulness=1.0)
  alls.rewards.kwargs = dict(cold_rl.rewards.kwargs.to_dict(), helpfulness={
      "scorer": "r1jax.rm.scorer:RewardModelScorer",
      "scorer_init": {"path": "{workdir}/rm_helpful", "batch_size": 64}})
  return dict(cold_start=cold_start, cold_rl=cold_rl, rejection=rej, sft_rs=sft_rs,
              rm_helpful=rm, all_scenarios=alls,
              student_rl=rl(n["steps"], lr=5e-5, group_size=16, num_prompts=8),
              distill=sft_stage(m["sft_steps"], (dict(traces),)))
