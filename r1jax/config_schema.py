"""Dataclass <-> ConfigDict: the machinery behind the typed stage configs (`r1jax.stage_config`).

`configdict_of` generates a ConfigDict section from a dataclass (one field per dataclass
field, holding its default; unset fields become typed placeholders), and `build` turns a
section back into the frozen dataclass, coercing types and naming any unknown or wrongly
typed field. `to_dict` flattens a ConfigDict / mapping / dataclass to plain dicts.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping

import ml_collections
from ml_collections import config_dict


def to_dict(cfg: Any) -> Any:
  """A plain (nested) dict of a ConfigDict / mapping / dataclass; anything else as is."""
  if hasattr(cfg, "to_dict"):
    return cfg.to_dict()
  if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
    return dataclasses.asdict(cfg)
  return dict(cfg) if isinstance(cfg, Mapping) else cfg


def _unwrap(tp) -> tuple[Any, bool]:
  """(the type without `| None`, whether None is allowed)."""
  origin = typing.get_origin(tp)
  if origin in (typing.Union, types.UnionType):
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return (args[0] if len(args) == 1 else Any), len(args) < len(typing.get_args(tp))
  return tp, False


def _hints(cls) -> dict[str, Any]:
  return typing.get_type_hints(cls)


def _default(f: dataclasses.Field) -> Any:
  if f.default is not dataclasses.MISSING:
    return f.default
  if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
    return f.default_factory()  # type: ignore[misc]
  return None


_SCALARS = (int, float, bool, str)


def configdict_of(cls, unset: tuple[str, ...] = (), skip: tuple[str, ...] = ()
                  ) -> ml_collections.ConfigDict:
  """A ConfigDict with one field per dataclass field, holding the dataclass default.

  `cls` may also be an instance, whose values are then the defaults. Fields in `unset` and
  scalar fields whose default is None become typed placeholders (None = "not set here":
  the dataclass default or a preset's value applies).
  """
  inst = None if isinstance(cls, type) else cls
  cls = type(cls) if inst is not None else cls
  out = ml_collections.ConfigDict()
  hints = _hints(cls)
  for f in dataclasses.fields(cls):
    if f.name in skip:
      continue
    tp, _ = _unwrap(hints[f.name])
    hook = getattr(cls, "_configdict_field", None)
    custom = hook(f.name) if hook else None
    if custom is not None:
      out[f.name] = custom
      continue
    default = getattr(inst, f.name) if inst is not None else _default(f)
    if dataclasses.is_dataclass(tp):
      out[f.name] = configdict_of(default if default is not None else tp)
    elif f.name in unset or default is None:
      base = typing.get_origin(tp) or tp
      if base in _SCALARS:
        out[f.name] = config_dict.placeholder(base)
      elif base is dict:
        out[f.name] = ml_collections.ConfigDict()
      else:
        out[f.name] = config_dict.placeholder(object)
    elif tp is Any and isinstance(default, _SCALARS):   # e.g. `int | str`: 0 or 'auto'
      out[f.name] = config_dict.FieldReference(default, field_type=object)
    elif isinstance(default, Mapping):
      out[f.name] = ml_collections.ConfigDict(dict(default))
    else:
      out[f.name] = default
  return out


def _coerce(value: Any, tp: Any, where: str) -> Any:
  base = typing.get_origin(tp) or tp
  try:
    if base is bool:
      if not isinstance(value, (bool, int)):
        raise TypeError
      return bool(value)
    if base is int:
      if isinstance(value, bool) or float(value) != int(value):
        raise TypeError
      return int(value)
    if base is float:
      if isinstance(value, bool):
        raise TypeError
      return float(value)
    if base is str:
      if not isinstance(value, str):
        raise TypeError
      return value
    if base is tuple:
      args = typing.get_args(tp)
      items = tuple(value) if not isinstance(value, str) else (value,)
      if args and args[-1] is Ellipsis and args[0] is not Any:
        return tuple(_coerce(v, args[0], where) for v in items)
      return items
    if base is dict:
      return dict(to_dict(value))
  except (TypeError, ValueError):
    raise ValueError(f"{where}={value!r}: expected {getattr(base, '__name__', base)}") from None
  return value


def build(cls, section: Any, where: str):
  """The dataclass `cls` from a ConfigDict / dict section; None values take the defaults.

  Unknown fields raise ValueError naming `where.<field>` and the known fields.
  """
  d = to_dict(section) or {}
  names = [f.name for f in dataclasses.fields(cls)]
  unknown = sorted(set(d) - set(names))
  if unknown:
    raise ValueError(f"{where}.{unknown[0]}: unknown field (known: {', '.join(names)})")
  hints = _hints(cls)
  kwargs = {}
  for f in dataclasses.fields(cls):
    if f.name not in d or d[f.name] is None:
      continue
    tp, _ = _unwrap(hints[f.name])
    value = d[f.name]
    if dataclasses.is_dataclass(tp):
      kwargs[f.name] = build(tp, value, f"{where}.{f.name}")
    else:
      kwargs[f.name] = _coerce(value, tp, f"{where}.{f.name}")
  try:
    return cls(**kwargs)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{where}: {e}") from e
