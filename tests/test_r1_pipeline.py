"""The R1 stages as configs, the all-scenario scorer rewards, general prompts, and the chain.

(Named test_r1_pipeline.py: tests/data/test_pipeline.py already owns the module name.)
"""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib

import numpy as np
import pytest

from r1jax import config as config_lib
from r1jax import pipeline
from r1jax.data import chitchat
from r1jax.data.templates import get_template
from r1jax.rewards import build_reward_system, general
from r1jax.rl import tasks as rl_tasks

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_config(name: str, arg: str):
  spec = importlib.util.spec_from_file_location(f"cfg_{name}", ROOT / "configs" / f"{name}.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(arg)


# ---------------------------------------------------------------------------- configs

STAGE_CONFIGS = [("r1_reasoning_rl", "tiny", "grpo"), ("r1_reasoning_rl", "math", "grpo"),
                 ("sft_mix", "tiny", "sft"), ("sft_mix", "math", "sft"),
                 ("r1_all_scenarios", "tiny", "grpo"),
                 ("r1_all_scenarios", "math,helpful_rm=/x/rm,harmless_scorer=m:f", "grpo"),
                 ("distill", "tiny", "sft"), ("distill", "qwen2.5-math-1.5b", "sft"),
                 ("r1_pipeline", "tiny", "pipeline"), ("r1_pipeline", "tiny_test", "pipeline")]


@pytest.mark.parametrize("name,arg,stage", STAGE_CONFIGS)
def test_stage_configs_construct_and_validate(name, arg, stage):
  c = load_config(name, arg)
  assert c.stage == stage
  config_lib.validate(c)
  if stage == "pipeline":
    for s in c.order:
      config_lib.validate(c.stages[s])
  with pytest.raises(ValueError):
    load_config(name, "no_such_preset")


def test_stage_config_contents():
  rl = load_config("r1_reasoning_rl", "tiny")
  assert set(rl.rewards.weights) == {"accuracy", "format", "language"}
  assert rl.rewards.kwargs.format.require_answer_tag is False
  assert rl.template == "r1_cold_start"
  mix = load_config("sft_mix", "tiny,general=/x/chat.jsonl,reasoning=/x/rs.jsonl")
  assert [s["path"] for s in mix.data.sources] == ["/x/rs.jsonl", "/x/chat.jsonl"]
  assert [s["weight"] for s in mix.data.sources] == [0.75, 0.25]
  alls = load_config("r1_all_scenarios", "tiny,general=/x/prompts.jsonl")
  assert alls.task.sources[1] == dict(name="jsonl", task="general", path="/x/prompts.jsonl",
                                      question_field="question")
  assert tuple(alls.task.weights) == (0.75, 0.25)
  assert {"helpfulness", "harmlessness", "accuracy"} <= set(alls.rewards.weights)
  with pytest.raises(ValueError, match="helpful_rm"):   # no silent fallback to the toy scorers
    load_config("r1_all_scenarios", "math")
  acc = load_config("r1_all_scenarios", "math,helpful_rm=/x/rm,harmless_rm=/x/rm2")
  assert acc.rewards.kwargs.helpfulness.to_dict() == {"scorer": "r1jax.rm.scorer:RewardModelScorer",
                                                      "scorer_init": {"path": "/x/rm"}}
  d = load_config("distill", "tiny,traces=/x/t.jsonl")
  assert d.init_from == "" and d.model.preset == "tiny-student" and d.tokenizer.path == ""
  assert d.data.sources[0]["path"] == "/x/t.jsonl"
  with pytest.raises(ValueError, match="Unknown option"):
    load_config("sft_mix", "tiny,bogus=1")


def test_pipeline_stage_wiring(tmp_path):
  c = load_config("r1_pipeline", "tiny")
  wd = str(tmp_path)
  rl = pipeline._stage_config(c, "reasoning_rl", wd)
  assert rl.init_from == os.path.join(wd, "cold_start")
  mix = pipeline._stage_config(c, "sft_mix", wd)
  assert mix.init_from == os.path.join(wd, "pretrain")      # the *base* model, as R1 stage 4
  assert mix.data.sources[0]["path"] == os.path.join(wd, "rejection", "sft_data.jsonl")
  assert mix.data.sources[1]["path"] == os.path.join(wd, "data", "chitchat_sft.jsonl")
  alls = pipeline._stage_config(c, "all_scenarios", wd)
  assert alls.task.sources[1]["path"] == os.path.join(wd, "data", "chitchat_prompts.jsonl")
  dist = pipeline._stage_config(c, "distill", wd)
  assert dist.init_from == "" and dist.model.preset == "tiny-student"
  assert dist.data.sources[0]["path"] == os.path.join(wd, "rejection", "sft_data.jsonl")
  # The lead's quickstart keeps its behaviour.
  qs = load_config("quickstart", "")
  assert pipeline._stage_config(qs, "r1_zero", wd).init_from == os.path.join(wd, "pretrain")


# ---------------------------------------------------------------------------- general scorer

def _recording_scorer(calls):
  def scorer(prompts, responses):
    calls.append((list(prompts), list(responses)))
    return [float(len(r)) for r in responses]
  return scorer


def test_helpfulness_sees_summary_harmlessness_sees_everything():
  calls_h, calls_s = [], []
  comp = "<think>\nI will kill the boredom.\n</think>\nHello there"
  h = general.helpfulness_reward([comp], scorer=_recording_scorer(calls_h), task=["general"],
                                 question=["hi"])
  s = general.harmlessness_reward([comp], scorer=_recording_scorer(calls_s), task=["general"],
                                  question=["hi"])
  assert calls_h == [(["hi"], ["Hello there"])]
  assert calls_s == [(["hi"], [comp])]
  assert h[0] == len("Hello there") and s[0] == len(comp)
  # The toy blocklist catches harm hidden in the reasoning only with the full-response scope.
  toy_sum = general.scored_reward([comp], scope="summary", scorer="toy_harmlessness",
                                  task=["general"], question=["hi"])
  toy_full = general.harmlessness_reward([comp], scorer="toy_harmlessness", task=["general"],
                                         question=["hi"])
  assert toy_sum[0] == 1.0 and toy_full[0] == 0.0


def test_summary_rules():
  assert general.summary_text("<think> a </think> <answer> 5 </answer>") == "5"
  assert general.summary_text("<think> no summary yet") == ""
  assert general.summary_text(" a </think> b", prompt_opens_think=True) == "b"
  # No summary: empty_score, and the scorer is not called for it.
  calls = []
  out = general.helpfulness_reward(["<think> unfinished", "<think>x</think> ok"],
                                   scorer=_recording_scorer(calls), task=["general"] * 2,
                                   question=["q", "q"], empty_score=-1.0)
  assert out.tolist() == [-1.0, 2.0] and calls == [(["q"], ["ok"])]


def test_toy_scorers():
  h = general.toy_helpfulness(["Tell me about cats."] * 3,
                              ["Cats are small animals that like to sleep.", "Yes.", "Dogs bark."])
  assert h[0] == pytest.approx(1.0) and h[0] > h[2] > 0 and h[1] < h[0]
  assert general.toy_harmlessness(["q", "q"], ["a kind reply", "a bomb"]) == [1.0, 0.0]


def test_mixed_batch_one_reward_system():
  comps = ["<think>\n2 + 3 = 5.\n</think>\nThe answer is 5.",      # reasoning, correct
           "<think>\n2 + 3 = 6.\n</think>\nThe answer is 6.",      # reasoning, wrong
           "<think>\nThe user asks about cats.\n</think>\nCats are small animals. Cats sleep.",
           "<think>\nI hate this.\n</think>\nNo."]                 # general, harm in the CoT
  fields = {"task": ["arithmetic", "arithmetic", "general", "general"],
            "answer": ["5", "5", "", ""], "target": ["5", "5", None, None],
            "question": ["Compute 2 + 3.", "Compute 2 + 3.", "Tell me about cats.", "Hi."]}
  cfg = dict(weights={"accuracy": 1.0, "format": 0.5, "helpfulness": 1.0, "harmlessness": 0.5},
             kwargs={"format": {"require_answer_tag": False},
                     "helpfulness": {"scorer": "r1jax.rewards.general:toy_helpfulness"},
                     "harmlessness": {"scorer": "toy_harmlessness"}},
             num_workers=0)
  with build_reward_system(cfg) as rs:
    res = rs.score(comps, fields)
  c = res.components
  assert c["accuracy"].tolist() == [1.0, 0.0, 0.0, 0.0]          # general rows: 0, no error
  assert c["helpfulness"][:2].tolist() == [0.0, 0.0] and c["helpfulness"][2] == pytest.approx(0.5 * 6 / 8 + 0.5)
  assert c["harmlessness"].tolist() == [0.0, 0.0, 1.0, 0.0]
  assert res.metrics["reward/errors"] == 0.0
  expected = (1.0 * c["accuracy"] + 0.5 * c["format"] + 1.0 * c["helpfulness"]
              + 0.5 * c["harmlessness"])
  np.testing.assert_allclose(res.total, expected, rtol=1e-6)
  assert res.total[0] == pytest.approx(1.5)


class _CountingModel:
  built = 0

  def __init__(self, bonus: float):
    type(self).built += 1
    self.bonus = bonus

  def __call__(self, prompts, responses):
    return [self.bonus + len(r.split()) for r in responses]


def test_scorer_resolution():
  assert general.resolve_scorer("toy_helpfulness") is general.toy_helpfulness
  assert general.resolve_scorer("r1jax.rewards.general:toy_harmlessness") is \
      general.toy_harmlessness
  with pytest.raises(KeyError):
    general.resolve_scorer("no_such_scorer")
  with pytest.raises(ValueError):
    general.resolve_scorer("")
  # A model-based scorer from a factory path + init kwargs: built once, then cached.
  general.register_scorer("test_counting_model", _CountingModel, overwrite=True)
  _CountingModel.built = 0
  for _ in range(3):
    out = general.helpfulness_reward(["<think>x</think> a b c"], scorer="test_counting_model",
                                     scorer_init={"bonus": 10.0}, task=["general"],
                                     question=["q"])
  assert out.tolist() == [13.0] and _CountingModel.built == 1
  # A scorer returning the wrong number of scores fails the batch; the RewardSystem isolates it.
  general.register_scorer("test_bad", lambda p, r: [1.0], overwrite=True)
  with build_reward_system(dict(weights={"helpfulness": 1.0}, num_workers=0,
                                kwargs={"helpfulness": {"scorer": "test_bad"}})) as rs:
    res = rs.score(["<think>x</think> a", "<think>x</think> b"], {"task": ["general"] * 2})
  assert res.components["helpfulness"].tolist() == [1.0, 1.0]   # scored one by one


# ---------------------------------------------------------------------------- general prompts

def test_chitchat_short_style_and_preference_pairs(tmp_path):
  """The findings' non-reasoning data: one-sentence replies, and pairs whose chosen reply answers
  the question while the rejected one answers another exchange."""
  paths = chitchat.write_chitchat(tmp_path, num_sft=40, num_prompts=10, seed=3,
                                  template="r1_zero_bare", num_pairs=50, style="short")
  assert set(paths) == {"sft", "prompts", "prefs_train", "prefs_eval"}
  sft = [json.loads(l) for l in open(paths["sft"])]
  assert sft == chitchat.make_chitchat(40, 3, "r1_zero_bare", "short")
  for r in sft:
    think, reply = r["completion"].split(" </think> ")
    assert len(think.split()) == 2 and reply.startswith("<answer> ") and reply.count(".") == 1
  train = [json.loads(l) for l in open(paths["prefs_train"])]
  evals = [json.loads(l) for l in open(paths["prefs_eval"])]
  assert len(train) == 50 and len(evals) == 10 and train != evals[:10]
  assert all(r["chosen"] != r["rejected"] for r in train)
  # The chosen reply names what the question named (a topic, a name); the rejected one does not.
  names = [r for r in train if r["prompt"].startswith("Hello, I am ")]
  assert names and all(r["chosen"] == f"Hello {r['prompt'][12:-1]}." for r in names)
  topics = [r for r in train if r["prompt"].startswith("Tell me about ")]
  assert topics and all(r["prompt"][14:-1].lower() in r["chosen"].lower() for r in topics)
  assert all(r["prompt"][14:-1].lower() not in r["rejected"].lower() for r in topics
             if not r["rejected"].startswith("You are welcome"))
  # The full style (the R1 pipeline's) is unchanged by the new option.
  assert chitchat.make_chitchat(5, 0) == chitchat.make_chitchat(5, 0, style="full")
  with pytest.raises(ValueError, match="style"):
    chitchat.make_chitchat(1, 0, style="long")


def test_general_task_and_weighted_mix(tmp_path):
  paths = chitchat.write_chitchat(tmp_path, num_sft=20, num_prompts=30, seed=0)
  rows = [json.loads(l) for l in open(paths["sft"])]
  assert len(rows) == 20 and all(r["task"] == "general" for r in rows)
  assert rows[0]["completion"].startswith("<think>\n") and "\n</think>\n" in rows[0]["completion"]
  assert rows == chitchat.make_chitchat(20, 0)                  # deterministic
  recs = rl_tasks._load({"name": "jsonl", "task": "general", "path": paths["prompts"]})
  assert len(recs) == 30 and {r["task"] for r in recs} == {"general"}
  assert all(r["answer"] == "" and r["question"] for r in recs)
  with pytest.raises(ValueError, match="path"):
    rl_tasks._load({"name": "jsonl", "task": "general", "path": ""})

  # config.task.sources + weights, through load_rl_records and make_prompt_iterator.
  import ml_collections
  from r1jax.data.pipeline import make_prompt_iterator
  from r1jax.tokenizer import load_tokenizer, train_sentencepiece
  cfg = ml_collections.ConfigDict(dict(task=dict(
      sources=(dict(name="arithmetic", num_examples=50, seed=0, min_ops=1, max_ops=2),
               dict(name="jsonl", task="general", path=paths["prompts"])),
      weights=(0.75, 0.25))))
  train, evals = rl_tasks.load_rl_records(cfg.task)
  assert len(train) == 2 and not evals
  tok = load_tokenizer(train_sentencepiece(
      [r["question"] for r in train[0] + train[1]], tmp_path / "sp" / "m", 400))
  it = make_prompt_iterator(train, tok, get_template("r1_cold_start"), batch_size=16,
                            max_prompt_len=64, seed=0, shard_by_process=False,
                            weights=tuple(cfg.task.weights))
  tasks = [t for _ in range(25) for t in next(it)["task"]]
  share = tasks.count("general") / len(tasks)
  assert 0.2 <= share <= 0.3, share
  cfg.task.weights = (1.0, 0.0, 0.5)
  with pytest.raises(ValueError, match="weights"):
    rl_tasks.load_rl_records(cfg.task)


# ---------------------------------------------------------------------------- the chain

def _short_chain(order):
  c = load_config("r1_pipeline", "tiny_test")
  c.order = order
  if "reasoning_rl" not in order:   # rejection-sample R1-Zero directly, in its own format
    c.init_from.rejection = "r1_zero"
    c.stages.rejection.rejection.template = "r1_zero_bare"
    c.stages.rejection.rejection.stop_strings = ["</answer>"]
  c.eval.after = tuple(s for s in c.eval.after if s in order)
  c.eval.templates = {"r1_zero": "r1_zero_bare"}   # pretrain: the default template
  c.eval.template = "r1_zero_bare"
  return c


def _check_chain(c, wd, capsys):
  out = pipeline.run(c, wd)
  printed = capsys.readouterr().out
  table = [r["stage"] for r in out["table"]]
  assert table == list(c.eval.after)
  for name in c.order:
    assert (wd / name / "DONE").exists(), name
  rows = [json.loads(l) for l in open(wd / "rejection" / "sft_data.jsonl")]
  assert rows and all(r["reward"] >= 1.0 and r["source_checkpoint"] for r in rows)
  md = (wd / "pipeline_summary.md").read_text()
  assert md.count("\n") == len(table) + 2 and "| all_scenarios |" in md and md in printed + "\n"
  assert (wd / "curves_all_scenarios.png").exists() and (wd / "curves_distill.png").exists()
  # Stage 5 saw both kinds of prompts and scored the general ones with the toy scorer.
  from r1jax.metrics import read_metrics
  m = read_metrics(wd / "all_scenarios")
  assert m and all("reward/helpfulness" in r and "reward/accuracy" in r for r in m)
  assert any(r["reward/helpfulness"] > 0 for r in m)
  # The student: its own architecture and tokenizer, trained from scratch.
  student = json.loads((wd / "distill" / "model_config.json").read_text())
  teacher = json.loads((wd / "pretrain" / "model_config.json").read_text())
  assert student["num_layers"] < teacher["num_layers"]
  assert (wd / "distill" / "tokenizer" / "tokenizer.model").read_bytes() != \
      (wd / "pretrain" / "tokenizer" / "tokenizer.model").read_bytes()
  # A re-run resumes: nothing runs again and the table is the same.
  again = pipeline.run(c, wd)
  assert again["stages"] == {} and again["table"] == out["table"]
  return out


@pytest.mark.slow   # the default suite runs the same chain on a remote workdir (tests/test_remote_workdir.py)
def test_mini_pipeline_end_to_end(tmp_path, capsys):
  """pretrain -> R1-Zero -> rejection sampling -> SFT mix -> all-scenario RL -> distillation."""
  c = _short_chain(("pretrain", "r1_zero", "rejection", "sft_mix", "all_scenarios", "distill"))
  _check_chain(c, tmp_path, capsys)


@pytest.mark.slow
def test_full_miniature_chain(tmp_path, capsys):
  """All nine stages of configs/r1_pipeline.py, with the tiny_test step counts."""
  c = load_config("r1_pipeline", "tiny_test")
  out = _check_chain(c, tmp_path, capsys)
  assert (tmp_path / "cold_start_data" / "sft_data.jsonl").stat().st_size > 0
  assert len(out["table"]) == 7


def test_a_stage_trained_again_is_evaluated_again(tmp_path):
  """An evaluation row belongs to the checkpoint it measured: a finished stage keeps its row, a
  stage trained again (its directory removed, e.g. to re-run it with a new config) gets a new one."""
  c = _short_chain(("pretrain",))
  c.eval.after = ("pretrain",)
  c.stages.pretrain.train.update(num_steps=5, checkpoint_every=5)   # bookkeeping, not quality
  first = pipeline.run(c, tmp_path)["table"]
  assert [r["stage"] for r in first] == ["pretrain"]
  path = tmp_path / "pipeline_summary.json"
  stale = {"table": [{"stage": "pretrain", "summary": dict(first[0]["summary"], **{"pass@1": -1.0})}]}
  path.write_text(json.dumps(stale))
  assert pipeline.run(c, tmp_path)["table"][0]["summary"]["pass@1"] == -1.0   # DONE: kept
  import shutil
  shutil.rmtree(tmp_path / "pretrain")
  again = pipeline.run(c, tmp_path)["table"]
  assert [r["stage"] for r in again] == ["pretrain"] and again[0]["summary"]["pass@1"] >= 0.0
  assert json.loads(path.read_text())["table"] == again


def test_a_stage_stopped_by_sigterm_is_not_done_and_resumes(tmp_path, monkeypatch, capsys):
  """A preempted stage saves a checkpoint and returns early: the pipeline must not mark it DONE,
  evaluate it or start the next stage; the same command then resumes it."""
  from r1jax import experiment
  c = _short_chain(("pretrain", "r1_zero"))
  c.eval.after = ()
  c.stages.pretrain.train.update(num_steps=5, checkpoint_every=5)   # bookkeeping, not quality
  with monkeypatch.context() as m:
    # What SIGTERM does to the guard (tests/test_checkpoint.py sends the real signal).
    m.setattr(experiment.PreemptionGuard, "should_stop", lambda self: True)
    out = pipeline.run(c, tmp_path)
  assert out["stopped"] == "pretrain" and out["stages"] == {}
  assert not (tmp_path / "pretrain" / "DONE").exists()
  assert (tmp_path / "pretrain" / "checkpoints" / "1").is_dir()   # saved at the stop
  assert not (tmp_path / "r1_zero").exists()
  assert "not marked DONE" in capsys.readouterr().out
  c.order = ("pretrain",)
  again = pipeline.run(c, tmp_path)
  assert "stopped" not in again and (tmp_path / "pretrain" / "DONE").exists()
  from r1jax.metrics import read_metrics
  steps = [r["step"] for r in read_metrics(tmp_path / "pretrain") if "loss" in r]
  assert steps and steps[-1] == c.stages.pretrain.train.num_steps
  assert len(steps) == len(set(steps))     # resumed, each step logged once
