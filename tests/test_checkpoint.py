"""Checkpoints: exact resume of a training stage, SIGTERM, and corrupt checkpoints."""
import os
import pathlib
import signal

import jax
import numpy as np
import pytest

from r1jax import config as config_lib
from r1jax.checkpoint import Checkpointer, CheckpointError
from r1jax.metrics import read_metrics
from r1jax.sft import trainer


def _config(num_steps=6):
  c = config_lib.base_config()
  c.stage = "pretrain"
  c.model.overrides.update(dict(num_layers=1, embed_dim=64, mlp_dim=128, num_heads=2,
                                num_kv_heads=1))
  c.tokenizer.vocab_size = 300
  c.mesh.shape = (2, 2, 2)
  c.optim.warmup_steps = 2
  c.train.update(num_steps=num_steps, batch_size=8, seq_len=48, log_every=1, checkpoint_every=3)
  c.data = dict(sources=(dict(kind="procedural", task="arithmetic", num_examples=200,
                              error_rate=0.2, template="r1_zero_bare"),))
  return c


def _params(workdir, state_like):
  with Checkpointer(pathlib.Path(workdir) / "checkpoints", async_save=False) as ck:
    step, tree, _, _ = ck.restore_latest(state_like)
  return step, tree


def test_resume_after_sigterm_is_bitwise_identical(tmp_path):
  straight = trainer.train(_config(), tmp_path / "a")

  def kill_at_3(step, metrics):
    if step == 3:
      os.kill(os.getpid(), signal.SIGTERM)  # what a TPU preemption sends

  first = trainer.train(_config(), tmp_path / "b", on_step=kill_at_3)
  assert first["step"] == 3  # stopped cleanly, checkpoint written
  assert sorted(Checkpointer(tmp_path / "b" / "checkpoints").all_steps()) == [3]
  resumed = trainer.train(_config(), tmp_path / "b")
  assert resumed["step"] == 6
  la = [r["loss"] for r in read_metrics(tmp_path / "a")]
  lb = [r["loss"] for r in read_metrics(tmp_path / "b")]
  assert len(la) == len(lb) == 6
  assert la == lb  # bitwise equal losses on CPU
  for x, y in zip(jax.tree.leaves(straight["state"].params), jax.tree.leaves(resumed["state"].params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_corrupt_latest_checkpoint_falls_back(tmp_path):
  out = trainer.train(_config(), tmp_path)
  ckdir = tmp_path / "checkpoints"
  assert sorted(int(p.name) for p in ckdir.iterdir() if p.name.isdigit()) == [3, 6]
  # Corrupt every data file of step 6.
  for f in (ckdir / "6" / "state").rglob("*"):
    if f.is_file():
      f.write_bytes(b"garbage")
  step, tree = _params(tmp_path, out["state"])
  assert step == 3
  # With every checkpoint unreadable: a clear error, not a crash from deep inside.
  for f in (ckdir / "3" / "state").rglob("*"):
    if f.is_file():
      f.write_bytes(b"garbage")
  with pytest.raises(CheckpointError, match="No readable checkpoint"):
    _params(tmp_path, out["state"])


def test_unreadable_step_is_quarantined_retrained_and_resaved(tmp_path):
  """Corrupt the latest step, resume, reach and save that step again, resume from it."""
  out = trainer.train(_config(), tmp_path)
  ckdir = tmp_path / "checkpoints"
  for f in (ckdir / "6" / "state").rglob("*"):
    if f.is_file():
      f.write_bytes(b"garbage")
  again = trainer.train(_config(), tmp_path)  # restores 3, retrains 4..6, saves 6 again
  assert again["step"] == 6
  moved = list((tmp_path / "checkpoints.unreadable").iterdir())
  assert [p.name.split("-")[0] for p in moved] == ["6"]  # kept for inspection, not deleted
  with Checkpointer(ckdir, async_save=False) as ck:
    assert ck.all_steps() == [3, 6]
    step, tree, _, _ = ck.restore_latest(out["state"])
  assert step == 6  # the re-saved step is readable and is the one a resume picks
  # The retrained steps 4..6 saw the same data as the first run: the same params, bitwise.
  for x, y in zip(jax.tree.leaves(out["state"].params), jax.tree.leaves(tree.params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  resumed = trainer.train(_config(num_steps=7), tmp_path)
  assert resumed["step"] == 7


def test_save_of_existing_step_is_an_error_not_a_silent_skip(tmp_path):
  state = {"w": np.arange(4.0)}
  with Checkpointer(tmp_path / "ck", async_save=False) as ck:
    assert ck.save(1, state)
    with pytest.raises(CheckpointError, match="already exists"):
      ck.save(1, state)
