"""R1's findings in miniature (issue 16): runs the branches, writes the table with seeds.

  python experiments/r1_findings.py --seeds 0,1 [--jobs N] [--preset tiny] [--root runs/r1_findings]

Each seed is one pipeline (`configs/r1_findings.py`) run in a child process of its own, as many
at a time as there are seeds and cores (`--jobs`, default `auto`), each pinned to its share of
the cores; `--jobs 1` runs them one after another in this process (`r1jax.run.run`). Its stages
are shared between findings: one base, several RL branches from it. A re-run
resumes (stages with a DONE marker are not re-run), so the report can be rewritten from
finished runs with `--report-only`. The report, `experiments/results/r1_findings.md`, has the
findings table (mean ± standard error over seeds), the per-seed figures with the RL
diagnostics (KL, zero-variance groups, entropy), the configs, wall times and the load average,
and `r1_findings_curves.png` (or `.csv` without matplotlib).

Library use (a notebook):

  from experiments import r1_findings as f
  res = {s: f.run_seed(s, "runs/r1_findings") for s in (0, 1)}
  rows = f.findings_rows(res)
  print(f.format_findings(rows))

The findings rows and the report's tables are in experiments/r1_findings_report.py (pure
functions of the collected results), re-exported here.

Experiments are scripts; the package never imports them.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import platform
import sys
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "r1_findings.py"
RESULTS = ROOT / "experiments" / "results"


def _load_sibling(name: str):
  """`experiments/<name>.py` as a module, however this script was loaded (as a script, as
  `experiments.r1_findings`, or by path)."""
  if name not in sys.modules:
    path = pathlib.Path(__file__).with_name(name + ".py")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
  return sys.modules[name]


# The findings rows and the report's sections (experiments/r1_findings_report.py).
_report = _load_sibling("r1_findings_report")
LANG_BRANCHES, LANG_BASE, NOT_RUN = _report.LANG_BRANCHES, _report.LANG_BASE, _report.NOT_RUN
FINDING0_MIN_GAIN, FINDING3_MAX_MIXING, FINDING3_MAX_COST = (
    _report.FINDING0_MIN_GAIN, _report.FINDING3_MAX_MIXING, _report.FINDING3_MAX_COST)
findings_rows, format_findings = _report.findings_rows, _report.format_findings
mean_se = _report.mean_se
format_curve, format_language, format_strategies = (_report.format_curve, _report.format_language,
                                                    _report.format_strategies)
format_seed_details, write_curves = _report.format_seed_details, _report.write_curves
RL_BRANCHES = ("r1_zero_shipped", "r1_zero", "r1_zero_lr", "r1_zero_t06", "r1_zero_ds",
               "cold_rl", "all_scenarios", "student_rl") + LANG_BRANCHES


def load_config(preset: str = "tiny", seed: int = 0, branches: tuple[str, ...] | None = None,
                **options):
  """`configs/r1_findings.py:<preset>,seed=N[,branches=a+b]` as a ConfigDict."""
  spec = importlib.util.spec_from_file_location("r1jax_configs_r1_findings", CONFIG)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  arg = f"{preset},seed={seed}"
  if branches is not None:
    arg += ",branches=" + "+".join(branches)
  for k, v in options.items():
    arg += f",{k}={v}"
  return mod.get_config(arg)


def run_seed(seed: int, root: str | os.PathLike, preset: str = "tiny",
             branches: tuple[str, ...] | None = None, **options) -> dict[str, Any]:
  """Runs (or resumes) one seed's pipeline in `root/seed<N>`; returns `collect_seed`'s dict."""
  from r1jax import run as run_lib  # pylint: disable=import-outside-toplevel
  workdir = pathlib.Path(root) / f"seed{seed}"
  config = load_config(preset, seed, branches, **options)
  t0 = time.time()
  run_lib.run(config, str(workdir))
  out = collect_seed(workdir)
  out["wall_s_this_call"] = time.time() - t0
  return out


def child_args(argv: list[str]) -> list[str]:
  """`argv` without --seeds, --jobs, --out, --cpus (given as `--x v` or `--x=v`) and
  --[no-]pin-cores: the options each seed's child process is passed on unchanged."""
  keep, it = [], iter(argv)
  for a in it:
    if a in ("--pin-cores", "--no-pin-cores"):
      continue
    if a.split("=", 1)[0] in ("--seeds", "--jobs", "--out", "--cpus"):
      if "=" not in a:
        next(it, None)
      continue
    keep.append(a)
  return keep


def core_slots(jobs: int) -> list[list[int]]:
  """The usable cores split into `jobs` equal, disjoint sets (one per child process), or [] when
  there are fewer cores than jobs or the OS has no affinity masks (then the children share all)."""
  if not hasattr(os, "sched_getaffinity") or jobs < 1:
    return []
  cores = sorted(os.sched_getaffinity(0))
  k = len(cores) // jobs
  return [cores[i * k:(i + 1) * k] for i in range(jobs)] if k else []


def auto_jobs(num_seeds: int) -> int:
  """`--jobs auto`: one process per seed, at most one per usable core."""
  from r1jax import runtime  # pylint: disable=import-outside-toplevel
  return max(1, min(num_seeds, runtime.usable_cores()))


def jobs_arg(value: str) -> str | int:
  """`--jobs`: 'auto' or a positive number (argparse reports anything else as a usage error)."""
  if value == "auto":
    return value
  if value.isdigit() and int(value) >= 1:
    return int(value)
  raise argparse.ArgumentTypeError(f"expected 'auto' or a number >= 1, got {value!r}")


def pin_to(cpus: str) -> None:
  """Pins this process to the comma-separated cores `cpus` (a `--jobs --pin-cores` child), before
  JAX starts, so `cpu_devices='auto'` counts them."""
  if cpus:
    os.sched_setaffinity(0, [int(c) for c in cpus.split(",")])


def run_seeds_in_parallel(seeds: list[int], args, argv) -> dict[int, dict]:
  """Runs each seed's pipeline in a child process of this script (`--seeds N`, the other options
  unchanged), `args.jobs` at a time; returns `collect_seed`'s dict of every seed. A child's output
  goes to `<root>/seed<N>.log`. On 2 cores, two R1-Zero runs side by side took 1.86-1.91 s a step
  each against 1.08 s alone, and two bases 8.5 min each against 5 alone: 13-15% less wall time
  than one after the other (session 15), as the tiny model's programs leave a core idle part of
  the time.

  Pinned (the default; `--no-pin-cores` not) each child runs on its own share of the cores
  (`core_slots`), so its `cpu_devices='auto'` counts those (one device each for two jobs on 2
  cores) and the children do not preempt each other: two pinned bases took 41.2 / 39.9 s per 100
  steps against 47.3 / 45.4 unpinned with two devices each, the RL steps ~3% less (session 17).
  The device count changes the floating-point reductions, so pinned and unpinned runs draw like
  two machines; the records since session 21 ran pinned."""
  import subprocess  # pylint: disable=import-outside-toplevel
  root = pathlib.Path(args.root)
  root.mkdir(parents=True, exist_ok=True)
  keep = child_args(sys.argv[1:] if argv is None else list(argv))
  slots = core_slots(args.jobs) if args.pin_cores is not False else []
  free = list(range(len(slots)))
  pending, running, out = list(seeds), [], {}
  while pending or running:
    while pending and len(running) < args.jobs:
      s = pending.pop(0)
      log = open(root / f"seed{s}.log", "w")
      cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--seeds", str(s),
             "--out", str(root / f"seed{s}_report.md"), *keep]
      slot = free.pop(0) if free else None
      if slot is not None:   # the child pins itself (`pin_to`): no preexec_fn in a threaded parent
        cmd += ["--cpus", ",".join(map(str, slots[slot]))]
      print(f"seed {s}: {' '.join(cmd)} > {log.name}", flush=True)
      proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
      running.append((s, proc, log, slot))
    time.sleep(5)
    for item in list(running):
      s, proc, log, slot = item
      if proc.poll() is not None:
        log.close()
        running.remove(item)
        if slot is not None:
          free.append(slot)
        if proc.returncode:
          for _, other, _, _ in running:
            other.terminate()
          raise SystemExit(f"seed {s} failed (exit {proc.returncode}): see {log.name}")
        out[s] = collect_seed(root / f"seed{s}")
  return out


def _mean(xs):
  xs = [x for x in xs if x is not None]
  return sum(xs) / len(xs) if xs else None


def rl_diagnostics(records: list[dict], window: int = 10) -> dict[str, Any]:
  """First / last `window` steps' means of the GRPO diagnostics of one RL stage."""
  keys = ("kl", "zero_variance_groups", "entropy", "accuracy_rate", "format_rate",
          "completion_len/mean", "time/step_s", "mixing_rate", "reflection_rate", "summary_rate",
          "reward/helpfulness")
  recs = [r for r in records if "accuracy_rate" in r]
  out: dict[str, Any] = {"steps": len(recs)}
  for k in keys:
    vals = [r[k] for r in recs if k in r]
    if vals:
      out[k] = (_mean(vals[:window]), _mean(vals[-window:]))
  return out


def collect_seed(workdir: str | os.PathLike) -> dict[str, Any]:
  """Held-out rows, stage wall times and RL diagnostics of a (partly) finished seed run.

  Branches run separately (e.g. at the same time as the main run) in sibling workdirs
  `<workdir>_<name>`, whose `pretrain` links to this one's, are merged in; the base's row is
  this workdir's.
  """
  from r1jax.metrics import read_metrics  # pylint: disable=import-outside-toplevel
  wd = pathlib.Path(workdir)
  evals, stages, diags, dirs, strategies, curves, num_steps = {}, {}, {}, {}, [], [], {}
  consks, num_traces, rm_accuracy = [], None, None
  for run_dir in [wd] + sorted(wd.parent.glob(wd.name + "_*")):
    if not run_dir.is_dir():
      continue
    summary = run_dir / "pipeline_summary.json"
    for r in json.loads(summary.read_text())["table"] if summary.exists() else []:
      evals.setdefault(r["stage"], r["summary"])
    partial = run_dir / PARTIAL
    strat = run_dir / STRATEGY
    strategies += json.loads(strat.read_text()) if strat.exists() else []
    curve = run_dir / CURVE
    curves += json.loads(curve.read_text()) if curve.exists() else []
    consk = run_dir / CONSK
    consks += json.loads(consk.read_text()) if consk.exists() else []
    for r in json.loads(partial.read_text()) if partial.exists() else []:
      if r["stage"] not in evals:   # a finished stage's own evaluation wins
        evals[r["stage"]] = dict(r["summary"], cut_at_step=r["step"], num_steps=r["num_steps"])
    for d in sorted(p for p in run_dir.iterdir() if p.is_dir() and not p.is_symlink()):
      if (d / "DONE").exists():
        stages.setdefault(d.name, float((d / "DONE").read_text().strip().rstrip("s")))
      if d.name in RL_BRANCHES and d.name not in diags:
        diags[d.name] = rl_diagnostics(read_metrics(d))
        dirs[d.name] = str(d)
        resolved = d / "resolved_config.json"
        if resolved.exists():
          num_steps[d.name] = int(json.loads(resolved.read_text())["train"]["num_steps"])
    rm_eval = run_dir / "rm_helpful" / "rm_eval.json"
    if rm_eval.exists() and rm_accuracy is None:
      rm_accuracy = json.loads(rm_eval.read_text()).get("eval_pair_accuracy")
    traces = run_dir / "rejection" / "sft_data.jsonl"
    if traces.exists() and (run_dir / "rejection" / "DONE").exists():
      with open(traces) as f:
        num_traces = sum(1 for line in f if line.strip())
  # Finding 2: the RL step at which cold_rl's training accuracy reaches R1-Zero's final one.
  reach = {}
  if "accuracy_rate" in diags.get("r1_zero", {}) and "cold_rl" in dirs:
    reach["cold_rl"] = _report.steps_to_reach(read_metrics(dirs["cold_rl"]),
                                              diags["r1_zero"]["accuracy_rate"][1])
  return {"workdir": str(wd), "evals": evals, "wall_s": stages, "rl": diags, "dirs": dirs,
          "strategy": strategies, "curve": curves, "num_steps": num_steps, "consk": consks,
          "reach": reach, "traces": num_traces, "rm_accuracy": rm_accuracy}


def _stage_dir(root: str | os.PathLike, seed: int, branch: str
               ) -> tuple[pathlib.Path, pathlib.Path]:
  """(run dir, stage dir) of the first of `root/seed<N>`, `root/seed<N>_*` whose `branch` has
  checkpoints."""
  wd = pathlib.Path(root) / f"seed{seed}"
  for run_dir in [wd] + sorted(wd.parent.glob(wd.name + "_*")):
    stage_dir = run_dir / branch
    if (stage_dir / "checkpoints").is_dir():
      return run_dir, stage_dir
  raise FileNotFoundError(f"no checkpoints of {branch!r} under {wd}[_*]")


def _upsert(path: pathlib.Path, row: dict, key: tuple[str, ...], sort: bool = False) -> list[dict]:
  """Writes `row` into the JSON list at `path`, replacing the row with the same `key` fields;
  returns the list (sorted by `key` when `sort`)."""
  rows = [r for r in (json.loads(path.read_text()) if path.exists() else [])
          if tuple(r.get(k) for k in key) != tuple(row.get(k) for k in key)] + [row]
  if sort:
    rows.sort(key=lambda r: tuple(r.get(k) for k in key))
  path.write_text(json.dumps(rows, indent=1))
  return rows


PARTIAL = "partial_evals.json"


def evaluate_partial(root: str | os.PathLike, seed: int, branch: str, preset: str = "tiny"
                     ) -> dict[str, Any]:
  """Held-out evaluation of a cut-short RL branch's latest checkpoint (same protocol).

  For runs stopped before their last step (a deadline): the row is kept apart from the
  pipeline's own table (`partial_evals.json` in the run's workdir) and the report marks it
  with the step it reached, so a resumed, finished run replaces it.
  """
  from r1jax import pipeline  # pylint: disable=import-outside-toplevel
  run_dir, stage_dir = _stage_dir(root, seed, branch)
  steps = sorted(int(p.name) for p in (stage_dir / "checkpoints").iterdir() if p.name.isdigit())
  config = load_config(preset, seed)
  eval_cfg = pipeline.pipeline_config(config).eval
  summary = pipeline.evaluate_workdir(config, str(stage_dir), eval_cfg)
  row = {"stage": branch, "summary": summary, "step": steps[-1],
         "num_steps": int(config.stages[branch].train.num_steps)}
  _upsert(run_dir / PARTIAL, row, ("stage",))
  return row


CURVE = "curve_evals.json"


def evaluate_steps(root: str | os.PathLike, seed: int, branch: str, steps: list[int],
                   preset: str = "tiny", snapshots: str = "") -> list[dict[str, Any]]:
  """Held-out evaluation (the table's protocol) of an RL branch's checkpoints at `steps`.

  The learning curve of held-out pass@1 against RL steps. A stage keeps only its last
  `max_to_keep` checkpoints, so a step is looked up in `<stage>/checkpoints/<step>`, then in
  `snapshots` (a folder of copied `<step>` checkpoint folders; `{seed}` is replaced). Rows go to
  `<run dir>/curve_evals.json` ({stage, step, summary}), replacing the same (stage, step).
  """
  import shutil  # pylint: disable=import-outside-toplevel
  import tempfile  # pylint: disable=import-outside-toplevel
  from r1jax import pipeline  # pylint: disable=import-outside-toplevel
  run_dir, stage_dir = _stage_dir(root, seed, branch)
  config = load_config(preset, seed)
  eval_cfg = pipeline.pipeline_config(config).eval
  path = run_dir / CURVE
  rows = json.loads(path.read_text()) if path.exists() else []
  for step in steps:
    found = [d for d in (stage_dir / "checkpoints" / str(step),
                         pathlib.Path(snapshots.format(seed=seed)) / str(step) if snapshots else None)
             if d is not None and (d / "commit_success.txt").exists()]
    if not found:
      raise FileNotFoundError(f"no checkpoint {step} of {branch!r} in {stage_dir} or {snapshots!r}")
    # A stage folder holding only that checkpoint: the evaluation restores the latest one.
    with tempfile.TemporaryDirectory() as tmp:
      one = pathlib.Path(tmp) / branch
      shutil.copytree(found[0], one / "checkpoints" / str(step))
      shutil.copytree(stage_dir / "tokenizer", one / "tokenizer")
      for f in stage_dir.glob("*.json"):
        shutil.copy(f, one / f.name)
      summary = pipeline.evaluate_workdir(config, str(one), eval_cfg)
    rows = _upsert(path, {"stage": branch, "step": step, "summary": summary}, ("stage", "step"),
                   sort=True)
    print(f"[curve] seed {seed} {branch} step {step}: pass@1 {100 * summary['pass@1']:.1f}%",
          flush=True)
  return rows


STRATEGY = "strategy.json"


def left_to_right_answer(expression: str) -> str | None:
  """The answer of `expression` read left to right, ignoring precedence and parentheses: the
  base corpus's systematic mistake (`error_mode='left_to_right'`); None if it is not integral
  arithmetic or divides by zero."""
  import re  # pylint: disable=import-outside-toplevel
  from fractions import Fraction  # pylint: disable=import-outside-toplevel
  toks = re.findall(r"\d+|[-+*/]", expression)
  if not toks or len(toks) % 2 == 0:
    return None
  value = Fraction(int(toks[0]))
  for op, leaf in zip(toks[1::2], toks[2::2]):
    b = Fraction(int(leaf))
    if op == "/" and b == 0:
      return None
    value = {"+": value + b, "-": value - b, "*": value * b, "/": value / b if b else b}[op]
  return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def classify_strategies(samples: list[dict]) -> dict[str, float]:
  """What the samples of a held-out evaluation did, from their answers.

  A problem is precedence-sensitive when reading it left to right gives a different answer.
  On those, a sample is `correct`, `left_to_right` (the corpus's wrong strategy) or `other`
  (a slip); on the other problems it is correct or a slip. So a pass@1 gain splits into the
  strategy RL chose and the slips it removed. `sensitive_not_ltr_first_step`: the samples whose
  first worked step ('a op b =') is not the left-to-right one, i.e. that at least set out on
  another order (a lower bound on trying precedence: some problems' orders share a first step).
  """
  import re  # pylint: disable=import-outside-toplevel
  sens = {"correct": 0, "left_to_right": 0, "other": 0}
  not_ltr_first = 0
  neutral = {"correct": 0, "other": 0}
  probs_sens, probs = set(), set()
  for smp in samples:
    gold = str(smp.get("answer"))
    ltr = left_to_right_answer(str(smp.get("question", "")).removeprefix("Compute ").rstrip("."))
    got = (smp.get("extracted_answer") or "").strip()
    probs.add(smp.get("problem_index"))
    if ltr is not None and ltr != gold:
      probs_sens.add(smp.get("problem_index"))
      key = "correct" if smp.get("correct") else ("left_to_right" if got == ltr else "other")
      sens[key] += 1
      toks = re.findall(r"\d+|[-+*/]", str(smp.get("question", "")).removeprefix("Compute "))
      first = re.search(r"(\d+) ([-+*/]) (\d+) =", str(smp.get("completion", "")))
      not_ltr_first += bool(first) and list(first.groups()) != toks[:3]
    else:
      neutral["correct" if smp.get("correct") else "other"] += 1
  ns, nn = sum(sens.values()), sum(neutral.values())
  return {"problems": len(probs), "sensitive_problems": len(probs_sens),
          "sensitive_correct": sens["correct"] / ns if ns else None,
          "sensitive_left_to_right": sens["left_to_right"] / ns if ns else None,
          "sensitive_other": sens["other"] / ns if ns else None,
          "sensitive_not_ltr_first_step": not_ltr_first / ns if ns else None,
          "neutral_correct": neutral["correct"] / nn if nn else None}


def strategy_breakdown(root: str | os.PathLike, seed: int, stage: str, preset: str = "tiny",
                       temperature: float | None = None) -> dict[str, Any]:
  """`classify_strategies` of `stage`'s held-out evaluation (the table's protocol and samples;
  `temperature` overrides the sampling temperature, e.g. 1 as in training); recorded in
  `<run dir>/strategy.json` for the report."""
  import dataclasses  # pylint: disable=import-outside-toplevel
  from r1jax import pipeline  # pylint: disable=import-outside-toplevel
  run_dir, _ = _stage_dir(root, seed, stage)
  config = load_config(preset, seed)
  eval_cfg = pipeline.pipeline_config(config).eval
  if temperature is not None:
    eval_cfg = dataclasses.replace(eval_cfg, temperature=float(temperature))
  res = pipeline.evaluate_stage(config, str(run_dir / stage), eval_cfg)
  out = dict(classify_strategies(res.samples), stage=stage, temperature=eval_cfg.temperature,
             pass_at_1=res.summary["pass@1"])
  _upsert(run_dir / STRATEGY, out, ("stage", "temperature"))
  return out


CONSK = "consk_evals.json"


def evaluate_k(root: str | os.PathLike, seed: int, stage: str, k: int, preset: str = "tiny"
               ) -> dict[str, Any]:
  """Held-out evaluation of `stage` with k samples per problem instead of the table's (same
  problems, temperature and top-p): pass@1 averaged over k and cons@k. The paper's majority vote
  is over 64; with the table's 4 a vote rarely differs from one sample. Recorded in
  `<run dir>/consk_evals.json` ({stage, k, summary}) for finding 1."""
  import dataclasses  # pylint: disable=import-outside-toplevel
  from r1jax import pipeline  # pylint: disable=import-outside-toplevel
  run_dir, _ = _stage_dir(root, seed, stage)
  config = load_config(preset, seed)
  eval_cfg = dataclasses.replace(pipeline.pipeline_config(config).eval, num_samples=int(k))
  summary = pipeline.evaluate_workdir(config, str(run_dir / stage), eval_cfg)
  _upsert(run_dir / CONSK, {"stage": stage, "k": int(k), "summary": summary}, ("stage", "k"))
  print(f"[cons@{k}] seed {seed} {stage}: pass@1 {100 * summary['pass@1']:.1f}%, "
        f"cons@{k} {100 * summary[f'cons@{k}']:.1f}%", flush=True)
  return summary


def config_summary(preset: str, seed: int = 0) -> str:
  c = load_config(preset, seed)
  lines = []
  for name in c.order:
    st = c.stages[name]
    if st.stage == "pretrain":
      src = st.data.sources[0]
      lines.append(f"- `{name}`: pretrain, preset `{st.model.preset}`, {st.train.num_steps} steps "
                   f"x {st.train.batch_size}, {src['num_examples']} examples, error_rate "
                   f"{src['error_rate']} (left to right), untagged_rate "
                   f"{src['options']['untagged_rate']}, task {dict(src['options'])}")
    elif st.stage == "sft":
      src = st.data.sources[0]
      data = (f"`{c.data_from[name]}`'s traces" if name in c.data_from else
              f"{src['num_examples']} procedural examples, error_rate {src['error_rate']}, "
              f"options {dict(src['options'])}")
      if len(st.data.sources) > 1:
        data = " + ".join(f"{s['weight']:g} " + (data if i == 0 else f"`{s['path']}`")
                          for i, s in enumerate(st.data.sources))
      lines.append(f"- `{name}`: SFT of `{c.init_from[name]}` on {data}, lr "
                   f"{st.optim.learning_rate}, {st.train.num_steps} steps x {st.train.batch_size}")
    elif st.stage == "reward_model":
      r = st.reward_model
      lines.append(f"- `{name}`: reward model (Bradley-Terry), preset `{st.model.preset}` from "
                   f"scratch, on `{r.train_path}` (held out: `{r.eval_path}`), {r.num_epochs} "
                   f"epochs x {r.batch_size} pairs, lr {r.learning_rate}")
    elif st.stage == "rejection_sampling":
      r = st.rejection
      lines.append(f"- `{name}`: rejection sampling of `{c.init_from[name]}`: "
                   f"{r.tasks[0]['num_examples']} `{r.tasks[0]['split']}` prompts x "
                   f"{r.num_samples} samples at temperature {r.temperature}, keep the "
                   f"{r.select} correct one (strict `<answer>` rule, format with summary allowed)")
    else:
      task = ("" if "sources" not in st.task else " on " + " + ".join(
          f"{w:g} {src.get('task', src['name'])}" for src, w in zip(st.task.sources,
                                                                   st.task.weights)) + " prompts")
      lines.append(f"- `{name}`: GRPO from `{c.init_from[name]}`{task}, lr {st.optim.learning_rate} "
                   f"({st.optim.schedule}, warmup {st.optim.warmup_steps}), G={st.rl.group_size}, "
                   f"{st.rl.num_prompts} prompts/step, {st.train.num_steps} steps, loss preset "
                   f"`{st.rl.loss.preset}` (beta 0.001, k3, eps 0.2), sampling temperature "
                   f"{st.rl.temperature}, "
                   f"rewards {dict(st.rewards.weights)}")
  ev = c.eval
  lines.append(f"- held-out eval after every stage: {ev.task.num_examples} `{ev.task.split}` "
               f"problems (hash-disjoint from training), pass@1 over k={ev.num_samples} at "
               f"temperature {ev.temperature}, top-p {ev.top_p}; cons@{ev.num_samples}; strict "
               "`<answer>` rule")
  return "\n".join(lines)


def write_report(results: dict[int, dict], preset: str, path: pathlib.Path,
                 loadavg: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
                 total_s: float | None = None, notes: str = "",
                 command: str = "") -> pathlib.Path:
  """Writes the report to `path` (and the curves beside it). `command`: the call that ran the
  stages, as typed (default: the plain form, for a report collected from finished runs)."""
  seeds = sorted(results)
  rows = findings_rows(results)
  path.parent.mkdir(parents=True, exist_ok=True)
  curves = write_curves(results, path.with_name(path.stem + "_curves"))
  lines = [
      f"# R1's findings in miniature (`configs/r1_findings.py:{preset}`), seeds "
      f"{', '.join(map(str, seeds))}", "",
      "Command: `" + (command or f"python experiments/r1_findings.py --seeds "
                      f"{','.join(map(str, seeds))} --preset {preset}") + "`", "",
      f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, shared with other jobs"
      + ("" if loadavg is None else
         (f"; load average (1/5/15 min) at start {loadavg[0]}, at end {loadavg[1]}"
          if total_s is not None else
          f"; load average (1/5/15 min) when this report was collected {loadavg[1]} (the runs' "
          "load is in the notes)"))
      + ("" if total_s is None else f"; wall clock of the recorded call {total_s / 60:.1f} min")
      + ".", "",
      "## Findings", "",
      "Mean ± standard error over seeds (no ± with one seed). `holds` is the issue's criterion "
      f"for every seed: base format ≥ 95%, a pass@1 gain ≥ {FINDING0_MIN_GAIN:.0f} points "
      "(finding 0), a positive gain and cons@k > pass@1 (finding 1); finding 3's are in its "
      "section below, finding 6 has none. Finding 2: cold-started RL (`cold_rl`, SFT on "
      "readable, correct traces, then the findings recipe for a third of R1-Zero's steps) starts "
      "above R1-Zero in training accuracy, reaches R1-Zero's final training accuracy (its last "
      "10 steps' mean) in fewer steps than R1-Zero ran, is not below R1-Zero's held-out pass@1 "
      "by more than one standard error, and keeps a summary on at least "
      f"{_report.FINDING2_MIN_SUMMARY:.0f}% of its samples. Finding 4: SFT of the base on "
      "`cold_rl`'s rejection-sampled traces is not below `cold_rl` by more than one standard "
      "error. Finding 5: SFT of the student's base on the same traces (`distill`) beats R1-Zero "
      "RL of that base (`student_rl`).", "",
      format_findings(rows, seeds), "",
      "## Per seed and stage", "",
      "Held-out pass@1 / cons@k / format rate in %; the ± is the standard error over the "
      "problems. KL, zero-variance-group rate and entropy are the GRPO training metrics, means of "
      "the first and of the last 10 RL steps.", "",
      format_seed_details(results), "",
      f"Curves (moving average over 9 steps): `{curves}`.", "",
  ]
  curve = format_curve(results)
  if curve:
    lines += [
        "## Held-out pass@1 against RL steps (`--curve`)", "",
        "The table's protocol on intermediate checkpoints (step 0 is the base; the last step is "
        "the stage's own evaluation).", "", curve, ""]
  language = format_language(results)
  if language:
    lines += [
        "## Language mixing, reflection and length (findings 3 and 6)", "",
        f"`{LANG_BASE}` is the worded base (`configs/r1_findings.py`: 30% of its solutions switch "
        "to Chinese from a step on, 20% correct a slip after \"wait, let me check\"); "
        "`rl_lang_off` / `rl_lang_on` are the findings recipe from it without / with the "
        "language-consistency reward. Mixing: share of samples whose CoT has under 95% of its "
        "words in the question's language (`r1jax.rewards.language`); reflection: share with "
        "\"wait\" or \"let me check\". Finding 3 holds when the held-out mixing rate with the "
        f"reward is at most {FINDING3_MAX_MIXING:.0f}%, the rollouts' mixing over the last 10 RL "
        "steps is lower with it than without, and its pass@1 cost is at most "
        f"{FINDING3_MAX_COST:.0f} points, for every seed; finding 6 has no criterion (the issue: report whatever they "
        "show).", "", language, ""]
  strategies = format_strategies(results)
  if strategies:
    lines += [
        "## What the samples did (`--strategy`)", "",
        "Held-out samples (the table's protocol unless the temperature says otherwise) "
        "classified by their answer: on precedence-sensitive problems (reading left to right "
        "gives another answer) a wrong sample either used the base corpus's left-to-right "
        "strategy or slipped (`first step not left to right`: the samples that set out on "
        "another order); on the other problems every wrong sample slipped. In % of samples.", "", strategies, ""]
  lines += [
      "## Configs", "", config_summary(preset), "",
  ]
  if notes:
    lines += ["## Notes", "", notes, ""]
  path.write_text("\n".join(lines))
  return path


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--seeds", default="0,1")
  p.add_argument("--preset", default="tiny")
  p.add_argument("--root", default=str(ROOT / "runs" / "r1_findings"))
  p.add_argument("--branches", default="", help="RL branches, '+'-separated, or 'all' (default: every finding's, "
                 "configs/r1_findings.py's DEFAULT_BRANCHES: all but the R1-Zero ablations)")
  p.add_argument("--out", default=str(RESULTS / "r1_findings.md"))
  p.add_argument("--set", default="",
                 help="config options, k=v,k=v (configs/r1_findings.py's, e.g. "
                      "rs_prompts=6000,sft_steps=600)")
  p.add_argument("--jobs", default="auto", type=jobs_arg,
                 help="seeds run at the same time, each in its own process; 'auto' (default): "
                      "as many as there are seeds and cores (2 on a 2-core machine: 13-15%% less "
                      "wall time than one after the other); 1: one after the other, in this "
                      "process")
  p.add_argument("--pin-cores", action=argparse.BooleanOptionalAction, default=None,
                 help="with more than one job: pin each process to its share of the cores (the "
                      "default; one core and one device each on 2 cores: ~12%% faster bases, ~3%% "
                      "faster RL). --no-pin-cores: the processes share every core, as session 16's "
                      "record ran")
  p.add_argument("--report-only", action="store_true", help="collect finished runs, run nothing")
  p.add_argument("--notes", default="", help="a file whose text goes under 'Notes'")
  p.add_argument("--strategy", default="",
                 help="'+'-separated stages[@T]: classify their held-out samples "
                      "(correct / left to right / slip; at temperature T, default the eval's)")
  p.add_argument("--evaluate-partial", default="",
                 help="'+'-separated RL branches: evaluate their latest checkpoints (cut-short "
                      "runs), then write the report")
  p.add_argument("--curve", default="",
                 help="'+'-separated branch@step,step,...: evaluate those checkpoints (held-out "
                      "pass@1 against RL steps), then write the report")
  p.add_argument("--snapshots", default="",
                 help="for --curve: a folder of copied <step> checkpoints ({seed} is replaced), "
                      "for steps the stage no longer keeps")
  p.add_argument("--cons-k", default="",
                 help="'+'-separated stages@k: evaluate them with k samples per problem "
                      "(pass@1 over k, cons@k; finding 1's majority vote), then write the report")
  p.add_argument("--cpus", default="", help=argparse.SUPPRESS)   # set by --pin-cores for a child
  args = p.parse_args(argv)
  pin_to(args.cpus)
  seeds = [int(s) for s in args.seeds.split(",") if s]
  branches = tuple(args.branches.split("+")) if args.branches else None
  options = dict(kv.split("=", 1) for kv in args.set.split(",") if kv)
  collect_only = (args.report_only or args.evaluate_partial or args.strategy or args.curve
                  or args.cons_k)
  load0 = tuple(round(x, 2) for x in os.getloadavg())
  t0 = time.time()
  results = {}
  if args.jobs == "auto":
    args.jobs = auto_jobs(len(seeds))
  if args.jobs > 1 and len(seeds) > 1 and not collect_only:
    results = run_seeds_in_parallel(seeds, args, argv)
  for s in seeds:
    if s in results:
      continue
    if args.evaluate_partial:
      for b in args.evaluate_partial.split("+"):
        print(evaluate_partial(args.root, s, b, args.preset))
    for spec in filter(None, args.strategy.split("+")):
      stage, _, temp = spec.partition("@")
      print(strategy_breakdown(args.root, s, stage, args.preset, float(temp) if temp else None))
    for spec in filter(None, args.curve.split("+")):
      branch, _, steps = spec.partition("@")
      evaluate_steps(args.root, s, branch, [int(x) for x in steps.split(",") if x], args.preset,
                     args.snapshots)
    for spec in filter(None, args.cons_k.split("+")):
      stage, _, k = spec.partition("@")
      evaluate_k(args.root, s, stage, int(k), args.preset)
    if collect_only:
      results[s] = collect_seed(pathlib.Path(args.root) / f"seed{s}")
    else:
      results[s] = run_seed(s, args.root, args.preset, branches, **options)
  total = None if collect_only else time.time() - t0
  load1 = tuple(round(x, 2) for x in os.getloadavg())
  notes = pathlib.Path(args.notes).read_text() if args.notes else ""
  command = "" if collect_only else " ".join(
      ["python experiments/r1_findings.py"] + list(sys.argv[1:] if argv is None else argv))
  out = write_report(results, args.preset, pathlib.Path(args.out), (load0, load1), total, notes,
                     command)
  print(out.read_text())
  return 0


if __name__ == "__main__":
  sys.exit(main())
