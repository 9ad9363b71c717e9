"""R1's findings in miniature (issue 16): runs the branches, writes the table with seeds.

  python experiments/r1_findings.py --seeds 0,1 [--preset tiny] [--root runs/r1_findings]

Each seed is one pipeline (`configs/r1_findings.py`, run by `r1jax.run.run` in this process)
whose stages are shared between findings: one base, several RL branches from it. A re-run
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

Experiments are scripts; the package never imports them.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import pathlib
import platform
import sys
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "r1_findings.py"
RESULTS = ROOT / "experiments" / "results"
# Findings 3 and 6 read the branches from the worded, language-mixing base (`LANG_BASE`).
LANG_BRANCHES = ("rl_lang_off", "rl_lang_on")
LANG_BASE = "pretrain_lang"
RL_BRANCHES = ("r1_zero_shipped", "r1_zero", "r1_zero_lr", "r1_zero_t06", "r1_zero_ds"
               ) + LANG_BRANCHES
# Margin of finding 0: held-out pass@1 must rise by at least this many points (the bar).
FINDING0_MIN_GAIN = 10.0
# Finding 3: with the language reward, the held-out mixing rate is "near 0" (at most this many %
# of the samples), and its accuracy cost (pass@1 without minus with it) "small" (at most this
# many points, about 1.5 standard errors of a 200-problem evaluation).
FINDING3_MAX_MIXING = 5.0
FINDING3_MAX_COST = 5.0
NOT_RUN = [
    (2, "Cold start makes RL start higher and converge faster, with readable output"),
    (3, "Language consistency costs little accuracy and removes mixing"),
    (4, "Rejection sampling + SFT >= its RL checkpoint; all-scenario RL keeps reasoning"),
    (5, "Distillation beats RL for the small model"),
    (6, "Response length and reflection under RL"),
]


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


def _mean(xs):
  xs = [x for x in xs if x is not None]
  return sum(xs) / len(xs) if xs else None


def rl_diagnostics(records: list[dict], window: int = 10) -> dict[str, Any]:
  """First / last `window` steps' means of the GRPO diagnostics of one RL stage."""
  keys = ("kl", "zero_variance_groups", "entropy", "accuracy_rate", "format_rate",
          "completion_len/mean", "time/step_s", "mixing_rate", "reflection_rate")
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
  consks = []
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
  return {"workdir": str(wd), "evals": evals, "wall_s": stages, "rl": diags, "dirs": dirs,
          "strategy": strategies, "curve": curves, "num_steps": num_steps, "consk": consks}


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


def format_strategies(results: dict[int, dict]) -> str:
  rows = [(s, r) for s in sorted(results) for r in results[s].get("strategy", [])]
  if not rows:
    return ""
  lines = ["| seed | stage | sampling T | pass@1 | precedence-sensitive problems | on them: correct "
           "| left to right | other (slip) | first step not left to right | other problems: correct |",
           "|" + "---|" * 10]
  for s, r in rows:
    lines.append(f"| {s} | {r['stage']} | {r['temperature']} | {_f(100 * r['pass_at_1'])} "
                 f"| {r['sensitive_problems']}/{r['problems']} "
                 + "| " + " | ".join(_f(None if r.get(k) is None else 100 * r[k]) for k in
                              ("sensitive_correct", "sensitive_left_to_right", "sensitive_other",
                               "sensitive_not_ltr_first_step", "neutral_correct")) + " |")
  return "\n".join(lines)


def mean_se(xs: list[float]) -> tuple[float | None, float | None]:
  """Mean and standard error (sample std / sqrt(n)); se is None for one value."""
  xs = [x for x in xs if x is not None]
  if not xs:
    return None, None
  m = sum(xs) / len(xs)
  if len(xs) < 2:
    return m, None
  var = sum((x - m) ** 2 for x in xs) / (len(xs) - 1)
  return m, math.sqrt(var / len(xs))


def _pct(summary: dict | None, key: str) -> float | None:
  if not summary or key not in summary:
    return None
  return 100.0 * summary[key]


def _gain(res: dict, branch: str, key: str = "pass@1", base: str = "pretrain") -> float | None:
  ev = res["evals"]
  if base not in ev or branch not in ev:
    return None
  return _pct(ev[branch], key) - _pct(ev[base], key)


def _change(res: dict, branch: str, key: str, scale: float = 1.0) -> float | None:
  """Last-10-steps mean minus first-10-steps mean of a GRPO training metric of `branch`."""
  d = res.get("rl", {}).get(branch, {})
  if key not in d or None in d[key]:
    return None
  return scale * (d[key][1] - d[key][0])


def findings_rows(results: dict[int, dict]) -> list[dict[str, Any]]:
  """One row per measured quantity: {finding, claim, measure, values (per seed), mean, se, holds}."""
  seeds = sorted(results)
  rows = []

  def add(finding, claim, measure, values, holds=None):
    m, se = mean_se(list(values.values()))
    rows.append(dict(finding=finding, claim=claim, measure=measure, values=values, mean=m,
                     se=se, holds=holds))

  base_fmt = {s: _pct(results[s]["evals"].get("pretrain"), "format_rate") for s in seeds}
  add("0", "base already writes the R1 format", "base format rate %", base_fmt,
      holds=_all(base_fmt, lambda v: v >= 95.0))
  for branch, label in (("r1_zero", "findings recipe: lr 5e-5, G=16"),
                        ("r1_zero_shipped", "quickstart recipe: lr 2e-4, G=8"),
                        ("r1_zero_lr", "ablation: quickstart recipe with lr 5e-5"),
                        ("r1_zero_t06", "findings recipe sampling at T 0.6 instead of 1"),
                        ("r1_zero_ds", "findings recipe with DAPO dynamic sampling")):
    gains = {s: _gain(results[s], branch) for s in seeds}
    if all(v is None for v in gains.values()):
      continue
    # The stage's length as run (its resolved config), not the config file's current default.
    lengths = sorted({results[s].get("num_steps", {}).get(branch) for s in seeds} - {None})
    if lengths:
      label += f", {'/'.join(map(str, lengths))} steps"
    holds = _all(gains, lambda v: v >= FINDING0_MIN_GAIN)
    cut = sorted({results[s]["evals"][branch]["cut_at_step"] for s in seeds
                  if "cut_at_step" in results[s]["evals"].get(branch, {})})
    if cut:
      label += f"; **cut short at step {'/'.join(map(str, cut))}**"
    add("0", f"RL improves correctness ({label})", "held-out pass@1 gain, points", gains,
        holds=holds)
  def consk(s, stage, kk):
    return next((r["summary"] for r in results[s].get("consk", [])
                 if (r["stage"], r["k"]) == (stage, kk)), None)

  # Finding 0 again with the k-sample evaluation (`--cons-k`): the same problems, a pass@1 with
  # a quarter of the sampling noise of the table's k=4 (per problem).
  for kk in sorted({r["k"] for s in seeds for r in results[s].get("consk", [])}):
    for branch in ("r1_zero", "r1_zero_ds"):
      gains = {s: (None if consk(s, "pretrain", kk) is None or consk(s, branch, kk) is None else
                   _pct(consk(s, branch, kk), "pass@1") - _pct(consk(s, "pretrain", kk), "pass@1"))
               for s in seeds}
      if any(v is not None for v in gains.values()):
        add("0", f"RL improves correctness ({branch}; pass@1 over {kk} samples, `--cons-k {kk}`)",
            "held-out pass@1 gain, points", gains,
            holds=_all(gains, lambda v: v >= FINDING0_MIN_GAIN))
  gains = {s: _gain(results[s], "r1_zero") for s in seeds}
  add("1", "R1-Zero: held-out pass@1 rises (no SFT)", "pass@1 gain, points", gains,
      holds=_all(gains, lambda v: v > 0))
  k = _k(results)
  cons = {s: (None if "r1_zero" not in results[s]["evals"] else
              _pct(results[s]["evals"]["r1_zero"], f"cons@{k}")
              - _pct(results[s]["evals"]["r1_zero"], "pass@1")) for s in seeds}
  add("1", f"R1-Zero: cons@{k} > pass@1", f"cons@{k} - pass@1 after R1-Zero, points", cons,
      holds=_all(cons, lambda v: v > 0))
  for kk in sorted({r["k"] for s in seeds for r in results[s].get("consk", [])
                    if r["stage"] == "r1_zero"}):
    summ = {s: consk(s, "r1_zero", kk) for s in seeds}
    cons = {s: None if v is None else _pct(v, f"cons@{kk}") - _pct(v, "pass@1")
            for s, v in summ.items()}
    add("1", f"R1-Zero: cons@{kk} > pass@1 (both over the same {kk} samples, `--cons-k {kk}`)",
        f"cons@{kk} - pass@1 after R1-Zero, points", cons, holds=_all(cons, lambda v: v > 0))
  _finding3_rows(results, seeds, add)
  _finding6_rows(results, seeds, add)
  return rows


def _finding3_rows(results, seeds, add) -> None:
  """Finding 3: held-out mixing without / with the language reward, and its accuracy cost."""
  ev = {s: results[s]["evals"] for s in seeds}
  if not any(b in ev[s] for s in seeds for b in LANG_BRANCHES):
    return
  claim = "Language consistency costs little accuracy and removes mixing"
  lengths = sorted({results[s].get("num_steps", {}).get(b) for s in seeds for b in LANG_BRANCHES}
                   - {None})
  steps = f", {'/'.join(map(str, lengths))} RL steps" if lengths else ""
  mix = {b: {s: _pct(ev[s].get(b), "language_mixing_rate") for s in seeds}
         for b in (LANG_BASE,) + LANG_BRANCHES}
  add("3", f"{claim}: the base mixes", "held-out mixing rate of the base, %", mix[LANG_BASE],
      holds=_all(mix[LANG_BASE], lambda v: v > 0))
  add("3", f"{claim}: RL without the language reward{steps}", "held-out mixing rate, %",
      mix["rl_lang_off"])
  add("3", f"{claim}: RL with it (weights in Configs){steps}", "held-out mixing rate, %",
      mix["rl_lang_on"], holds=_all(mix["rl_lang_on"], lambda v: v <= FINDING3_MAX_MIXING))
  # The rollouts' mixing (T 1, 128 samples a step) over the last 10 steps: without minus with the
  # reward. RL alone may lower mixing too; this row asks whether the reward lowers it further.
  last = {s: (None if any("mixing_rate" not in results[s]["rl"].get(b, {}) for b in LANG_BRANCHES)
              else 100.0 * (results[s]["rl"]["rl_lang_off"]["mixing_rate"][1]
                            - results[s]["rl"]["rl_lang_on"]["mixing_rate"][1])) for s in seeds}
  add("3", f"{claim}: the reward lowers mixing below RL without it",
      "rollouts' mixing rate (T 1), last 10 RL steps, without minus with, points", last,
      holds=_all(last, lambda v: v > 0))
  cost = {s: (None if not all(b in ev[s] for b in LANG_BRANCHES) else
              _pct(ev[s]["rl_lang_off"], "pass@1") - _pct(ev[s]["rl_lang_on"], "pass@1"))
          for s in seeds}
  add("3", f"{claim}: accuracy cost", "pass@1 without minus with the language reward, points",
      cost, holds=_all(cost, lambda v: v <= FINDING3_MAX_COST))


def _finding6_rows(results, seeds, add) -> None:
  """Finding 6: how mean response length and the reflection rate move over RL (no criterion)."""
  for branch in ("r1_zero", "rl_lang_off"):
    base = "pretrain" if branch == "r1_zero" else LANG_BASE
    length = {s: _change(results[s], branch, "completion_len/mean") for s in seeds}
    if all(v is None for v in length.values()):
      continue
    add("6", f"Response length under RL ({branch}, from `{base}`)",
        "mean completion length, last 10 minus first 10 RL steps, tokens", length)
    refl = {s: _change(results[s], branch, "reflection_rate", 100.0) for s in seeds}
    if any(v is not None for v in refl.values()):
      add("6", f"Reflection under RL ({branch}, from `{base}`)",
          "completions with a reflection phrase, last 10 minus first 10 RL steps, points", refl)


def _k(results) -> int:
  for res in results.values():
    for summ in res["evals"].values():
      for key in summ:
        if key.startswith("cons@"):
          return int(key[5:])
  return 4


def _all(values: dict, pred) -> bool | None:
  vals = [v for v in values.values() if v is not None]
  if not vals:
    return None
  return all(pred(v) for v in vals)


def _f(x, nd=1) -> str:
  return "—" if x is None else f"{x:.{nd}f}"


def format_findings(rows: list[dict], seeds: list[int]) -> str:
  head = ("| finding | claim | measure | " + " | ".join(f"seed {s}" for s in seeds)
          + " | mean ± se | holds |")
  lines = [head, "|" + "---|" * (5 + len(seeds))]
  for r in rows:
    vals = " | ".join(_f(r["values"].get(s)) for s in seeds)
    ms = _f(r["mean"]) + ("" if r["se"] is None else f" ± {_f(r['se'])}")
    holds = {True: "yes", False: "**no**", None: "—"}[r["holds"]]
    lines.append(f"| {r['finding']} | {r['claim']} | {r['measure']} | {vals} | {ms} | {holds} |")
  blanks = " | ".join("not run" for _ in seeds)
  measured = {str(r["finding"]) for r in rows}
  for n, claim in NOT_RUN:
    if str(n) in measured:
      continue
    lines.append(f"| {n} | {claim} | — | {blanks} | not run | not run |")
  return "\n".join(lines)


def format_curve(results: dict[int, dict]) -> str:
  """Held-out pass@1 against RL steps (`--curve`), with the base (step 0) and the finished stage."""
  k = _k(results)
  lines = [f"| seed | branch | RL step | pass@1 (k={k}) | ± se | cons@{k} | gain over base, points |",
           "|" + "---|" * 7]
  any_row = False
  for s in sorted(results):
    res = results[s]
    base = res["evals"].get("pretrain")
    for branch in sorted({r["stage"] for r in res.get("curve", [])}):
      pts = {r["step"]: r["summary"] for r in res["curve"] if r["stage"] == branch}
      final = res["evals"].get(branch)
      if final is not None:
        pts.setdefault(final.get("cut_at_step", res.get("num_steps", {}).get(branch, -1)), final)
      if base is not None:
        pts.setdefault(0, base)
      for step in sorted(pts):
        summ = pts[step]
        gain = None if base is None else _pct(summ, "pass@1") - _pct(base, "pass@1")
        lines.append(f"| {s} | {branch} | {step} | {_f(_pct(summ, 'pass@1'))} "
                     f"| {_f(_pct(summ, 'pass@1_se'))} | {_f(_pct(summ, f'cons@{k}'))} "
                     f"| {_f(gain)} |")
        any_row = True
  return "\n".join(lines) if any_row else ""


def format_language(results: dict[int, dict]) -> str:
  """Findings 3 and 6 on the held-out samples: mixing, reflection and length per stage, and the
  same over RL steps (first and last 10 steps' means of the GRPO metrics)."""
  stages = ("pretrain", "r1_zero", LANG_BASE) + LANG_BRANCHES
  lines = ["| seed | stage | pass@1 | held-out mixing % | held-out reflection % | held-out mean "
           "length | RL mixing % first→last 10 steps | RL reflection % first→last | RL length "
           "first→last |", "|" + "---|" * 9]
  any_row = False
  for s in sorted(results):
    res = results[s]
    for stage in stages:
      summ = res["evals"].get(stage)
      d = res["rl"].get(stage, {})
      if summ is None or (stage in ("pretrain", "r1_zero") and "language_mixing_rate" not in summ):
        continue

      def fl(key, scale=1.0, nd=1):
        if key not in d or None in d[key]:
          return "—"
        return f"{_f(d[key][0] * scale, nd)} → {_f(d[key][1] * scale, nd)}"

      lines.append(f"| {s} | {stage} | {_f(_pct(summ, 'pass@1'))} "
                   f"| {_f(_pct(summ, 'language_mixing_rate'))} | {_f(_pct(summ, 'reflection_rate'))} "
                   f"| {_f(summ.get('mean_length'))} | {fl('mixing_rate', 100)} "
                   f"| {fl('reflection_rate', 100)} | {fl('completion_len/mean')} |")
      any_row = True
  return "\n".join(lines) if any_row else ""


def format_seed_details(results: dict[int, dict]) -> str:
  k = _k(results)
  lines = [f"| seed | stage | pass@1 (k={k}) | ± se (problems) | cons@{k} | format rate | "
           "KL first→last 10 steps | zero-variance groups first→last | entropy first→last | "
           "wall time |", "|" + "---|" * 10]
  for s in sorted(results):
    res = results[s]
    for stage, summ in res["evals"].items():
      d = res["rl"].get(stage, {})

      def fl(key, scale=1.0, nd=3, unit=""):
        if key not in d:
          return "—"
        a, b = d[key]
        return f"{_f(a * scale, nd)}{unit} → {_f(b * scale, nd)}{unit}"

      wall = res["wall_s"].get(stage)
      name = stage if "cut_at_step" not in summ else (
          f"{stage} (cut short: step {summ['cut_at_step']} of {summ['num_steps']})")
      lines.append(f"| {s} | {name} | {_f(_pct(summ, 'pass@1'))} | {_f(_pct(summ, 'pass@1_se'))} "
                   f"| {_f(_pct(summ, f'cons@{k}'))} | {_f(_pct(summ, 'format_rate'))} "
                   f"| {fl('kl')} | {fl('zero_variance_groups', 100, 0, '%')} | {fl('entropy')} "
                   f"| {'—' if wall is None else f'{wall:.0f} s'} |")
  return "\n".join(lines)


CURVE_KEYS = ("accuracy_rate", "kl", "zero_variance_groups", "entropy", "completion_len/mean",
              "mixing_rate", "reflection_rate")


def write_curves(results: dict[int, dict], out_base: pathlib.Path) -> str:
  """Training curves of every RL branch and seed: a PNG, or a CSV without matplotlib."""
  from r1jax.metrics import read_metrics  # pylint: disable=import-outside-toplevel
  series = {}
  for s, res in sorted(results.items()):
    for branch in res["rl"]:
      stage_dir = res.get("dirs", {}).get(branch) or pathlib.Path(res["workdir"]) / branch
      recs = [r for r in read_metrics(stage_dir)
              if "accuracy_rate" in r]
      series[(s, branch)] = recs
  try:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  except ImportError:
    path = out_base.with_suffix(".csv")
    with open(path, "w") as f:
      f.write("seed,branch,step," + ",".join(CURVE_KEYS) + "\n")
      for (s, b), recs in series.items():
        for r in recs:
          f.write(f"{s},{b},{r.get('step')}," + ",".join(str(r.get(k, "")) for k in CURVE_KEYS)
                  + "\n")
    return path.name
  fig, axes = plt.subplots(1, len(CURVE_KEYS), figsize=(4.0 * len(CURVE_KEYS), 3.2))
  for (s, b), recs in series.items():
    steps = [r["step"] for r in recs]
    for ax, key in zip(axes, CURVE_KEYS):
      ys = [r.get(key, float("nan")) for r in recs]
      w = 9    # centred moving average: per-step values of 128 samples are noisy
      sm = [sum(ys[max(0, i - w // 2):i + w // 2 + 1]) / len(ys[max(0, i - w // 2):i + w // 2 + 1])
            for i in range(len(ys))]
      ax.plot(steps, sm, label=f"{b} s{s}", lw=1.2,
              ls={"r1_zero": "-", "r1_zero_shipped": "--", "r1_zero_t06": "-.",
                  "rl_lang_off": (0, (5, 1)), "rl_lang_on": (0, (1, 1))}.get(b, ":"))
      ax.set_title(key, fontsize=9)
      ax.set_xlabel("RL step", fontsize=8)
  axes[0].legend(fontsize=6)
  fig.tight_layout()
  path = out_base.with_suffix(".png")
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path.name


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
    else:
      lines.append(f"- `{name}`: GRPO from `{c.init_from[name]}`, lr {st.optim.learning_rate} "
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
                 total_s: float | None = None, notes: str = "") -> pathlib.Path:
  seeds = sorted(results)
  rows = findings_rows(results)
  path.parent.mkdir(parents=True, exist_ok=True)
  curves = write_curves(results, path.with_name(path.stem + "_curves"))
  lines = [
      f"# R1's findings in miniature (`configs/r1_findings.py:{preset}`), seeds "
      f"{', '.join(map(str, seeds))}", "",
      f"Command: `python experiments/r1_findings.py --seeds {','.join(map(str, seeds))} "
      f"--preset {preset}`", "",
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
      "section below, finding 6 has none.", "",
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
  p.add_argument("--branches", default="", help="RL branches, '+'-separated (default: all)")
  p.add_argument("--out", default=str(RESULTS / "r1_findings.md"))
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
  args = p.parse_args(argv)
  seeds = [int(s) for s in args.seeds.split(",") if s]
  branches = tuple(args.branches.split("+")) if args.branches else None
  collect_only = (args.report_only or args.evaluate_partial or args.strategy or args.curve
                  or args.cons_k)
  load0 = tuple(round(x, 2) for x in os.getloadavg())
  t0 = time.time()
  results = {}
  for s in seeds:
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
      results[s] = run_seed(s, args.root, args.preset, branches)
  total = None if collect_only else time.time() - t0
  load1 = tuple(round(x, 2) for x in os.getloadavg())
  notes = pathlib.Path(args.notes).read_text() if args.notes else ""
  out = write_report(results, args.preset, pathlib.Path(args.out), (load0, load1), total, notes)
  print(out.read_text())
  return 0


if __name__ == "__main__":
  sys.exit(main())
