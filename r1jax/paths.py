"""Paths given by users (workdirs, `init_from`, checkpoint dirs), made absolute once.

orbax refuses relative checkpoint paths, and a relative path also changes meaning when a
notebook or a library call changes the working directory. So every entry point (the CLI,
`r1jax.run.run`, each stage function a notebook calls, `Checkpointer`) resolves its paths
here: `~` is expanded and a relative local path becomes absolute against the current
directory. A URL-style path (`gs://bucket/run`, `s3://…`) is passed through untouched.
"""
from __future__ import annotations

import copy
import functools
import os
from typing import Any, Callable


def is_remote(path: str | os.PathLike) -> bool:
  return "://" in os.fspath(path)


def resolve(path: Any) -> Any:
  """Absolute local path (with `~` expanded), a remote path unchanged; '' and None as given.

  A path object with no local file name (an `etils.epath` path of a remote backend whose
  `__fspath__` refuses) is returned as it is: it is not relative to anything here.
  """
  if path is None:
    return None
  try:
    s = os.fspath(path)
  except TypeError:
    return path
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
