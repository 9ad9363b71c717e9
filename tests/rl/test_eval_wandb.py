"""GRPO's periodic held-out evaluation goes to W&B as scalars and a samples table (offline)."""
import json
import time

import pytest

import grpo_testlib as lib
from r1jax import metrics
from r1jax.rl import trainer as rl_trainer
from test_metrics_writer import _offline_run_dir, _wandb_records

pytest.importorskip("wandb", reason="wandb not installed (pip install -e '.[wandb]')")


def test_grpo_eval_logs_a_samples_table(base_workdir, tmp_path, monkeypatch):
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_SILENT", "true")
  c = lib.grpo_config(base_workdir, num_steps=2)
  c.eval_task = dict(name="arithmetic", split="test", num_examples=3, min_ops=1, max_ops=2,
                     max_value=3)
  c.eval.update(every=1, num_samples=2, batch_size=8, max_new_tokens=16, at_start=False)
  c.logging.wandb.update(enabled=True, project="r1jax-test")
  wd = tmp_path / "wd"
  rl_trainer.train(c, wd)
  metrics.active_wandb_run().finish()
  run_dir = _offline_run_dir(wd)
  deadline = time.time() + 30
  while True:  # W&B's service may still be writing the file when finish() returns
    history, _ = _wandb_records(run_dir)
    tables = {h["_step"]: h["eval/samples"] for h in history if "eval/samples" in h}
    if len(tables) == 2 or time.time() > deadline:
      break
    time.sleep(0.5)
  assert sorted(tables) == [1, 2]
  assert all(t["_type"] == "table-file" and t["nrows"] == 3 * 2 for t in tables.values())
  assert {h["_step"] for h in history if "eval/pass@1" in h} == {1, 2}
  # The table holds the samples themselves, as the eval stage writes them.
  files = sorted((run_dir / "files" / "media" / "table" / "eval").glob("samples_*.table.json"))
  assert [f.name.split("_")[1] for f in files] == ["1", "2"]
  table = json.loads(files[0].read_text())
  assert {"question", "completion", "extracted_answer", "correct"} <= set(table["columns"])
  assert len(table["data"]) == 3 * 2
