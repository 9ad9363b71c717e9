"""experiments/r1_findings.py: the findings config, the table arithmetic, and (slow) one seed."""
from __future__ import annotations

import importlib.util
import math
import os
import pathlib

import pytest

from r1jax import config as config_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _findings():
  spec = importlib.util.spec_from_file_location("r1_findings_exp",
                                                ROOT / "experiments" / "r1_findings.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_config_branches_share_the_base():
  f = _findings()
  c = f.load_config("tiny", seed=1, branches=("all",))
  config_lib.validate(c)
  # By default every finding's branch runs, and not the R1-Zero recipe ablations.
  default = f.load_config("tiny", seed=1)
  assert set(default.order) == set(c.order) - {"r1_zero_shipped", "r1_zero_lr", "r1_zero_t06",
                                               "r1_zero_ds"}
  assert "r1_zero" in default.order and "all_scenarios" in default.order
  assert c.order[:3] == ("pretrain", f.LANG_BASE, "student_base")
  assert set(c.order[3:]) == set(f.RL_BRANCHES) | {"cold_start", "rejection", "sft_rs",
                                                    "rm_helpful", "distill"}
  assert all(c.init_from[b] == (f.LANG_BASE if b in f.LANG_BRANCHES else "pretrain")
             for b in f.RL_BRANCHES if b not in ("cold_rl", "student_rl", "all_scenarios"))
  # The base writes the R1 format on every sample: no untagged solutions in its corpus.
  assert c.stages.pretrain.data.sources[0]["options"]["untagged_rate"] == 0.0
  # The second design's base: 60% precedence solutions, 2000 steps (1000 until session 15: it could
  # not carry out the precedence order, and finding 0 failed on seed 1); the first design's is an
  # option.
  assert (c.stages.pretrain.data.sources[0]["error_rate"], c.stages.pretrain.train.num_steps) == (
      0.4, 2000)
  first = f.load_config("tiny", seed=1, error_rate=0.7, pretrain_steps=600).stages.pretrain
  assert (first.data.sources[0]["error_rate"], first.train.num_steps) == (0.7, 600)
  shipped = c.stages.r1_zero_shipped
  quick = f.load_config("tiny", branches=("all",)).stages.r1_zero_shipped
  assert (shipped.optim.learning_rate, shipped.rl.group_size) == (2e-4, 8)
  assert quick.train.num_steps == 100
  r1 = c.stages.r1_zero
  assert (r1.optim.learning_rate, r1.rl.group_size, r1.train.num_steps) == (5e-5, 16, 300)
  assert r1.train.checkpoint_every == 25          # intermediate checkpoints for --curve
  # rl_steps sets the findings recipe's length (its branches and the student's RL), nothing
  # else; the language branches have their own (100), lang_rl_steps.
  short = f.load_config("tiny", seed=1, branches=("all",), rl_steps=150)
  assert (short.stages.r1_zero.train.num_steps, short.stages.r1_zero_t06.train.num_steps,
          short.stages.student_rl.train.num_steps,
          short.stages.r1_zero_shipped.train.num_steps) == (150, 150, 150, 100)
  assert {c.stages[b].train.num_steps for b in ("rl_lang_off", "rl_lang_on")} == {100}
  long_lang = f.load_config("tiny", seed=1, lang_rl_steps=300, rl_steps=200)
  assert [long_lang.stages[b].train.num_steps for b in ("rl_lang_off", "rl_lang_on", "r1_zero")] == [
      300, 300, 200]
  # Same samples per step as the shipped recipe, and the quickstart's held-out protocol.
  assert r1.rl.num_prompts * r1.rl.group_size == shipped.rl.num_prompts * shipped.rl.group_size
  assert (c.eval.temperature, c.eval.top_p, c.eval.task["split"]) == (0.6, 0.95, "test")
  # The T 0.6 branch differs from the findings recipe only in the rollouts' temperature.
  t06 = c.stages.r1_zero_t06
  assert t06.rl.temperature == 0.6 and r1.rl.temperature == 1.0
  assert (t06.optim.learning_rate, t06.rl.group_size, t06.rl.num_prompts, t06.train.num_steps) == (
      r1.optim.learning_rate, r1.rl.group_size, r1.rl.num_prompts, r1.train.num_steps)
  only = f.load_config("small", seed=0, branches=("r1_zero",))
  assert tuple(only.order) == ("pretrain", "r1_zero")
  with pytest.raises(ValueError, match="Unknown branches"):
    f.load_config("tiny", branches=("nope",))


def _tasks(c) -> dict:
  """The arithmetic options of every stage that samples or trains on problems."""
  opts = lambda st: st.data.sources[0]["options"]
  return {"pretrain": opts(c.stages.pretrain), "pretrain_lang": opts(c.stages.pretrain_lang),
          "student_base": opts(c.stages.student_base), "cold_start": opts(c.stages.cold_start),
          "r1_zero": c.stages.r1_zero.task, "cold_rl": c.stages.cold_rl.task,
          "student_rl": c.stages.student_rl.task,
          "all_scenarios": c.stages.all_scenarios.task.sources[0],
          "rejection": c.stages.rejection.rejection.tasks[0], "eval": c.eval.task}


def test_config_task_is_the_same_in_every_stage():
  """The quickstart's task (2-3 operations, operands up to 5) in every stage that samples or trains
  on problems; `max_ops=2,max_value=9` (session 15's alternative design) changes all of them."""
  f = _findings()
  for opts, want in (({}, (2, 3, 5)), (dict(max_ops=2, max_value=9), (2, 2, 9))):
    c = f.load_config("tiny", seed=1, **opts)
    got = {k: (t["min_ops"], t["max_ops"], t["max_value"]) for k, t in _tasks(c).items()}
    assert got == dict.fromkeys(got, want), got


def test_config_keeps_the_library_defaults_unless_pinned():
  """Every stage keeps the library's step widths (`train.seq_buckets`) and CPU microbatches
  (`optim.grad_accum_steps` 0 = auto); `seq_buckets=1,grad_accum=1` pins the records up to
  session 20's full-width steps and one-batch updates."""
  from r1jax.config import base_config
  lib = base_config()
  f = _findings()
  for opts, buckets, accum in (({}, lib.train.seq_buckets, lib.optim.grad_accum_steps),
                               (dict(seq_buckets=1, grad_accum=1), 1, 1)):
    c = f.load_config("tiny", seed=0, **opts)
    trained = {k: st for k, st in c.stages.items() if "optim" in st}
    assert {st.optim.grad_accum_steps for st in trained.values()} == {accum}
    assert {st.train.seq_buckets for st in trained.values()
            if st.stage in ("pretrain", "sft")} == {buckets}
    assert {"pretrain", "r1_zero", "distill"} <= set(trained)


def test_config_stage_branches_findings_2_4_5():
  """Cold start -> reasoning RL -> rejection sampling -> SFT of the base / of the student's base;
  selecting a stage brings the stages it needs, and each starts from the right workdir."""
  f = _findings()
  c = f.load_config("tiny", seed=1, branches=("r1_zero", "distill"))
  config_lib.validate(c)
  assert tuple(c.order) == ("pretrain", "student_base", "r1_zero", "cold_start", "cold_rl",
                            "rejection", "distill")
  assert dict(c.init_from) == dict(r1_zero="pretrain", cold_start="pretrain", cold_rl="cold_start",
                                   rejection="cold_rl", distill="student_base")
  assert dict(c.data_from) == dict(distill="rejection")
  assert "rejection" not in c.eval.after and "distill" in c.eval.after
  # Cold start: correct (error_rate 0) readable traces on other problems than the base's corpus.
  cold = c.stages.cold_start.data.sources[0]
  assert (cold["error_rate"], cold["options"]["summary"], cold["num_examples"]) == (0.0, True, 4000)
  assert c.stages.cold_start.train.num_steps == 600
  assert cold["seed"] != c.stages.pretrain.data.sources[0]["seed"]
  # Reasoning RL from it: the findings recipe, a third of R1-Zero's steps, a format reward that
  # accepts the summary.
  cold_rl, r1 = c.stages.cold_rl, c.stages.r1_zero
  assert (cold_rl.optim.learning_rate, cold_rl.rl.group_size, cold_rl.rl.num_prompts) == (
      r1.optim.learning_rate, r1.rl.group_size, r1.rl.num_prompts)
  assert cold_rl.train.num_steps == 100 < r1.train.num_steps
  assert set(cold_rl.rewards.weights) == {"accuracy", "format_soft"}
  rej = c.stages.rejection.rejection
  assert (rej.allow_summary, rej.require_format, rej.tasks[0]["split"]) == (True, True, "train")
  assert rej.reward.kwargs["accuracy"].to_dict() == {"fallback": "none"}
  # The student: its own base (the teacher base's corpus, half the layers, half the steps).
  sb = c.stages.student_base
  assert (sb.model.preset, sb.model.overrides.to_dict()) == ("tiny", {"num_layers": 2})
  assert sb.data == c.stages.pretrain.data
  assert sb.train.num_steps == c.stages.pretrain.train.num_steps // 2 == 1000
  # All-scenario RL: half cold_rl's steps; both lengths are options (session 21's: 2000, 100).
  assert f.load_config("tiny", seed=1).stages.all_scenarios.train.num_steps == 50
  old = f.load_config("tiny", seed=1, branches=("all_scenarios", "distill"),
                      student_pretrain_steps=2000, all_rl_steps=100).stages
  assert (old.student_base.train.num_steps, old.all_scenarios.train.num_steps,
          old.pretrain.train.num_steps, old.cold_rl.train.num_steps) == (2000, 100, 2000, 100)
  full = f.load_config("small", seed=0, branches=("all_scenarios", "student_rl"))
  assert tuple(full.order) == ("pretrain", "student_base", "cold_start", "cold_rl", "rejection",
                               "sft_rs", "rm_helpful", "all_scenarios", "student_rl")
  assert full.init_from.sft_rs == "pretrain" and full.data_from.sft_rs == "rejection"
  # R1's stage-4 mix: the traces and chit-chat (written by the prepare hook), 3 to 1.
  mix = full.stages.sft_rs.data.sources
  assert [(s["path"], s["weight"]) for s in mix] == [("", 0.75), (
      "{workdir}/data/chitchat_sft.jsonl", 0.25)]
  assert full.prepare[0]["fn"] == "r1jax.data.chitchat:write_chitchat"
  # Stage 5: a reward model trained from scratch on preference pairs scores general rows.
  assert "rm_helpful" not in full.init_from and "rm_helpful" not in full.eval.after
  assert full.stages.rm_helpful.reward_model.train_path == "{workdir}/data/prefs_train.jsonl"
  alls = full.stages.all_scenarios
  assert full.init_from.all_scenarios == "sft_rs"
  assert alls.task.sources[1]["task"] == "general" and tuple(alls.task.weights) == (0.75, 0.25)
  assert alls.rewards.kwargs.helpfulness.scorer_init.path == "{workdir}/rm_helpful"
  assert set(alls.rewards.weights) == {"accuracy", "format_soft", "helpfulness"}
  # Finding 4 / 5's levers: how many traces rejection sampling draws, how long the SFT runs.
  more = f.load_config("tiny", seed=1, branches=("sft_rs", "distill"), rs_prompts=3000,
                       rs_samples=3, sft_steps=450).stages
  assert (more.rejection.rejection.tasks[0]["num_examples"], more.rejection.rejection.num_samples,
          more.sft_rs.train.num_steps, more.distill.train.num_steps) == (3000, 3, 450, 450)
  assert (c.stages.rejection.rejection.tasks[0]["num_examples"], c.stages.distill.train.num_steps
          ) == (6000, 800)
  sized = f.load_config("tiny", seed=1, branches=("cold_start",), cold_examples=2000,
                        cold_steps=300).stages.cold_start
  assert (sized.data.sources[0]["num_examples"], sized.train.num_steps) == (2000, 300)


def test_config_language_branches():
  """Findings 3 and 6: a worded, mixing, reflecting base and two RL branches from it that differ
  only in the language reward; the findings base runs only when a branch needs it."""
  f = _findings()
  c = f.load_config("tiny", seed=0, branches=f.LANG_BRANCHES)
  config_lib.validate(c)
  assert tuple(c.order) == (f.LANG_BASE,) + f.LANG_BRANCHES and "pretrain" not in c.stages
  base = c.stages[f.LANG_BASE]
  opts = base.data.sources[0]["options"]
  assert (opts["cot_style"], opts["mix_rate"], opts["reflect_rate"]) == ("worded", 0.3, 0.2)
  ref = f.load_config("tiny", seed=0, branches=("r1_zero",)).stages
  # The same problems, sizes and strategy errors as the findings base; a longer window, fewer
  # steps (finding 3 needs a mixing base, not the precedence skill the longer base is for).
  assert base.train.num_steps == 600 < ref.pretrain.train.num_steps
  assert (f.load_config("tiny", seed=0, branches=("rl_lang_on",), lang_pretrain_steps=2000)
          .stages[f.LANG_BASE].train.num_steps) == 2000
  assert (base.data.sources[0]["num_examples"],
          base.data.sources[0]["error_rate"]) == (
                                                  ref.pretrain.data.sources[0]["num_examples"],
                                                  ref.pretrain.data.sources[0]["error_rate"])
  assert base.train.seq_len == 96
  off, on = c.stages.rl_lang_off, c.stages.rl_lang_on
  assert dict(off.rewards.weights) == dict(ref.r1_zero.rewards.weights) == {"accuracy": 1.0,
                                                                             "format": 0.5}
  assert dict(on.rewards.weights) == {"accuracy": 1.0, "format": 0.5, "language": 1.0}
  assert on.rewards.kwargs["language"]["target_language"] == "auto"
  for st in (off, on):   # the findings recipe, for a third of R1-Zero's steps
    assert (st.optim.learning_rate, st.rl.group_size, st.rl.num_prompts, st.train.num_steps) == (
        ref.r1_zero.optim.learning_rate, ref.r1_zero.rl.group_size, ref.r1_zero.rl.num_prompts,
        ref.r1_zero.train.num_steps // 3)
  on.rewards.weights = dict(off.rewards.weights)
  on.rewards.kwargs = dict(off.rewards.kwargs)
  assert on.to_dict() == off.to_dict()
  assert f.load_config("tiny", branches=("rl_lang_on",), language_weight=0.5).stages.rl_lang_on \
      .rewards.weights["language"] == 0.5
  both = f.load_config("small", branches=("r1_zero", "rl_lang_off"))
  assert tuple(both.order) == ("pretrain", f.LANG_BASE, "r1_zero", "rl_lang_off")


def _lang_seed(mix_off, mix_on, p_off, p_on):
  diag = lambda a, b, m: {"completion_len/mean": (40.0, 40.0 + a), "reflection_rate": (0.2, 0.2 + b),
                          "mixing_rate": (0.3, m)}
  return {"workdir": "/nonexistent", "wall_s": {},
          "rl": {"rl_lang_off": diag(5.0, -0.1, 0.2), "rl_lang_on": diag(1.0, 0.0, mix_on),
                 "r1_zero": {"completion_len/mean": (30.0, 28.0)}},
          "evals": {"pretrain_lang": {"pass@1": 0.3, "language_mixing_rate": 0.3},
                    "rl_lang_off": {"pass@1": p_off, "language_mixing_rate": mix_off},
                    "rl_lang_on": {"pass@1": p_on, "language_mixing_rate": mix_on}}}


def test_findings_rows_language_and_length():
  f = _findings()
  rows = f.findings_rows({0: _lang_seed(0.25, 0.01, 0.45, 0.43), 1: _lang_seed(0.2, 0.03, 0.5, 0.47)})
  three = [r for r in rows if r["finding"] == "3"]
  assert [r["holds"] for r in three] == [True, None, True, True, True]
  assert three[2]["values"] == pytest.approx({0: 1.0, 1: 3.0})
  assert three[3]["values"] == pytest.approx({0: 19.0, 1: 17.0})     # rollouts: 20% - mix_on
  assert three[4]["values"] == pytest.approx({0: 2.0, 1: 3.0})
  six = [r for r in rows if r["finding"] == "6"]
  assert [r["values"] for r in six] == [pytest.approx({0: -2.0, 1: -2.0}),
                                        pytest.approx({0: 5.0, 1: 5.0}),
                                        pytest.approx({0: -10.0, 1: -10.0})]
  assert all(r["holds"] is None for r in six)
  # Mixing left with the reward, or a large accuracy cost, fails the row.
  rows = f.findings_rows({0: _lang_seed(0.25, 0.2, 0.45, 0.30)})
  assert [r["holds"] for r in rows if r["finding"] == "3"] == [True, None, False, False, False]
  table = f.format_findings(rows, [0])
  assert "| 3 | Language consistency costs little accuracy and removes mixing | — |" not in table
  assert "| 6 | Response length and reflection under RL | — |" not in table
  assert "| 5 | Distillation" in table
  assert "rl_lang_on" in f.format_language({0: _lang_seed(0.25, 0.2, 0.45, 0.30)})


def _seed(base, r1, cons, fmt=1.0):
  return {"workdir": "/nonexistent", "wall_s": {}, "rl": {},
          "evals": {"pretrain": {"pass@1": base, "pass@1_se": 0.02, "cons@4": base,
                                 "format_rate": fmt},
                    "r1_zero": {"pass@1": r1, "pass@1_se": 0.03, "cons@4": cons,
                                "format_rate": 1.0}}}


def test_findings_rows_mean_se_and_criteria():
  f = _findings()
  rows = f.findings_rows({0: _seed(0.30, 0.45, 0.50), 1: _seed(0.30, 0.55, 0.52)})
  gain = next(r for r in rows if r["finding"] == "0" and "findings recipe" in r["claim"])
  assert gain["values"] == pytest.approx({0: 15.0, 1: 25.0})
  assert gain["mean"] == pytest.approx(20.0) and gain["se"] == pytest.approx(5.0)
  assert gain["holds"] is True
  cons = next(r for r in rows if "cons@4 >" in r["claim"])
  assert cons["values"] == pytest.approx({0: 5.0, 1: -3.0}) and cons["holds"] is False
  # A gain below the margin fails finding 0, not finding 1; a base without format fails row 0.
  rows = f.findings_rows({0: _seed(0.30, 0.35, 0.40, fmt=0.5)})
  assert [r["holds"] for r in rows] == [False, False, True, True]
  assert rows[1]["se"] is None
  table = f.format_findings(rows, [0])
  assert table.count("not run") >= 3 * len(f.NOT_RUN)   # rows 2-6 say so; no numbers
  assert f.mean_se([1.0, 3.0]) == (2.0, 1.0) and f.mean_se([]) == (None, None)
  # The claim names the length the stage ran (its resolved config), per seed when they differ.
  one, two = _seed(0.30, 0.45, 0.50), _seed(0.30, 0.55, 0.52)
  one["num_steps"], two["num_steps"] = {"r1_zero": 300}, {"r1_zero": 250}
  claims = [r["claim"] for r in f.findings_rows({0: one, 1: two})]
  assert "RL improves correctness (findings recipe: lr 5e-5, G=16, 250/300 steps)" in claims
  assert math.isclose(f.mean_se([2.0, 2.0])[1], 0.0)


def _stages(res, cold, sft, student_rl, distill, summary=0.98, reach=40):
  ev = res["evals"]
  ev["r1_zero"]["summary_rate"] = 0.0
  ev["cold_rl"] = {"pass@1": cold, "pass@1_se": 0.03, "summary_rate": summary}
  ev["sft_rs"] = {"pass@1": sft, "pass@1_se": 0.03}
  ev["student_base"] = {"pass@1": 0.10, "pass@1_se": 0.02}
  ev["student_rl"] = {"pass@1": student_rl, "pass@1_se": 0.02}
  ev["distill"] = {"pass@1": distill, "pass@1_se": 0.03}
  ev["all_scenarios"] = {"pass@1": sft + 0.01, "pass@1_se": 0.03}
  res["rl"] = {"r1_zero": {"accuracy_rate": (0.30, 0.50)}, "cold_rl": {"accuracy_rate": (0.55, 0.7)},
               "all_scenarios": {"reward/helpfulness": (0.10, 0.15)}}
  res["num_steps"] = {"r1_zero": 300, "cold_rl": 100}
  res["reach"], res["traces"], res["rm_accuracy"] = {"cold_rl": reach}, 1800, 0.9
  return res


def test_findings_rows_cold_start_rejection_distillation():
  """Findings 2, 4 and 5: the rows, their criteria, and the not-built half of finding 4."""
  f = _findings()
  res = {0: _stages(_seed(0.30, 0.45, 0.45), 0.60, 0.58, 0.15, 0.40),
         1: _stages(_seed(0.30, 0.50, 0.50), 0.48, 0.40, 0.20, 0.35, reach=None)}
  rows = f.findings_rows(res)
  by = {(r["finding"], r["measure"]): r for r in rows}
  start = by[("2", "training accuracy, first 10 RL steps, cold_rl minus r1_zero, points")]
  assert start["values"] == pytest.approx({0: 25.0, 1: 25.0}) and start["holds"] is True
  reach = next(r for r in rows if r["measure"].startswith("RL steps cold_rl needs"))
  assert "(last 10 of 300 steps)" in reach["claim"]
  assert reach["values"] == {0: 40, 1: None} and reach["holds"] is True
  # Held-out after 100 against 300 steps: seed 1 is 2 points under, within one standard error.
  final = by[("2", "pass@1, cold_rl minus r1_zero, points")]
  assert final["values"] == pytest.approx({0: 15.0, 1: -2.0}) and final["holds"] is True
  assert "after 100 RL steps against R1-Zero's 300" in final["claim"]
  readable = [r for r in rows if r["measure"] == "held-out samples with a summary, %"]
  assert [r["values"][0] for r in readable] == pytest.approx([0.0, 98.0])
  assert [r["holds"] for r in readable] == [None, True]
  # Finding 4: seed 1's SFT is 8 points under its RL checkpoint, beyond one standard error.
  sft = by[("4", "pass@1, sft_rs minus cold_rl, points (holds within one standard error)")]
  assert sft["values"] == pytest.approx({0: -2.0, 1: -8.0}) and sft["holds"] is False
  assert "(1800 traces)" in sft["claim"]
  keep = by[("4", "pass@1, all_scenarios minus sft_rs, points (holds within one standard error)")]
  assert keep["values"] == pytest.approx({0: 1.0, 1: 1.0}) and keep["holds"] is True
  rise = next(r for r in rows if r["measure"].startswith("rollouts' helpfulness reward"))
  assert rise["values"] == pytest.approx({0: 5.0, 1: 5.0}) and rise["holds"] is True
  assert by[("4", "held-out pair accuracy, %")]["values"] == pytest.approx({0: 90.0, 1: 90.0})
  distill = by[("5", "pass@1, distill minus student_rl, points")]
  assert distill["values"] == pytest.approx({0: 25.0, 1: 15.0}) and distill["holds"] is True
  table = f.format_findings(rows, [0, 1])
  assert "| 2 | Cold start" in table and "| 5 | Distillation beats RL" in table
  # Steps to reach: the first step whose trailing 10-step mean gets there.
  recs = [{"step": i + 1, "accuracy_rate": 0.5 * (i >= 5)} for i in range(30)]
  assert f._report.steps_to_reach(recs, 0.5) == 15 and f._report.steps_to_reach(recs, 0.6) is None
  assert f._report.steps_to_reach(recs, 0.25) == 10


def test_cons_k_row_reads_the_k_sample_evaluation():
  f = _findings()
  one, two = _seed(0.30, 0.45, 0.45), _seed(0.30, 0.55, 0.55)
  one["consk"] = [{"stage": "r1_zero", "k": 16, "summary": {"pass@1": 0.44, "cons@16": 0.50}},
                  {"stage": "pretrain", "k": 16, "summary": {"pass@1": 0.3, "cons@16": 0.2}}]
  two["consk"] = [{"stage": "r1_zero", "k": 16, "summary": {"pass@1": 0.56, "cons@16": 0.55}}]
  rows = f.findings_rows({0: one, 1: two})
  row = next(r for r in rows if "cons@16 >" in r["claim"])
  assert row["values"] == pytest.approx({0: 6.0, 1: -1.0}) and row["holds"] is False
  assert not any("cons@16" in r["claim"] for r in f.findings_rows({0: _seed(0.3, 0.4, 0.4)}))
  # Finding 0 with the 16-sample pass@1: only seed 0 has the base's 16-sample evaluation.
  gain = next(r for r in rows if "pass@1 over 16 samples" in r["claim"])
  assert gain["values"][0] == pytest.approx(14.0) and gain["values"][1] is None
  assert gain["holds"] is True


def test_curve_table_has_base_checkpoints_and_final_row():
  f = _findings()
  res = _seed(0.30, 0.45, 0.50)
  res["num_steps"] = {"r1_zero": 300}
  res["curve"] = [{"stage": "r1_zero", "step": 200, "summary": {
      "pass@1": 0.40, "pass@1_se": 0.03, "cons@4": 0.42}}]
  table = f.format_curve({0: res})
  rows = [line for line in table.splitlines() if line.startswith("| 0 |")]
  assert rows == ["| 0 | r1_zero | 0 | 30.0 | 2.0 | 30.0 | 0.0 |",
                  "| 0 | r1_zero | 200 | 40.0 | 3.0 | 42.0 | 10.0 |",
                  "| 0 | r1_zero | 300 | 45.0 | 3.0 | 50.0 | 15.0 |"]
  assert f.format_curve({0: _seed(0.3, 0.4, 0.4)}) == ""     # no --curve rows: no table


# The branches of findings 0-3 and 5 (and 4's first half, 6's curves): one seed of them is
# the slow test. all_scenarios (finding 4's second half) and the recipe ablations are left out.
SLOW_BRANCHES = ("r1_zero", "rl_lang_off", "rl_lang_on", "sft_rs", "student_rl", "distill")
SLOW_FINDINGS = {"0", "1", "2", "3", "4", "5"}


def direction_failures(res: dict) -> tuple[set[str], list[str]]:
  """Each finding's direction on one seed's results (`collect_seed`): (findings checked, failures).

  The criteria are the report's rows (`findings_rows`), with two exceptions that are reported
  there but not asserted here: finding 0's +10-point bar (the issue's bar for the mean of two
  seeds; seed 1 has fallen short of it, +7.8 to +9.1) is replaced by a rise of more than twice
  its standard error, and cons@4 > pass@1 (4 votes rarely differ from one sample; the report's
  `--cons-k` rows measure it over 16) by cons@4 >= pass@1 - one standard error.
  """
  f = _findings()
  rows = f.findings_rows({0: res})
  checked, failures = set(), []
  for r in rows:
    if r["holds"] is None:
      continue
    if r["finding"] == "0" and "RL improves correctness" in r["claim"]:
      continue                                  # the +10 bar: asserted below as significance
    if r["finding"] == "1" and "cons@" in r["claim"]:
      continue
    checked.add(r["finding"])
    if not r["holds"]:
      failures.append(f"finding {r['finding']}: {r['claim']}: {r['values'][0]}")
  ev = res["evals"]
  if "r1_zero" in ev:
    base, r1 = ev["pretrain"], ev["r1_zero"]
    se = math.hypot(base["pass@1_se"], r1["pass@1_se"])
    checked.add("0")
    if not r1["pass@1"] - base["pass@1"] > 2 * se:
      failures.append(f"finding 0: gain {r1['pass@1'] - base['pass@1']:.3f} <= 2 se {2 * se:.3f}")
    if not r1["cons@4"] >= r1["pass@1"] - r1["pass@1_se"]:
      failures.append(f"finding 1: cons@4 {r1['cons@4']} < pass@1 - se {r1}")
  return checked, failures


def test_direction_failures_reads_the_report_rows():
  """The slow test's checks on made-up results: a good seed passes, a reversed one fails."""
  def ev(p, se=0.03, **kw):
    return dict({"pass@1": p, "pass@1_se": se, "cons@4": p, "format_rate": 1.0}, **kw)
  rl = lambda acc: {"accuracy_rate": (acc, acc), "mixing_rate": (0.0, 0.0)}
  good = {"evals": {"pretrain": ev(0.40), "r1_zero": ev(0.52, summary_rate=0.0),
                    "cold_start": ev(0.60), "cold_rl": ev(0.61, summary_rate=1.0),
                    "sft_rs": ev(0.63), "student_base": ev(0.28), "student_rl": ev(0.36),
                    "distill": ev(0.52)},
          "rl": {"r1_zero": rl(0.3), "cold_rl": rl(0.5)}, "reach": {"cold_rl": 5},
          "num_steps": {"r1_zero": 300, "cold_rl": 100}}
  checked, failures = direction_failures(good)
  assert failures == [] and checked == {"0", "1", "2", "4", "5"}, failures
  bad = dict(good, evals=dict(good["evals"], r1_zero=ev(0.43, summary_rate=0.0),
                              distill=ev(0.30), sft_rs=ev(0.50)))
  _, failures = direction_failures(bad)
  assert [x.split(":")[0] for x in failures] == ["finding 4", "finding 5", "finding 0"], failures


@pytest.mark.slow
def test_one_seed_tiny_findings_directions(tmp_path):
  """Seed 0 of the recorded preset (`tiny`), the branches of findings 0-5 (~1 h on a quiet
  2-core CPU): each finding's direction, with the margins in `direction_failures`.

  The `small` preset is too short for this (session 11: its 300-step base is right on 6% of the
  held-out problems, and 40 RL steps lowered that), so the test runs the preset the README's
  table comes from.
  """
  f = _findings()
  res = f.run_seed(0, tmp_path, preset="tiny", branches=SLOW_BRANCHES)
  assert res["evals"]["pretrain"]["format_rate"] >= 0.95   # the gains below are not format
  checked, failures = direction_failures(res)
  assert checked == SLOW_FINDINGS, checked
  assert not failures, failures


def test_strategy_classification_splits_strategy_from_slips():
  f = _findings()
  assert f.left_to_right_answer("5 + 1 * 4") == "24" and f.left_to_right_answer("3 * (3 * 5)") == "45"
  assert f.left_to_right_answer("2 - (4 - 1)") == "-3" and f.left_to_right_answer("4 / (2 - 2)") == "0"
  assert f.left_to_right_answer("3 / 0") is None and f.left_to_right_answer("") is None
  smp = lambda p, q, gold, got, first="1 * 4 = 4.": {
      "problem_index": p, "question": f"Compute {q}.", "answer": gold, "extracted_answer": got,
      "correct": got == gold, "completion": f"<think> {first} </think> <answer> {got} </answer>"}
  out = f.classify_strategies([
      smp(0, "5 + 1 * 4", "9", "9"), smp(0, "5 + 1 * 4", "9", "24", "5 + 1 = 6."),  # sensitive: right, LTR
      smp(0, "5 + 1 * 4", "9", "10"), smp(0, "5 + 1 * 4", "9", None),    # sensitive: slips
      smp(1, "3 * (3 * 5)", "45", "45"), smp(1, "3 * (3 * 5)", "45", "44")])  # neutral
  assert (out["problems"], out["sensitive_problems"]) == (2, 1)
  assert out["sensitive_correct"] == 0.25 and out["sensitive_left_to_right"] == 0.25
  assert out["sensitive_other"] == 0.5 and out["neutral_correct"] == 0.5
  assert out["sensitive_not_ltr_first_step"] == 0.75     # 3 of 4 set out with 1 * 4
  table = f.format_strategies({0: {"strategy": [dict(out, stage="pretrain", temperature=0.6,
                                                        pass_at_1=0.4)]}})
  assert "| 0 | pretrain | 0.6 | 40.0 | 1/2 | 25.0 | 25.0 | 50.0 | 75.0 | 50.0 |" in table


def test_cli_set_passes_config_options_to_each_seed(tmp_path, monkeypatch):
  f = _findings()
  calls = []
  monkeypatch.setattr(f, "run_seed", lambda s, root, preset, branches, **opts: calls.append(
      (s, preset, branches, opts)) or {})
  out = tmp_path / "r.md"
  written = []
  monkeypatch.setattr(f, "write_report",
                      lambda *a, **k: written.append(a) or out.write_text("report") and out)
  f.main(["--seeds", "0,1", "--jobs", "1", "--branches", "distill", "--set",
          "rs_prompts=6000,sft_steps=600", "--out", str(out), "--root", str(tmp_path)])
  assert calls == [(s, "tiny", ("distill",), {"rs_prompts": "6000", "sft_steps": "600"})
                   for s in (0, 1)]
  # The report names the call as typed (the record's --jobs / --pin-cores / --set included).
  assert written[0][-1] == (f"python experiments/r1_findings.py --seeds 0,1 --jobs 1 --branches "
                            f"distill --set rs_prompts=6000,sft_steps=600 --out {out} --root "
                            f"{tmp_path}")


def test_jobs_runs_each_seed_in_its_own_process(tmp_path, monkeypatch):
  """`--jobs 2`: one child per seed with the other options unchanged; a failed child stops the run
  and names its log."""
  import subprocess
  f = _findings()
  assert f.child_args(["--seeds", "0,1", "--jobs=2", "--root", "r", "--out", "x.md",
                       "--set", "a=1", "--seeds=3", "--pin-cores", "--cpus", "0"]) == [
                           "--root", "r", "--set", "a=1"]
  cmds, fail = [], set()

  pinned = []
  monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
  monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cpus: pinned.append(list(cpus)),
                      raising=False)

  class Child:
    def __init__(self, cmd, stdout, stderr):
      cmds.append(cmd)
      if "--cpus" in cmd:              # what the child's main does first
        f.pin_to(cmd[cmd.index("--cpus") + 1])
      self.seed = int(cmd[cmd.index("--seeds") + 1])
      (tmp_path / f"seed{self.seed}").mkdir(exist_ok=True)
      self.returncode = 3 if self.seed in fail else 0

    def poll(self):
      return self.returncode

    def terminate(self):
      pass

  monkeypatch.setattr(subprocess, "Popen", Child)
  monkeypatch.setattr(f.time, "sleep", lambda s: None)
  reports = []
  monkeypatch.setattr(f, "write_report", lambda res, *a, **k: reports.append(res) or
                      (tmp_path / "r.md").write_text("report") and tmp_path / "r.md")
  monkeypatch.setattr(f, "run_seed", lambda *a, **k: pytest.fail("ran a seed in this process"))
  f.main(["--seeds", "0,1", "--jobs", "2", "--root", str(tmp_path), "--branches", "r1_zero",
          "--out", str(tmp_path / "r.md"), "--no-pin-cores"])
  assert pinned == []                      # --no-pin-cores: the children share every core
  # By default (--jobs auto) one child per seed (cores allowing), each pinned to its share.
  f.main(["--seeds", "0,1", "--root", str(tmp_path), "--branches", "r1_zero",
          "--out", str(tmp_path / "r.md")])
  assert [c[-2:] for c in cmds[2:]] == [["--cpus", "0,1"], ["--cpus", "2,3"]]
  cmds[:] = cmds[:2]
  assert [c[2:] for c in cmds] == [
      ["--seeds", str(s), "--out", str(tmp_path / f"seed{s}_report.md"), "--root", str(tmp_path),
       "--branches", "r1_zero"] for s in (0, 1)]
  assert sorted(reports[0]) == [0, 1]
  # --pin-cores: each child runs on its own half of the cores ('auto' gives it that many devices).
  assert pinned == [[0, 1], [2, 3]]
  assert f.core_slots(2) == [[0, 1], [2, 3]] and f.core_slots(3) == [[0], [1], [2]]
  assert f.core_slots(8) == []               # fewer cores than jobs: no pinning
  assert (f.auto_jobs(2), f.auto_jobs(1), f.auto_jobs(7)) == (2, 1, 4)   # seeds, at most cores
  for bad in ("0", "-1", "two"):              # a usage error, before anything runs
    with pytest.raises(SystemExit):
      f.main(["--seeds", "0,1", "--jobs", bad, "--root", str(tmp_path)])
  fail.add(1)
  with pytest.raises(SystemExit, match="seed 1 failed.*seed1.log"):
    f.main(["--seeds", "0,1", "--jobs", "2", "--root", str(tmp_path), "--out", str(tmp_path / "r.md")])
