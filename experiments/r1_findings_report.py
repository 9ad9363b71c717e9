"""The findings table and the report's sections, from `collect_seed`'s per-seed dicts.

The formatting half of `experiments/r1_findings.py` (which re-exports these names): pure functions
of the collected results, no runs and no JAX.
"""
from __future__ import annotations

import math
import pathlib
from typing import Any

# Findings 3 and 6 read the branches from the worded, language-mixing base (`LANG_BASE`).
LANG_BRANCHES = ("rl_lang_off", "rl_lang_on")
LANG_BASE = "pretrain_lang"
# Margin of finding 0: held-out pass@1 must rise by at least this many points (the bar).
FINDING0_MIN_GAIN = 10.0
# Finding 3: with the language reward, the held-out mixing rate is "near 0" (at most this many %
# of the samples), and its accuracy cost (pass@1 without minus with it) "small" (at most this
# many points, about 1.5 standard errors of a 200-problem evaluation).
FINDING3_MAX_MIXING = 5.0
FINDING3_MAX_COST = 5.0
# Finding 2: cold-started RL keeps the readable format on at least this many % of the samples.
FINDING2_MIN_SUMMARY = 90.0
NOT_RUN = [
    (2, "Cold start makes RL start higher and converge faster, with readable output"),
    (3, "Language consistency costs little accuracy and removes mixing"),
    (4, "Rejection sampling + SFT >= its RL checkpoint; all-scenario RL keeps reasoning"),
    (5, "Distillation beats RL for the small model"),
    (6, "Response length and reflection under RL"),
]


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
  _finding2_rows(results, seeds, add)
  _finding3_rows(results, seeds, add)
  _finding45_rows(results, seeds, add)
  _finding6_rows(results, seeds, add)
  return rows


def _within_noise(res: dict, a: str, b: str) -> float | None:
  """The standard error of `_gain(res, a, base=b)` (independent evaluations), in points."""
  ev = res["evals"]
  if a not in ev or b not in ev or "pass@1_se" not in ev[a] or "pass@1_se" not in ev[b]:
    return None
  return 100.0 * math.hypot(ev[a]["pass@1_se"], ev[b]["pass@1_se"])


def steps_to_reach(records: list[dict], target: float, key: str = "accuracy_rate",
                   window: int = 10) -> int | None:
  """First RL step whose trailing `window`-step mean of `key` reaches `target`; None if never."""
  vals = [(r["step"], r[key]) for r in records if key in r]
  for i in range(window - 1, len(vals)):
    if sum(v for _, v in vals[i - window + 1:i + 1]) / window >= target:
      return vals[i][0]
  return None


def _finding2_rows(results, seeds, add) -> None:
  """Finding 2: cold start (SFT on readable traces) then RL, against R1-Zero from the same base."""
  ev = {s: results[s]["evals"] for s in seeds}
  if not any("cold_rl" in ev[s] for s in seeds):
    return
  claim = "Cold start: RL starts higher, converges faster, output stays readable"
  first = {s: (None if any("accuracy_rate" not in results[s]["rl"].get(b, {})
                           for b in ("r1_zero", "cold_rl")) else
               100.0 * (results[s]["rl"]["cold_rl"]["accuracy_rate"][0]
                        - results[s]["rl"]["r1_zero"]["accuracy_rate"][0])) for s in seeds}
  add("2", f"{claim}: starts higher", "training accuracy, first 10 RL steps, cold_rl minus "
      "r1_zero, points", first, holds=_all(first, lambda v: v > 0))
  reach = {s: results[s].get("reach", {}).get("cold_rl") for s in seeds}
  r1_steps = sorted({results[s].get("num_steps", {}).get("r1_zero") for s in seeds} - {None})
  add("2", f"{claim}: reaches R1-Zero's final training accuracy (last 10 of "
      f"{'/'.join(map(str, r1_steps)) or '?'} steps) sooner",
      "RL steps cold_rl needs (trailing 10-step mean)", reach,
      holds=None if not r1_steps else _all(reach, lambda v: v < min(r1_steps)))
  lengths = sorted({results[s].get("num_steps", {}).get("cold_rl") for s in seeds} - {None})
  final = {s: _gain(results[s], "cold_rl", base="r1_zero") for s in seeds}
  add("2", f"{claim}: held-out, after {'/'.join(map(str, lengths)) or '?'} RL steps against "
      f"R1-Zero's {'/'.join(map(str, r1_steps)) or '?'}",
      "pass@1, cold_rl minus r1_zero, points", final,
      holds=_all({s: (v, _within_noise(results[s], "cold_rl", "r1_zero")) for s, v in final.items()
                  if v is not None}, lambda t: t[0] >= -(t[1] or 0.0)))
  for stage in ("r1_zero", "cold_rl"):
    summ = {s: _pct(ev[s].get(stage), "summary_rate") for s in seeds}
    add("2", f"{claim}: readable format (reasoning, then a summary), {stage}",
        "held-out samples with a summary, %", summ,
        holds=_all(summ, lambda v: v >= FINDING2_MIN_SUMMARY) if stage == "cold_rl" else None)


def _finding45_rows(results, seeds, add) -> None:
  """Findings 4 (SFT on rejection-sampled traces >= the RL checkpoint) and 5 (distillation beats
  RL for the student)."""
  ev = {s: results[s]["evals"] for s in seeds}
  if any("sft_rs" in ev[s] for s in seeds):
    diff = {s: _gain(results[s], "sft_rs", base="cold_rl") for s in seeds}
    traces = sorted({results[s].get("traces") for s in seeds} - {None})
    add("4", "Rejection sampling + SFT of the base >= the RL checkpoint it sampled"
        + (f" ({'/'.join(map(str, traces))} traces)" if traces else ""),
        "pass@1, sft_rs minus cold_rl, points (holds within one standard error)", diff,
        holds=_all({s: (v, _within_noise(results[s], "sft_rs", "cold_rl"))
                    for s, v in diff.items() if v is not None},
                   lambda t: t[0] >= -(t[1] or 0.0)))
  if any("all_scenarios" in ev[s] for s in seeds):
    claim = "All-scenario RL keeps reasoning and raises the reward-model score on general prompts"
    acc = {s: results[s].get("rm_accuracy") for s in seeds}
    add("4", f"{claim}: the helpfulness reward model", "held-out pair accuracy, %",
        {s: None if v is None else 100.0 * v for s, v in acc.items()})
    keep = {s: _gain(results[s], "all_scenarios", base="sft_rs") for s in seeds}
    add("4", f"{claim}: keeps reasoning", "pass@1, all_scenarios minus sft_rs, points (holds "
        "within one standard error)", keep,
        holds=_all({s: (v, _within_noise(results[s], "all_scenarios", "sft_rs"))
                    for s, v in keep.items() if v is not None}, lambda t: t[0] >= -(t[1] or 0.0)))
    # The rollouts' helpfulness reward (the reward model's sigmoid score on general rows, 0 on
    # arithmetic rows, which are 3 in 4), last 10 minus first 10 RL steps.
    rise = {s: _change(results[s], "all_scenarios", "reward/helpfulness", 100.0) for s in seeds}
    add("4", f"{claim}: raises the score", "rollouts' helpfulness reward (mean over all rows, a "
        "quarter general), last 10 minus first 10 steps, x100", rise,
        holds=_all(rise, lambda v: v > 0))
  if any("distill" in ev[s] or "student_rl" in ev[s] for s in seeds):
    for stage in ("student_rl", "distill"):
      gain = {s: _gain(results[s], stage, base="student_base") for s in seeds}
      add("5", f"The student ({stage}) over its own base", "held-out pass@1 gain, points", gain)
    diff = {s: _gain(results[s], "distill", base="student_rl") for s in seeds}
    add("5", "Distillation beats RL for the small model", "pass@1, distill minus student_rl, "
        "points", diff, holds=_all(diff, lambda v: v > 0))


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
              "mixing_rate", "reflection_rate", "summary_rate")


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
                  "rl_lang_off": (0, (5, 1)), "rl_lang_on": (0, (1, 1)), "cold_rl": "-",
                  "student_rl": "--"}.get(b, ":"))
      ax.set_title(key, fontsize=9)
      ax.set_xlabel("RL step", fontsize=8)
  axes[0].legend(fontsize=6)
  fig.tight_layout()
  path = out_base.with_suffix(".png")
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path.name


