"""Metrics: JSONL + TensorBoard writers, a progress bar, and curve plots.

Only process 0 writes. Every record carries the step; values are plain floats
(device scalars are fetched here, once per log interval, never per op).
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Iterable, Mapping

import jax
import numpy as np


def to_float_dict(metrics: Mapping[str, Any]) -> dict[str, float]:
  out = {}
  for k, v in jax.device_get(dict(metrics)).items():
    try:
      out[k] = float(np.mean(np.asarray(v, dtype=np.float64)))
    except (TypeError, ValueError):
      continue
  return out


class MetricsWriter:
  """Appends `{"step": s, **metrics}` to workdir/metrics.jsonl and TensorBoard events."""

  def __init__(self, workdir: str | os.PathLike, filename: str = "metrics.jsonl",
               tensorboard: bool = True):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(os.fspath(workdir), filename)
    self._tb = None
    if self.enabled:
      os.makedirs(os.fspath(workdir), exist_ok=True)
      if tensorboard:
        try:
          from tensorboardX import SummaryWriter
          self._tb = SummaryWriter(os.path.join(os.fspath(workdir), "tensorboard"))
        except Exception:  # noqa: BLE001 - TensorBoard is a nicety, never fatal
          self._tb = None

  def write(self, step: int, metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    values = to_float_dict(metrics)
    if prefix:
      values = {f"{prefix}{k}": v for k, v in values.items()}
    if not self.enabled:
      return values
    rec = {"step": int(step), "time": time.time(),
           **{k: (v if math.isfinite(v) else str(v)) for k, v in values.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(rec) + "\n")
    if self._tb is not None:
      for k, v in values.items():
        if math.isfinite(v):
          self._tb.add_scalar(k, v, int(step))
    return values

  def flush(self):
    if self._tb is not None:
      self._tb.flush()

  def close(self):
    if self._tb is not None:
      self._tb.close()


def read_metrics(path: str | os.PathLike) -> list[dict]:
  """Reads a metrics.jsonl, skipping a torn last line (a run killed mid-write)."""
  if os.path.isdir(path):
    path = os.path.join(path, "metrics.jsonl")
  out = []
  if not os.path.exists(path):
    return out
  with open(path) as f:
    for line in f:
      try:
        out.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return out


def truncate_metrics(path: str | os.PathLike, after_step: int) -> None:
  """On resume, drops records logged after the restored step (they will be redone)."""
  if not os.path.exists(path) or jax.process_index() != 0:
    return
  recs = [r for r in read_metrics(path) if int(r.get("step", 0)) <= after_step]
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    for r in recs:
      f.write(json.dumps(r) + "\n")
  os.replace(tmp, path)


class Progress:
  """tqdm bar that shows the latest metrics; silent on non-zero processes."""

  def __init__(self, total: int, initial: int = 0, desc: str = "train", keys: Iterable[str] = ()):
    self.keys = tuple(keys)
    self._bar = None
    if jax.process_index() == 0:
      from tqdm.auto import tqdm
      self._bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True,
                       mininterval=1.0)

  def update(self, n: int = 1, metrics: Mapping[str, float] | None = None):
    if self._bar is None:
      return
    if metrics:
      shown = {k: metrics[k] for k in self.keys if k in metrics} or dict(list(metrics.items())[:4])
      self._bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
    self._bar.update(n)

  def close(self):
    if self._bar is not None:
      self._bar.close()


def plot_curves(records: list[dict], keys: Iterable[str], path: str | os.PathLike,
                title: str = "", smooth: int = 1) -> str | None:
  """Saves a PNG with one panel per key (those present). Returns the path or None."""
  keys = [k for k in keys if any(k in r for r in records)]
  if not keys or jax.process_index() != 0:
    return None
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
  for ax, k in zip(axes[0], keys):
    pts = [(r["step"], r[k]) for r in records if isinstance(r.get(k), (int, float))]
    if not pts:
      continue
    xs, ys = map(np.asarray, zip(*pts))
    ax.plot(xs, ys, alpha=0.35 if smooth > 1 else 1.0)
    if smooth > 1 and len(ys) >= smooth:
      ax.plot(xs[smooth - 1:], np.convolve(ys, np.ones(smooth) / smooth, mode="valid"))
    ax.set_title(k, fontsize=9)
    ax.set_xlabel("step")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return os.fspath(path)
