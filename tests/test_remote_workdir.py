"""Every stage on a workdir that is not a local path (as `gs://bucket/run` is not).

The workdir is a `nolocal://` URL (tests/nolocal_path.py): epath reads and writes it through a
local directory, but every `open`, `os.*`, `os.path.*`, `shutil.*` or pathlib call on the URL
raises, so a stage that still did local I/O on its workdir would fail here. The chain is the
short R1 pipeline of test_r1_pipeline.py: SFT (pretrain), GRPO (R1-Zero), rejection sampling,
SFT on its output plus chit-chat (written by the pipeline's `prepare` hook), all-scenario GRPO
on JSONL prompts, the held-out evaluations after stages, a resume, then the `eval` stage.
"""
import json
import os
import pathlib

import pytest

from nolocal_path import forbid_local_io, url
from r1jax import paths, pipeline
from r1jax.evals import runner
from r1jax.metrics import read_metrics
from test_r1_pipeline import _short_chain, load_config


@pytest.fixture
def no_local_io(tmp_path, monkeypatch):
  """Runs from an empty directory with local I/O on `nolocal:` URLs forbidden; afterwards the
  directory must still be empty (nothing wrote a relative `nolocal:/...` tree)."""
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  monkeypatch.chdir(cwd)
  forbid_local_io(monkeypatch)
  yield
  monkeypatch.undo()
  assert not list(cwd.iterdir()), list(cwd.iterdir())


def test_the_guard_catches_local_io(tmp_path, no_local_io):
  wd = url(tmp_path / "wd")
  for bad in (lambda: open(os.path.join(wd, "x"), "w"), lambda: os.makedirs(wd),
              lambda: os.path.exists(wd), lambda: pathlib.Path(wd).mkdir(parents=True),
              lambda: (pathlib.Path(wd) / "x").write_text("1")):
    with pytest.raises(AssertionError, match="local I/O on a remote path"):
      bad()
  assert paths.resolve(wd) == wd   # a URL is passed through untouched
  paths.makedirs(paths.join(wd, "a"))
  paths.write_atomic(paths.join(wd, "a", "b.json"), "{}")
  assert paths.append(paths.join(wd, "a", "b.json"), "\n[]") == 5
  paths.truncate(paths.join(wd, "a", "b.json"), 2)
  assert (tmp_path / "wd" / "a" / "b.json").read_text() == "{}"
  assert not (tmp_path / "wd" / "a" / "b.json.tmp").exists()


@pytest.mark.slow  # the whole miniature chain, minutes on 2 cores: `pytest -m slow`
def test_pipeline_and_eval_on_a_remote_workdir(tmp_path, no_local_io, capsys):
  # The whole miniature chain (this test is also the default suite's end-to-end pipeline run; the local-path
  # twin, test_r1_pipeline.py::test_mini_pipeline_end_to_end, is marked slow).
  c = _short_chain(("pretrain", "r1_zero", "rejection", "sft_mix", "all_scenarios", "distill"))
  local = tmp_path / "wd"
  wd = url(local)
  out = pipeline.run(c, wd)
  assert [r["stage"] for r in out["table"]] == list(c.eval.after)
  for name in c.order:
    assert (local / name / "DONE").exists(), name
    for f in ("resolved_config.json", "model_config.json", "tokenizer/tokenizer.model"):
      assert name == "rejection" or (local / name / f).exists(), (name, f)
  assert {p.name for p in (local / "r1_zero" / "checkpoints").iterdir()} >= {"2"}
  rows = [json.loads(l) for l in (local / "rejection" / "sft_data.jsonl").read_text().splitlines()]
  assert rows and all(r["reward"] >= 1.0 for r in rows)
  assert json.loads((local / "rejection" / "progress.json").read_text())["sizes"]["sft"] == \
      (local / "rejection" / "sft_data.jsonl").stat().st_size
  assert (local / "data" / "chitchat_prompts.jsonl").exists()
  m = read_metrics(local / "all_scenarios")
  assert m and all("reward/helpfulness" in r for r in m)
  assert read_metrics(local / "pretrain") and read_metrics(local / "sft_mix")
  assert any((local / "r1_zero" / "tensorboard").iterdir())
  assert (local / "curves_r1_zero.png").stat().st_size > 0
  assert (local / "r1_zero" / "reward_curve.png").exists()
  assert (local / "pipeline_summary.md").read_text().count("| all_scenarios |") == 1
  # The student: its own architecture and tokenizer, trained from scratch.
  student = json.loads((local / "distill" / "model_config.json").read_text())
  teacher = json.loads((local / "pretrain" / "model_config.json").read_text())
  assert student["num_layers"] < teacher["num_layers"]
  assert (local / "curves_distill.png").stat().st_size > 0
  table = json.loads((local / "pipeline_summary.json").read_text())["table"]
  assert [r["stage"] for r in table] == list(c.eval.after)
  # A re-run resumes from the DONE markers and the summary: nothing runs again.
  again = pipeline.run(c, wd)
  assert again["stages"] == {} and again["table"] == out["table"]

  # The eval stage, from a remote workdir into a remote workdir.
  e = load_config("eval", "tiny")
  e.init_from = paths.join(wd, "sft_mix")
  e.eval.benchmarks = [dict(name="arithmetic", min_ops=1, max_ops=2, max_value=3,
                            num_examples=4, template="r1_cold_start")]
  e.eval.update(num_samples=2, max_new_tokens=16, batch_size=8, max_prompt_len=48,
                pass_ks=[1, 2])
  summaries = runner.run(e, paths.join(wd, "eval"))
  ev = local / "eval" / "eval"
  assert set(json.loads((ev / "summary.json").read_text())["summaries"]) == set(summaries)
  assert len((ev / "arithmetic_samples.jsonl").read_text().splitlines()) == 8
  assert (ev / "summary.md").exists()
