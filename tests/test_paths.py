"""Relative paths, as a user types them: resolved once at every entry point.

orbax refuses relative checkpoint paths, and every other test passes an absolute
`tmp_path`; these tests run from a changed working directory with relative workdirs and
a relative `init_from`, through the CLI and through `r1jax.run.run`, including a resume.
"""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from r1jax import paths
from r1jax import run as run_lib
from r1jax.checkpoint import Checkpointer
from r1jax.metrics import read_metrics

sys.path.insert(0, str(pathlib.Path(__file__).parent / "rl"))
import grpo_testlib  # noqa: E402  (registers the test rewards)

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_resolve(monkeypatch, tmp_path):
  monkeypatch.chdir(tmp_path)
  assert paths.resolve("runs/a") == str(tmp_path / "runs" / "a")
  assert paths.resolve(pathlib.Path("b")) == str(tmp_path / "b")
  assert paths.resolve("~/x") == os.path.join(os.path.expanduser("~"), "x")
  assert paths.resolve("gs://bucket/run/ckpt") == "gs://bucket/run/ckpt"  # untouched
  assert paths.resolve("") == "" and paths.resolve(None) is None


def test_checkpointer_takes_a_relative_directory(monkeypatch, tmp_path):
  monkeypatch.chdir(tmp_path)
  with Checkpointer("rel/ck", async_save=False) as ck:
    assert ck.save(1, {"w": [1.0, 2.0]})
  assert (tmp_path / "rel" / "ck" / "1").is_dir()


def _steps(workdir: pathlib.Path) -> list[int]:
  return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def test_run_with_relative_workdirs_and_init_from(monkeypatch, tmp_path):
  """SFT then GRPO (`init_from` relative) via `run.run`, then a GRPO resume."""
  monkeypatch.chdir(tmp_path)
  base = grpo_testlib.base_config(num_steps=2)
  base.mesh.shape = (-1, 1, 1)
  run_lib.run(base, "rel/base")
  assert _steps(tmp_path / "rel" / "base") == [2]
  cfg = grpo_testlib.grpo_config("rel/base", num_steps=1, mesh=(-1, 1, 1))
  cfg.train.checkpoint_every = 1
  run_lib.run(cfg, "rel/grpo")
  assert _steps(tmp_path / "rel" / "grpo") == [1]
  cfg.train.num_steps = 2
  run_lib.run(cfg, "rel/grpo")  # resumes from step 1
  assert _steps(tmp_path / "rel" / "grpo") == [1, 2]
  assert [r["step"] for r in read_metrics(tmp_path / "rel" / "grpo")] == [1, 2]
  assert cfg.init_from == "rel/base"  # the caller's config is not modified


def test_cli_quickstart_with_relative_workdir_and_resume(tmp_path):
  """The README's quickstart command shape, shrunk, from another directory; then a resume."""
  args = [sys.executable, "-m", "r1jax.main", f"--config={ROOT}/configs/quickstart.py",
          "--workdir=runs/qs",
          "--config.stages.pretrain.train.num_steps=4",
          "--config.stages.pretrain.train.checkpoint_every=2",
          "--config.stages.pretrain.model.overrides.num_layers=1",
          "--config.stages.r1_zero.train.num_steps=1",
          "--config.stages.r1_zero.train.checkpoint_every=1",
          "--config.stages.r1_zero.rl.num_prompts=2",
          "--config.stages.r1_zero.rl.group_size=2",
          "--config.stages.r1_zero.rl.max_new_tokens=8",
          "--config.stages.r1_zero.eval.every=0",
          "--config.eval.task.num_examples=4", "--config.eval.num_samples=1",
          "--config.eval.max_new_tokens=8", "--config.eval.batch_size=4"]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  r = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-4000:]
  wd = tmp_path / "runs" / "qs"
  assert _steps(wd / "pretrain") == [2, 4] and _steps(wd / "r1_zero") == [1]
  # As if the run had been killed after r1_zero's first checkpoint: the rerun resumes it.
  (wd / "r1_zero" / "DONE").unlink()
  r = subprocess.run([*args, "--config.stages.r1_zero.train.num_steps=2"], cwd=tmp_path,
                     env=env, capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-4000:]
  assert _steps(wd / "r1_zero") == [1, 2]
  summary = json.loads((wd / "pipeline_summary.json").read_text())
  assert summary  # written by the finished pipeline


def test_every_stage_entry_point_resolves_relative_paths():
  """A notebook may call a stage's entry point directly, without `run.run`: each one resolves
  `workdir` and `init_from` itself (orbax refuses relative paths)."""
  import importlib
  from r1jax import config as config_lib
  for stage, entry in config_lib.STAGE_ENTRY.items():
    module, fn = entry.split(":")
    f = getattr(importlib.import_module(module), fn)
    assert getattr(f, "__wrapped__", None) is not None, f"{stage}: {entry} is not @paths.resolves_paths"
