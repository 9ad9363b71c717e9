"""Metrics: JSONL + TensorBoard (+ optional Weights & Biases) writers, a progress bar, plots.

Only process 0 writes. Every record carries the step; values are plain floats
(device scalars are fetched here, once per log interval, never per op). Files go
through `etils.epath`, so a `gs://` workdir works: local files are appended to,
remote ones are rewritten whole on flush (object stores have no append).

Weights & Biases (`pip install -e ".[wandb]"`, `config.logging.wandb.enabled=True`)
receives the same scalars, the resolved config, the curve plots and evaluation
sample tables; `WANDB_MODE=offline` keeps it all on disk (`wandb sync` later).
A resumed stage continues the same W&B run (its id is kept in the workdir).

On resume the stage drops metrics records after the restored step
(`truncate_metrics`), and TensorBoard is opened with `purge_step` = the step
after the last kept record, so redone steps are not shown twice.
"""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import os
import tempfile
import time
import uuid
from typing import Any, Iterable, Mapping, Sequence

import jax
import numpy as np
from etils import epath

from r1jax import paths

log = logging.getLogger(__name__)

WANDB_ID_FILE = "wandb_run_id"


def to_float_dict(metrics: Mapping[str, Any]) -> dict[str, float]:
  out = {}
  for k, v in jax.device_get(dict(metrics)).items():
    try:
      out[k] = float(np.mean(np.asarray(v, dtype=np.float64)))
    except (TypeError, ValueError):
      continue
  return out


def _local(path: epath.Path) -> str | None:
  """The local file name of `path`, or None for a remote (gs://, ...) path."""
  return paths.local_name(path)


# ----------------------------------------------------------------------------- W&B


@dataclasses.dataclass(frozen=True)
class WandbConfig:
  """`config.logging.wandb`: where and how a stage logs to Weights & Biases.

  Attributes:
    enabled: log to W&B (needs the `wandb` package: pip install -e ".[wandb]").
    project, entity: the W&B project and team ('' = your default entity).
    name: the run name ('' = the workdir's name); group: e.g. the pipeline's name.
    tags: run tags.
    mode: 'online', 'offline' or 'disabled'; '' = WANDB_MODE or online.
    max_table_rows: rows of an evaluation samples table that are uploaded.
  """
  enabled: bool = False
  project: str = "r1jax"
  entity: str = ""
  name: str = ""
  group: str = ""
  tags: tuple[str, ...] = ()
  mode: str = ""
  max_table_rows: int = 200

  @classmethod
  def from_config(cls, config: Any) -> "WandbConfig":
    """From a stage config (its `logging.wandb` block; a bool means `enabled`)."""
    block = _get(_get(config, "logging"), "wandb")
    if block is None:
      return cls()
    if isinstance(block, bool):
      return cls(enabled=block)
    d = dict(block.to_dict() if hasattr(block, "to_dict") else block)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise ValueError(f"Unknown config.logging.wandb fields {unknown}; known: {sorted(known)}")
    if "tags" in d:
      d["tags"] = tuple(d["tags"] or ())
    return cls(**{k: v for k, v in d.items() if v is not None})


def _get(cfg: Any, key: str) -> Any:
  if cfg is None:
    return None
  if isinstance(cfg, Mapping):
    return cfg.get(key)
  return getattr(cfg, key, None)


_ACTIVE_RUN = None  # the W&B run r1jax started last (finished when the next one starts)


def active_wandb_run():
  """The W&B run of the current (or last) stage in this process, or None."""
  return _ACTIVE_RUN


class WandbLogger:
  """One W&B run per stage workdir; resuming the stage resumes the run."""

  def __init__(self, cfg: WandbConfig, workdir: epath.Path, run_config: Any = None):
    global _ACTIVE_RUN
    try:
      import wandb  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      raise ImportError('config.logging.wandb.enabled=True needs wandb: pip install -e ".[wandb]"'
                        ) from e
    self._wandb = wandb
    self.cfg = cfg
    if _ACTIVE_RUN is not None:  # the previous stage of a pipeline
      _ACTIVE_RUN.finish()
      _ACTIVE_RUN = None
    id_file = workdir / WANDB_ID_FILE
    run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:12]
    local = _local(workdir)
    # W&B keeps its files locally; for a remote workdir they go to a temporary directory.
    self._tmp = None if local else tempfile.TemporaryDirectory(prefix="r1jax_wandb_")
    wandb_dir = local if local else self._tmp.name
    if run_config is not None and hasattr(run_config, "to_dict"):
      run_config = run_config.to_dict()
    self.run = wandb.init(
        project=cfg.project, entity=cfg.entity or None, name=cfg.name or workdir.name,
        group=cfg.group or None, tags=list(cfg.tags) or None, config=run_config, id=run_id,
        resume="allow", dir=wandb_dir, mode=cfg.mode or None)
    id_file.write_text(run_id)
    _ACTIVE_RUN = self.run

  def log(self, step: int, values: Mapping[str, float]) -> None:
    # W&B keeps the first value it got for a step: after a resume, redone steps that it already
    # has are ignored by it (JSONL and TensorBoard hold the redone values).
    self.run.log(dict(values), step=int(step))

  def log_table(self, key: str, rows: Sequence[Mapping[str, Any]], step: int | None = None):
    rows = list(rows)[:self.cfg.max_table_rows]
    if not rows:
      return
    columns = list(dict.fromkeys(k for r in rows for k in r))
    data = [[_cell(r.get(c)) for c in columns] for r in rows]
    self.run.log({key: self._wandb.Table(columns=columns, data=data)},
                 **({"step": int(step)} if step is not None else {}))

  def log_image(self, key: str, path: str | os.PathLike) -> None:
    from PIL import Image  # pylint: disable=import-outside-toplevel
    image = Image.open(io.BytesIO(epath.Path(path).read_bytes()))
    self.run.log({key: self._wandb.Image(image)})

  def finish(self) -> None:
    global _ACTIVE_RUN
    self.run.finish()
    if _ACTIVE_RUN is self.run:
      _ACTIVE_RUN = None
    if self._tmp is not None:
      self._tmp.cleanup()


def _cell(v: Any) -> Any:
  if v is None or isinstance(v, (bool, int, float, str)):
    return v
  return json.dumps(v, default=str)


# ----------------------------------------------------------------------------- writer


class _EpathRecordWriter:
  """tensorboardX record writer for a remote event file, through epath.

  Object stores cannot append: the events are buffered and the object is rewritten on each
  flush (as tensorboardX's own gs:// writer does). Scalars only, so the file stays small.
  """

  def __init__(self, path: str):
    self.path = epath.Path(path)
    self.buffer = io.BytesIO()

  def write(self, data: bytes) -> None:
    self.buffer.write(data)

  def flush(self) -> None:
    self.path.write_bytes(self.buffer.getvalue())

  def close(self) -> None:
    self.flush()


class _EpathRecordWriterFactory:

  def open(self, path: str) -> _EpathRecordWriter:
    return _EpathRecordWriter(path)

  def directory_check(self, path: str) -> None:
    epath.Path(path).mkdir(parents=True, exist_ok=True)


def _register_tensorboard_scheme(url: str) -> None:
  """Routes tensorboardX's event files under `url`'s scheme (gs, s3, ...) through epath, the
  same backend as every other file of the workdir (tensorboardX alone would need
  google-cloud-storage or boto3, and writes unknown schemes to a local directory)."""
  from tensorboardX import record_writer  # pylint: disable=import-outside-toplevel
  record_writer.register_writer_factory(url.split("://", 1)[0], _EpathRecordWriterFactory())


class MetricsWriter:
  """Appends `{"step": s, **metrics}` to workdir/metrics.jsonl, TensorBoard events and W&B.

  Args:
    workdir: the stage's workdir (local or remote).
    filename: the JSONL file in it.
    tensorboard: write TensorBoard events to workdir/tensorboard.
    config: the stage config; its `logging.wandb` block turns W&B on, and it is logged as the
      run's config.
    purge_step: TensorBoard drops events at steps >= this (the redone steps of a resumed run).
      'auto': one past the last step in the JSONL file (which a resume has truncated).
  """

  def __init__(self, workdir: str | os.PathLike, filename: str = "metrics.jsonl",
               tensorboard: bool = True, config: Any = None, purge_step: int | str | None = "auto"):
    self.enabled = jax.process_index() == 0
    workdir = epath.Path(workdir)
    self.path = workdir / filename
    self._local = _local(self.path)
    self._pending: list[str] = []  # remote files: records not yet uploaded
    self._tb = None
    self.wandb: WandbLogger | None = None
    if not self.enabled:
      return
    workdir.mkdir(parents=True, exist_ok=True)
    if purge_step == "auto":
      steps = [int(r.get("step", 0)) for r in read_metrics(self.path)]
      purge_step = max(steps) + 1 if steps else None
    if tensorboard:
      try:
        from tensorboardX import SummaryWriter
        # The suffix keeps two writers opened within one second (a quick resume) from
        # writing to the same event file name, which would truncate the first one's events.
        tb_dir = str(workdir / "tensorboard")
        if _local(workdir) is None:
          _register_tensorboard_scheme(tb_dir)
        self._tb = SummaryWriter(tb_dir, purge_step=purge_step,
                                 filename_suffix=f".{time.time_ns()}")
      except Exception:  # noqa: BLE001 - TensorBoard is a nicety, never fatal
        self._tb = None
    wb = WandbConfig.from_config(config)
    if wb.enabled:
      self.wandb = WandbLogger(wb, workdir, run_config=config)

  def write(self, step: int, metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    values = to_float_dict(metrics)
    if prefix:
      values = {f"{prefix}{k}": v for k, v in values.items()}
    if not self.enabled:
      return values
    rec = {"step": int(step), "time": time.time(),
           **{k: (v if math.isfinite(v) else str(v)) for k, v in values.items()}}
    line = json.dumps(rec) + "\n"
    if self._local is not None:
      with open(self._local, "a") as f:
        f.write(line)
    else:
      self._pending.append(line)
      if len(self._pending) >= 20:
        self._upload()
    finite = {k: v for k, v in values.items() if math.isfinite(v)}
    if self._tb is not None:
      for k, v in finite.items():
        self._tb.add_scalar(k, v, int(step))
    if self.wandb is not None:
      self.wandb.log(step, finite)
    return values

  def _upload(self):
    """Remote JSONL: rewrite the file with the pending records (object stores don't append)."""
    if not self._pending:
      return
    old = self.path.read_text() if self.path.exists() else ""
    self.path.write_text(old + "".join(self._pending))
    self._pending = []

  def log_table(self, key: str, rows: Sequence[Mapping[str, Any]], step: int | None = None):
    """A table (e.g. evaluation samples) for W&B; a no-op without it."""
    if self.enabled and self.wandb is not None:
      self.wandb.log_table(key, rows, step)

  def log_image(self, key: str, path: str | os.PathLike) -> None:
    if self.enabled and self.wandb is not None and path is not None:
      self.wandb.log_image(key, path)

  def flush(self):
    if self.enabled:
      self._upload()
    if self._tb is not None:
      self._tb.flush()

  def close(self, finish_wandb: bool = False):
    """Flushes and closes. The W&B run stays open (for `plot_curves`' images) until the next
    stage starts one, the process exits, or `finish_wandb`."""
    self.flush()
    if self._tb is not None:
      self._tb.close()
      self._tb = None
    if finish_wandb and self.wandb is not None:
      self.wandb.finish()
      self.wandb = None


def read_metrics(path: str | os.PathLike) -> list[dict]:
  """Reads a metrics.jsonl (or a workdir's), skipping a torn last line (a run killed mid-write)."""
  path = epath.Path(path)
  if path.is_dir():
    path = path / "metrics.jsonl"
  out = []
  if not path.exists():
    return out
  for line in path.read_text().splitlines():
    try:
      out.append(json.loads(line))
    except json.JSONDecodeError:
      continue
  return out


def truncate_metrics(path: str | os.PathLike, after_step: int) -> None:
  """On resume, drops records logged after the restored step (they will be redone)."""
  path = epath.Path(path)
  if not path.exists() or jax.process_index() != 0:
    return
  recs = [r for r in read_metrics(path) if int(r.get("step", 0)) <= after_step]
  tmp = path.parent / f"{path.name}.tmp"
  tmp.write_text("".join(json.dumps(r) + "\n" for r in recs))
  tmp.replace(path)


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
  """Saves a PNG with one panel per key (those present). Returns the path or None.

  The image also goes to the stage's W&B run when one is active.
  """
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
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=100)
  plt.close(fig)
  path = epath.Path(path)
  path.write_bytes(buf.getvalue())
  run = active_wandb_run()
  if run is not None:
    try:
      import wandb  # pylint: disable=import-outside-toplevel
      from PIL import Image  # pylint: disable=import-outside-toplevel
      run.log({f"curves/{path.stem}": wandb.Image(Image.open(io.BytesIO(buf.getvalue())))})
    except Exception as e:  # noqa: BLE001 - a plot upload is never fatal
      log.warning("Could not log %s to W&B: %s", path, e)
  return str(path)


def log_eval_samples(label: str, samples: Sequence[Mapping[str, Any]],
                     summary: Mapping[str, float] | None = None, max_rows: int = 200) -> None:
  """Evaluation samples (and the summary) to the active W&B run; a no-op without one."""
  run = active_wandb_run()
  if run is None or jax.process_index() != 0:
    return
  import wandb  # pylint: disable=import-outside-toplevel
  rows = list(samples)[:max_rows]
  if rows:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    run.log({f"eval/{label}/samples": wandb.Table(
        columns=columns, data=[[_cell(r.get(c)) for c in columns] for r in rows])})
  if summary:
    run.log({f"eval/{label}/{k}": float(v) for k, v in summary.items()})
