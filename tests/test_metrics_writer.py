"""Metrics writers: JSONL, TensorBoard purge on resume, remote paths, W&B (offline)."""
import json
import os
import struct
import time

import pytest

from nolocal_path import NoLocalPath, forbid_local_io, url
from r1jax import metrics
from r1jax.metrics import (MetricsWriter, WandbConfig, plot_curves, read_metrics,
                           truncate_metrics)


def _tb_events(logdir):
  """Every event of the TensorBoard files in `logdir`, in write order (TFRecord framing)."""
  from tensorboardX.proto import event_pb2
  events = []
  for name in sorted(os.listdir(logdir)):
    with open(os.path.join(logdir, name), "rb") as f:
      data = f.read()
    i = 0
    while i < len(data):
      (n,) = struct.unpack("<Q", data[i:i + 8])
      ev = event_pb2.Event()
      ev.ParseFromString(data[i + 12:i + 12 + n])
      events.append(ev)
      i += 12 + n + 4
  return events


def _tb_scalars(logdir, tag):
  """{step: value} as TensorBoard shows it: a SessionLog.START with a step purges the events
  at steps >= it that came before."""
  from tensorboardX.proto import event_pb2
  shown = {}
  for ev in _tb_events(logdir):
    if ev.HasField("session_log") and ev.session_log.status == event_pb2.SessionLog.START:
      shown = {s: v for s, v in shown.items() if s < ev.step}
    for v in ev.summary.value:
      if v.tag == tag:
        assert ev.step not in shown, f"step {ev.step} shown twice"
        shown[ev.step] = v.simple_value
  return shown


def test_resume_purges_redone_steps_from_tensorboard(tmp_path):
  w = MetricsWriter(tmp_path)
  for s in range(1, 6):
    w.write(s, {"loss": float(s)})
  w.close()
  # A resume from the step-3 checkpoint: the stage truncates the JSONL, then reopens writers.
  truncate_metrics(tmp_path / "metrics.jsonl", 3)
  w = MetricsWriter(tmp_path)
  for s in range(4, 7):
    w.write(s, {"loss": 10.0 * s})
  w.close()
  assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4, 5, 6]
  assert _tb_scalars(tmp_path / "tensorboard", "loss") == {
      1: 1.0, 2: 2.0, 3: 3.0, 4: 40.0, 5: 50.0, 6: 60.0}


def test_without_purge_tensorboard_would_show_redone_steps_twice(tmp_path):
  # The check above can fail: the same resume without a purge step repeats steps 4 and 5.
  w = MetricsWriter(tmp_path)
  for s in range(1, 6):
    w.write(s, {"loss": float(s)})
  w.close()
  truncate_metrics(tmp_path / "metrics.jsonl", 3)
  w = MetricsWriter(tmp_path, purge_step=None)
  w.write(4, {"loss": 40.0})
  w.close()
  with pytest.raises(AssertionError, match="shown twice"):
    _tb_scalars(tmp_path / "tensorboard", "loss")


def test_remote_workdir_files(tmp_path):
  wd = NoLocalPath(tmp_path / "run")
  w = MetricsWriter(wd, tensorboard=False)
  for s in range(1, 26):
    w.write(s, {"loss": 1.0 / s, "bad": float("nan")})
  w.close()
  recs = read_metrics(wd)
  assert [r["step"] for r in recs] == list(range(1, 26)) and recs[0]["bad"] == "nan"
  truncate_metrics(wd / "metrics.jsonl", 10)
  assert len(read_metrics(wd / "metrics.jsonl")) == 10
  out = plot_curves(recs, ["loss"], wd / "curves.png")
  assert out is not None and (tmp_path / "run" / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_remote_tensorboard_with_purge_on_resume(tmp_path, monkeypatch):
  """TensorBoard on a remote workdir (epath record writer), resumed with a purge."""
  local = tmp_path / "run"
  forbid_local_io(monkeypatch)
  w = MetricsWriter(url(local))
  for s in range(1, 6):
    w.write(s, {"loss": float(s)})
  w.close()
  truncate_metrics(url(local) + "/metrics.jsonl", 3)
  w = MetricsWriter(url(local))
  for s in range(4, 6):
    w.write(s, {"loss": 10.0 * s})
  w.close()
  monkeypatch.undo()
  assert _tb_scalars(local / "tensorboard", "loss") == {1: 1.0, 2: 2.0, 3: 3.0, 4: 40.0, 5: 50.0}


def test_wandb_config_parsing():
  assert not WandbConfig.from_config({}).enabled
  assert WandbConfig.from_config({"logging": {"wandb": True}}).enabled
  cfg = WandbConfig.from_config({"logging": {"wandb": {"enabled": True, "tags": ["a"]}}})
  assert cfg.enabled and cfg.tags == ("a",)
  with pytest.raises(ValueError, match="projet"):
    WandbConfig.from_config({"logging": {"wandb": {"projet": "x"}}})


def _offline_run_dir(workdir):
  runs = sorted((workdir / "wandb").glob("offline-run-*"))
  assert runs, list((workdir / "wandb").iterdir()) if (workdir / "wandb").exists() else workdir
  return runs[-1]


def _wandb_log_records(data):
  """Records of a .wandb file (W&B's LevelDB-style log: 32 KiB blocks of framed chunks)."""
  block, i, buf = 32768, 7, b""  # the file starts with a 7-byte ':W&B' header
  while i + 7 <= len(data):
    left = block - i % block
    if left < 7:
      i += left
      continue
    _, n, kind = struct.unpack("<IHB", data[i:i + 7])
    if n == 0 and kind == 0:  # block padding
      i += left
      continue
    chunk, i = data[i + 7:i + 7 + n], i + 7 + n
    if kind == 1:
      yield chunk
    elif kind in (2, 3):
      buf = (b"" if kind == 2 else buf) + chunk
    elif kind == 4:
      yield buf + chunk


def _wandb_records(run_dir):
  """(history rows {key: value}, run config) of an offline run, read from its .wandb file."""
  from wandb.proto import wandb_internal_pb2 as pb
  (path,) = run_dir.glob("run-*.wandb")
  assert path.read_bytes()[:4] == b":W&B"
  history, config = [], {}
  for data in _wandb_log_records(path.read_bytes()):
    rec = pb.Record()
    rec.ParseFromString(data)
    kind = rec.WhichOneof("record_type")
    items = []
    if kind == "history":
      row = {}
      for i in rec.history.item:
        key = i.key or "/".join(i.nested_key[:1])
        sub = list(i.nested_key[1:])
        value = json.loads(i.value_json)
        if sub:
          row.setdefault(key, {})[sub[0]] = value
        else:
          row[key] = value
      history.append(row)
    elif kind == "run":
      items = rec.run.config.update
    elif kind == "config":
      items = rec.config.update
    for i in items:
      config[i.key or i.nested_key[0]] = json.loads(i.value_json)
  return history, config


def test_wandb_offline_metrics_config_curves_and_tables(tmp_path, monkeypatch):
  pytest.importorskip("wandb", reason="wandb not installed (pip install -e '.[wandb]')")
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_SILENT", "true")
  config = {"stage": "grpo", "optim": {"learning_rate": 3e-6},
            "logging": {"wandb": {"enabled": True, "project": "r1jax-test"}}}
  w = MetricsWriter(tmp_path, config=config)
  for s in range(1, 4):
    w.write(s, {"loss": 1.0 / s, "reward/mean": 0.1 * s})
  w.log_table("eval/samples", [{"id": "a", "completion": "<answer> 3 </answer>", "correct": True},
                               {"id": "b", "completion": "x", "correct": False, "extra": [1]}],
              step=3)
  w.close()
  plot_curves(read_metrics(tmp_path), ["loss"], tmp_path / "train_curves.png")  # after close
  metrics.log_eval_samples("math", [{"id": "q1", "text": "t"}], {"pass@1": 0.5})
  run_id = (tmp_path / metrics.WANDB_ID_FILE).read_text()
  metrics.active_wandb_run().finish()
  run_dir = _offline_run_dir(tmp_path)
  assert run_id in run_dir.name
  deadline = time.time() + 30
  while True:  # W&B's service may still be writing the file when finish() returns
    history, run_config = _wandb_records(run_dir)
    if any("eval/math/pass@1" in h for h in history) or time.time() > deadline:
      break
    time.sleep(0.5)
  losses = {h["_step"]: h["loss"] for h in history if "loss" in h}
  assert losses == {1: 1.0, 2: 0.5, 3: pytest.approx(1 / 3)}
  optim = run_config["optim"]
  assert optim.get("value", optim)["learning_rate"] == 3e-6
  keys = {k for h in history for k in h}
  assert {"eval/samples", "curves/train_curves", "eval/math/samples", "eval/math/pass@1"} <= keys
  table = next(h["eval/samples"] for h in history if "eval/samples" in h)
  assert table["_type"] == "table-file" and table["nrows"] == 2

  # A resumed stage continues the same run.
  w = MetricsWriter(tmp_path, config=config)
  assert w.wandb.run.id == run_id
  w.close(finish_wandb=True)
  assert metrics.active_wandb_run() is None


def test_wandb_missing_gives_a_clear_error(tmp_path, monkeypatch):
  import builtins
  real_import = builtins.__import__

  def no_wandb(name, *a, **k):
    if name == "wandb":
      raise ImportError("No module named 'wandb'")
    return real_import(name, *a, **k)
  monkeypatch.setattr(builtins, "__import__", no_wandb)
  with pytest.raises(ImportError, match=r'pip install -e "\.\[wandb\]"'):
    MetricsWriter(tmp_path, config={"logging": {"wandb": {"enabled": True}}})
