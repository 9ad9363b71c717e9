"""Device mesh and the one mapping from logical axis names to mesh axes.

Every parameter and every large activation in r1jax is annotated with *logical*
axis names ("embed", "mlp", "heads", "batch", ...). `ShardingRules` turns those
names into mesh axes ("data", "fsdp", "tensor"), so one config line changes how a
model is laid out without touching model code (the MaxText / Tunix pattern).

The mesh uses explicit `axis_types` of `AxisType.Auto`: shardings are given for
inputs, outputs, parameters and a few activations, and XLA's partitioner
propagates the rest. (Explicit "sharding in types" mode would force every einsum
to name its output sharding; Auto keeps model code free of that.)
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

log = logging.getLogger(__name__)

MESH_AXES = ("data", "fsdp", "tensor")

# A logical axis maps to None (replicated), one mesh axis, or a tuple of them.
AxisRule = None | str | tuple[str, ...]


# MaxText logical axis names -> r1jax's (for `ShardingRules.from_pairs`).
MAXTEXT_NAMES = {
    "activation_batch": "batch", "activation_length": "seq", "activation_embed": "act_embed",
    "activation_mlp": "act_mlp", "activation_heads": "act_heads",
    "activation_kv_heads": "act_kv_heads", "activation_vocab": "act_vocab",
    "q_heads": "heads", "kv": "head_dim", "cache_sequence": "cache_seq",
}


@dataclasses.dataclass(frozen=True)
class ShardingRules:
  """Logical axis name -> mesh axes. Frozen and hashable: it is static under jit.

  Defaults are FSDP over `fsdp` (parameters' embed dim), tensor parallelism over
  `tensor` (heads, mlp, vocab), and the batch over both data-parallel axes.
  """
  batch: AxisRule = ("data", "fsdp")
  seq: AxisRule = None
  cache_seq: AxisRule = None
  vocab: AxisRule = "tensor"
  embed: AxisRule = "fsdp"
  mlp: AxisRule = "tensor"
  heads: AxisRule = "tensor"
  kv_heads: AxisRule = "tensor"
  head_dim: AxisRule = None
  norm: AxisRule = None
  # Activations: the residual stream is replicated over `tensor` and its embed
  # dim is not sharded (parameters' `embed` is, for FSDP).
  act_embed: AxisRule = None
  act_mlp: AxisRule = "tensor"
  act_heads: AxisRule = "tensor"
  act_kv_heads: AxisRule = "tensor"
  act_vocab: AxisRule = "tensor"

  @classmethod
  def from_dict(cls, overrides: Mapping[str, Any] | Sequence[Sequence[Any]] | None = None
                ) -> "ShardingRules":
    """Builds rules from a (config) dict; lists become tuples, unknown names fail.

    A list of (logical axis, mesh axes) pairs is MaxText's `logical_axis_rules` form and goes
    to `from_pairs`; so does a `logical_axis_rules` key (a config dict's way to hold the list,
    `config.sharding_rules.logical_axis_rules = [...]`), with the other keys applied on top.
    """
    if overrides is not None and not isinstance(overrides, Mapping):
      return cls.from_pairs(overrides)
    overrides = dict(overrides or {})
    pairs = overrides.pop("logical_axis_rules", None)
    if pairs:
      fixed = cls.from_dict(overrides)  # validates the other keys
      return dataclasses.replace(cls.from_pairs(pairs),
                                 **{k: getattr(fixed, k) for k in overrides})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
      raise ValueError(f"Unknown logical axis names in sharding rules: {unknown}. "
                       f"Known: {sorted(names)}")
    fixed = {}
    for k, v in overrides.items():
      if isinstance(v, (list, tuple)):
        v = tuple(v) if len(v) != 1 else v[0]
      if v is not None and not isinstance(v, (str, tuple)):
        raise ValueError(f"Sharding rule {k}={v!r} must be None, a mesh axis name or a tuple")
      fixed[k] = v
    return cls(**fixed)

  @classmethod
  def from_pairs(cls, pairs: Sequence[Sequence[Any]], mesh_axes: Sequence[str] = MESH_AXES
                 ) -> "ShardingRules":
    """Rules from MaxText-style `logical_axis_rules`: [(logical axis, mesh axes), ...].

    Pasted MaxText rules work as they are: MaxText's names map to r1jax's (MAXTEXT_NAMES,
    e.g. activation_batch -> batch, q_heads -> heads), names r1jax has no axis for (expert,
    stage, cache_batch, ...) are skipped, mesh axes that r1jax's mesh lacks (sequence,
    fsdp_transpose, ...) are dropped, and the first rule for a name wins, as in MaxText.
    Axes no pair names keep their defaults.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    chosen: dict[str, AxisRule] = {}
    skipped, dropped = [], set()
    for pair in pairs:
      if isinstance(pair, (str, bytes)) or len(pair) != 2:
        raise ValueError(f"Sharding rule pairs must be (logical axis, mesh axes), got {pair!r}")
      logical, axes = pair
      name = logical if logical in names else MAXTEXT_NAMES.get(logical)
      if name is None:
        skipped.append(logical)
        continue
      if name in chosen:
        continue
      axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
      kept = tuple(a for a in axes if a in mesh_axes)
      dropped.update(a for a in axes if a not in mesh_axes)
      chosen[name] = None if not kept else kept[0] if len(kept) == 1 else kept
    if skipped or dropped:
      logging.getLogger(__name__).info(
          "MaxText sharding rules: skipped logical axes r1jax does not have %s; dropped mesh "
          "axes not in the mesh %s", sorted(set(skipped)), sorted(dropped))
    return cls(**chosen)

  def mesh_axes(self, logical: str | None) -> AxisRule:
    if logical is None:
      return None
    try:
      return getattr(self, logical)
    except AttributeError:
      raise ValueError(f"No sharding rule for logical axis {logical!r}") from None

  def spec(self, logical_axes: Sequence[str | None]) -> P:
    """PartitionSpec for a tuple of logical names (no shape checks)."""
    return P(*(self.mesh_axes(a) for a in logical_axes))


def make_mesh(shape: Sequence[int] | Mapping[str, int] | None = None,
              axis_names: Sequence[str] = MESH_AXES,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Builds the (data, fsdp, tensor) mesh.

  `shape` may contain one -1, which takes all remaining devices, e.g. (-1, 1, 1)
  is pure data parallelism over every device (of every host).
  """
  if shape is None:
    shape = (-1, 1, 1)
  if isinstance(shape, Mapping):
    shape = [int(shape.get(a, 1)) for a in axis_names]
  shape = [int(s) for s in shape]
  if len(shape) != len(axis_names):
    raise ValueError(f"Mesh shape {shape} does not match axis names {tuple(axis_names)}")
  n = len(devices) if devices is not None else jax.device_count()
  if shape.count(-1) > 1:
    raise ValueError(f"At most one mesh dimension may be -1, got {shape}")
  if -1 in shape:
    rest = math.prod(s for s in shape if s != -1)
    if n % rest:
      raise ValueError(f"Cannot fill mesh {shape}: {n} devices not divisible by {rest}")
    shape[shape.index(-1)] = n // rest
  if math.prod(shape) != n:
    raise ValueError(f"Mesh shape {tuple(shape)} needs {math.prod(shape)} devices, "
                     f"but {n} are available")
  axis_types = (AxisType.Auto,) * len(axis_names)
  if devices is None:
    return jax.make_mesh(tuple(shape), tuple(axis_names), axis_types=axis_types)
  return Mesh(np.asarray(devices).reshape(shape), tuple(axis_names), axis_types=axis_types)


def _axis_size(mesh: Mesh, axes: AxisRule) -> int:
  if axes is None:
    return 1
  if isinstance(axes, str):
    axes = (axes,)
  return math.prod(mesh.shape[a] for a in axes)


_WARNED: set = set()


def _warn_replicated(name, dim: int, axes: tuple, size: int) -> None:
  """Once per (axis, dim, mesh axes): WARNING, since replication costs memory and speed and
  the CLI's default verbosity hides INFO."""
  if (name, dim, axes, size) not in _WARNED:
    _WARNED.add((name, dim, axes, size))
    log.warning("Replicating a dim of size %d (logical axis %r): not divisible by mesh axes "
                "%s of size %d", dim, name, axes, size)


def logical_to_spec(logical_axes: Sequence[str | None], shape: Sequence[int],
                    rules: ShardingRules, mesh: Mesh) -> P:
  """PartitionSpec for an array, replicating dims the mesh axes do not divide.

  Example: Qwen2.5-0.5B has 14 query heads, which a tensor axis of 4 cannot
  split; that dim is then replicated (and logged) instead of failing.
  """
  if len(logical_axes) != len(shape):
    raise ValueError(f"Logical axes {tuple(logical_axes)} do not match shape {tuple(shape)}")
  out, used = [], set()
  for name, dim in zip(logical_axes, shape):
    axes = rules.mesh_axes(name)
    if axes is not None:
      tup = (axes,) if isinstance(axes, str) else tuple(axes)
      # Drop mesh axes of size 1 or already used by an earlier dim.
      tup = tuple(a for a in tup if a in mesh.shape and mesh.shape[a] > 1 and a not in used)
      if tup and dim % _axis_size(mesh, tup):
        _warn_replicated(name, dim, tup, _axis_size(mesh, tup))
        tup = ()
      used.update(tup)
      axes = None if not tup else (tup[0] if len(tup) == 1 else tup)
    out.append(axes)
  return P(*out)


def named_sharding(logical_axes: Sequence[str | None], shape: Sequence[int],
                   rules: ShardingRules, mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, logical_to_spec(logical_axes, shape, rules, mesh))


def shard_activation(x: jax.Array, logical_axes: Sequence[str | None],
                     rules: ShardingRules | None, mesh: Mesh | None) -> jax.Array:
  """`with_sharding_constraint` by logical names; identity when no mesh is bound.

  Models built without a mesh (pure single-device use, unit tests of the math) skip
  the constraint; models built with one always apply it, on CPU as on TPU.
  """
  if mesh is None or rules is None:
    return x
  return jax.lax.with_sharding_constraint(x, named_sharding(logical_axes, x.shape, rules, mesh))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, rules: ShardingRules, shape: Sequence[int],
                   extra: Sequence[str | None] = ()) -> NamedSharding:
  """Sharding for a batch-major array: dim 0 over the batch axes, rest as `extra`."""
  logical = ("batch",) + tuple(extra) + (None,) * (len(shape) - 1 - len(extra))
  return named_sharding(logical, shape, rules, mesh)


def batch_shards(mesh: Mesh, rules: ShardingRules, rows: int) -> int:
  """How many shards a batch of `rows` rows is split into (the devices along the batch axes)."""
  return rows // batch_sharding(mesh, rules, (rows,)).shard_shape((rows,))[0]


def put_global_batch(batch: Any, mesh: Mesh, rules: ShardingRules) -> Any:
  """Assembles process-local numpy batches into global arrays sharded over `batch`.

  Each process passes its own slice of the global batch (rows [i*b, (i+1)*b) for
  process i); on one host this is an ordinary sharded device_put.
  """
  def put(x):
    x = np.asarray(x)
    global_shape = (x.shape[0] * jax.process_count(),) + x.shape[1:]
    sharding = batch_sharding(mesh, rules, global_shape)
    if jax.process_count() == 1:
      return jax.device_put(x, sharding)
    return jax.make_array_from_process_local_data(sharding, x, global_shape)
  return jax.tree.map(put, batch)


def put_replicated_value(x: Any, mesh: Mesh, rules: ShardingRules, batch_major: bool = True) -> Any:
  """A host array that every process holds in full -> a global array (batch-sharded).

  Works in multi-process runs too: each device's slice is cut from the local copy.
  """
  def put(a):
    a = np.asarray(a)
    sh = batch_sharding(mesh, rules, a.shape) if (batch_major and a.ndim) else replicated(mesh)
    return jax.make_array_from_callback(a.shape, sh, lambda idx: a[idx])
  return jax.tree.map(put, x)
