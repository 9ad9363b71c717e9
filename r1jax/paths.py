"""Paths given by users (workdirs, `init_from`, checkpoint dirs), made absolute once.

orbax refuses relative checkpoint paths, and a relative path also changes meaning when a
notebook or a library call changes the working directory. So every entry point (the CLI,
`r1jax.run.run`, each stage function a notebook calls, `Checkpointer`) resolves its paths
here: `~` is expanded and a relative local path becomes absolute against the current
directory. A URL-style path (`gs://bucket/run`, `s3://…`) is passed through untouched.

All file I/O on those paths goes through `etils.epath` (the layer orbax uses), so a `gs://`
workdir works for every stage. The helpers below are the few operations that differ between a
local disk and an object store (atomic replace, append, truncate); see docs/checkpoints.md.
"""
from __future__ import annotations

import copy
import functools
import os
import posixpath
from typing import Any, Callable

from etils import epath


def is_remote(path: str | os.PathLike) -> bool:
  return "://" in os.fspath(path)


def resolve(path: Any) -> Any:
  """Absolute local path (with `~` expanded), a remote path unchanged; '' and None as given.

  A path object with no local file name (an `etils.epath` path of a remote backend whose
  `__fspath__` refuses) becomes its URL (`str()`), which `epath.Path` turns back into it.
  """
  if path is None:
    return None
  try:
    s = os.fspath(path)
  except TypeError:
    return as_str(path)
  if not s or is_remote(s):
    return s
  return os.path.abspath(os.path.expanduser(s))


def resolve_config(config: Any) -> Any:
  """A copy of a stage config whose `init_from` (a path) is resolved; other fields as given.

  A pipeline config's `init_from` / `data_from` map stage names to sibling stage names,
  not paths: those are joined to the (already absolute) pipeline workdir later.
  """
  init_from = config.get("init_from") if hasattr(config, "get") else None
  if not isinstance(init_from, (str, os.PathLike)) or not os.fspath(init_from):
    return config
  resolved = resolve(init_from)
  if resolved == init_from:
    return config
  config = copy.deepcopy(config)
  if hasattr(config, "unlocked"):
    with config.unlocked():
      config.init_from = resolved
  else:
    config["init_from"] = resolved
  return config


def resolves_paths(stage_fn: Callable[..., Any]) -> Callable[..., Any]:
  """Decorator for stage entry points `fn(config, workdir, ...)`: resolves both first."""
  @functools.wraps(stage_fn)
  def wrapper(config, workdir, *args, **kwargs):
    return stage_fn(resolve_config(config), resolve(workdir), *args, **kwargs)
  return wrapper


# ---------------------------------------------------------------------------- I/O on local or remote paths


def as_str(path: Any) -> str:
  """The path as a string: its local name, or the URL of a remote path object."""
  try:
    return os.fspath(path)
  except TypeError:
    return str(path)


def local_name(path: Any) -> str | None:
  """The local file name of `path`, or None for a remote one (a URL, or an object without one)."""
  try:
    name = os.fspath(path)
  except TypeError:
    return None
  return None if is_remote(name) else name


def join(base: Any, *parts: str) -> str:
  """`base/part/...` as a string (a URL keeps its scheme and `/` separators)."""
  base = as_str(base)
  return posixpath.join(base, *parts) if is_remote(base) else os.path.join(base, *parts)


def makedirs(path: Any) -> epath.Path:
  """`mkdir -p` (a no-op on object stores, which have no directories); returns the path."""
  p = epath.Path(path)
  p.mkdir(parents=True, exist_ok=True)
  return p


def _write_synced(local: str, raw: bytes, mode: str) -> None:
  with open(local, mode) as f:
    f.write(raw)
    f.flush()
    os.fsync(f.fileno())


def write_atomic(path: Any, data: str | bytes) -> None:
  """Writes `path` so that a reader (or a resumed run) never sees half a file.

  Local: a sibling `.tmp` file, fsynced, then `os.replace` (atomic on POSIX).
  Remote (gs://, s3://): the `.tmp` object, then epath's `replace`, which on object stores is a
  server-side copy and a delete. An object becomes visible only once it is complete, so readers
  see the old or the new contents, never a mix; a crash between copy and delete can leave the
  `.tmp` object behind (the next write overwrites it).
  """
  p = epath.Path(path)
  tmp = p.parent / (p.name + ".tmp")
  raw = data.encode("utf-8") if isinstance(data, str) else data
  local = local_name(tmp)
  if local is not None:
    _write_synced(local, raw, "wb")
    os.replace(local, local_name(p))
    return
  tmp.write_bytes(raw)
  tmp.replace(p)


def append(path: Any, data: str | bytes) -> int:
  """Appends `data` durably; returns the file size afterwards.

  Local: O_APPEND and fsync. Remote: object stores cannot append, so the object is read and
  written back whole (each write is all-or-nothing). Meant for the small JSONL outputs of a
  stage, not for large logs.
  """
  raw = data.encode("utf-8") if isinstance(data, str) else data
  p = epath.Path(path)
  local = local_name(p)
  if local is not None:
    _write_synced(local, raw, "ab")
    return os.path.getsize(local)
  old = p.read_bytes() if p.exists() else b""
  p.write_bytes(old + raw)
  return len(old) + len(raw)


def size(path: Any) -> int:
  """Size of a file in bytes."""
  local = local_name(path)
  return os.path.getsize(local) if local is not None else epath.Path(path).stat().length


def truncate(path: Any, nbytes: int) -> None:
  """Cuts a file to its first `nbytes` bytes (remote: rewrites the object)."""
  local = local_name(path)
  if local is not None:
    with open(local, "r+b") as f:
      f.truncate(nbytes)
    return
  p = epath.Path(path)
  p.write_bytes(p.read_bytes()[:nbytes])

