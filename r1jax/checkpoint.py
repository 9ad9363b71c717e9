"""Orbax checkpoints of {train state, data-iterator state, metadata}.

A checkpoint directory `workdir/checkpoints/<step>/` holds three items:
  state  the TrainState pytree (restored directly onto sharded targets),
  data   the JSON state of the data iterator(s), so a resume sees the same data,
  meta   JSON: the config that produced it and stage-specific extras.

`restore_latest` walks back from the newest step when one is unreadable (a run
killed while writing, a disk error), so a corrupt checkpoint costs at most one
checkpoint interval, never the run. The unreadable step is moved aside to
`<directory>.unreadable/<step>-<time>` (kept for inspection, never deleted), so that
training can save that step number again when it gets there.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from r1jax import paths

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
  pass


def _to_jsonable(x: Any) -> Any:
  """Config dicts and iterator states to plain JSON (tuples -> lists, numpy -> python)."""
  return json.loads(json.dumps(x, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


class Checkpointer:
  """Thin wrapper over `ocp.CheckpointManager` for r1jax's three items."""

  def __init__(self, directory: str | os.PathLike, max_to_keep: int = 3,
               async_save: bool = True):
    # orbax refuses relative paths; a remote (gs://) path is passed through.
    self.directory = epath.Path(paths.resolve(directory))
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=async_save)
    self._mngr = ocp.CheckpointManager(self.directory, options=options,
                                       item_names=("state", "data", "meta"))

  def all_steps(self) -> list[int]:
    return sorted(self._mngr.all_steps())

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def save(self, step: int, state: Any, data_state: Any = None, meta: Any = None,
           force: bool = False) -> bool:
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              data=ocp.args.JsonSave(_to_jsonable(data_state or {})),
                              meta=ocp.args.JsonSave(_to_jsonable(meta or {})))
    saved = self._mngr.save(int(step), args=args, force=force)
    if not saved and int(step) in self._mngr.all_steps():
      # orbax skips a step that already exists; after a resume that would silently keep
      # an older state under this step number. The caller decides what that means.
      raise CheckpointError(f"Checkpoint step {step} already exists in {self.directory}; "
                            "not overwritten.")
    return saved

  def restore(self, step: int, target: Any) -> tuple[Any, dict, dict]:
    """Restores `step` onto `target` (a concrete or abstract state with shardings)."""
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        target)
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                              data=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore())
    out = self._mngr.restore(int(step), args=args)
    return out["state"], dict(out["data"] or {}), dict(out["meta"] or {})

  def restore_latest(self, target: Any) -> tuple[int, Any, dict, dict] | None:
    """Newest readable checkpoint as (step, state, data_state, meta), or None."""
    errors = []
    for step in reversed(self.all_steps()):
      try:
        state, data, meta = self.restore(step, target)
        if errors:
          log.warning("Restored step %d after skipping unreadable checkpoints: %s", step, errors)
        return step, state, data, meta
      except Exception as e:  # noqa: BLE001 - any unreadable checkpoint: try an older one
        errors.append(f"step {step}: {type(e).__name__}: {e}")
        log.error("Checkpoint at step %d is unreadable (%s); trying an older one.", step, e)
        self.quarantine(step)
    if errors:
      raise CheckpointError("No readable checkpoint in %s:\n%s" % (self.directory,
                                                                   "\n".join(errors)))
    return None

  def quarantine(self, step: int) -> epath.Path | None:
    """Moves an unreadable `step` out of the manager's directory (kept, never deleted).

    Returns the new location (None on processes other than 0, which only wait).
    """
    dest = None
    if jax.process_index() == 0:
      src = self.directory / str(int(step))
      qdir = self.directory.parent / (self.directory.name + ".unreadable")
      qdir.mkdir(parents=True, exist_ok=True)
      dest = qdir / f"{int(step)}-{time.strftime('%Y%m%d-%H%M%S')}"
      if src.exists():
        src.rename(dest)
        log.warning("Moved unreadable checkpoint step %d to %s", step, dest)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices(f"r1jax_quarantine_{int(step)}")
    self._mngr.reload()
    return dest

  def restore_meta(self, step: int | None = None) -> dict:
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"No checkpoint in {self.directory}")
    out = self._mngr.restore(int(step), args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(out["meta"] or {})

  def wait(self):
    self._mngr.wait_until_finished()

  def close(self):
    self._mngr.wait_until_finished()
    self._mngr.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def restore_params(directory: str | os.PathLike, target_params: Any, step: int | None = None
                   ) -> tuple[Any, dict]:
  """Only the params of a TrainState checkpoint (for `init_from` chaining of stages).

  `target_params` gives structure, dtypes and shardings (an abstract tree is fine).
  """
  path = epath.Path(directory)
  if (path / "checkpoints").exists():
    path = path / "checkpoints"
  ckpt = Checkpointer(path, async_save=False)
  try:
    steps = ckpt.all_steps() if step is None else [step]
    if not steps:
      raise CheckpointError(f"No checkpoint found under {directory}")
    errors = []
    for s in reversed(steps):
      try:
        meta = ckpt.restore_meta(s)
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                           sharding=getattr(x, "sharding", None)), target_params)
        # Partial restore of the `params` subtree of the saved TrainState. GRPO saves
        # {"train": TrainState, "ref": params}, so its params sit one level deeper.
        nest = (lambda t: {"train": t}) if meta.get("stage") == "grpo" else (lambda t: t)
        item = nest({"params": abstract})
        restore_args = ocp.args.PyTreeRestore(
            item=item,
            restore_args=jax.tree.map(lambda a: ocp.ArrayRestoreArgs(sharding=a.sharding)
                                      if a.sharding is not None else ocp.RestoreArgs(), item),
            partial_restore=True)
        out = ckpt._mngr.restore(int(s), args=ocp.args.Composite(state=restore_args))
        state = out["state"]["train"] if meta.get("stage") == "grpo" else out["state"]
        params = state["params"]
        # A partial restore leaves the abstract leaves of a missing subtree in place.
        if any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(params)):
          raise CheckpointError(f"step {s} has no params subtree")
        return params, meta
      except Exception as e:  # noqa: BLE001
        errors.append(f"step {s}: {type(e).__name__}: {e}")
    raise CheckpointError("Could not restore params from %s:\n%s" % (directory, "\n".join(errors)))
  finally:
    ckpt.close()
