"""Creating models directly sharded, and crossing jit boundaries as plain pytrees.

The data flow is: `ModelConfig` -> abstract model (`nnx.eval_shape`, no memory)
-> per-parameter `NamedSharding` from the logical axis names -> a jitted init
whose `out_shardings` places every parameter straight onto its shards. Nothing
is ever materialised whole on one device.

Outside jit a model is split once into (graphdef, params), where params is a
nested dict of arrays (a plain pytree: optax, orbax and safetensors handle it);
inside jit `nnx.merge(graphdef, params)` rebuilds the module.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from r1jax.models.config import ModelConfig
from r1jax.models.transformer import Transformer
from r1jax.sharding import ShardingRules, named_sharding

Params = dict[str, Any]


def _is_var(x) -> bool:
  return isinstance(x, nnx.Variable)


def abstract_model(cfg: ModelConfig, mesh: Mesh | None = None,
                   rules: ShardingRules | None = None) -> Transformer:
  """The model with ShapeDtypeStruct parameters: shapes and metadata, no memory."""
  return nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0), rules=rules, mesh=mesh))


def logical_axes_tree(model: Transformer) -> Params:
  """Pure dict (same structure as params) of each parameter's logical axis names."""
  state = nnx.state(model, nnx.Param)
  axes = jax.tree.map(lambda v: v.replace(tuple(v.get_metadata()["logical_axes"])), state,
                      is_leaf=_is_var)
  return nnx.to_pure_dict(axes)


def param_shardings(model: Transformer, mesh: Mesh, rules: ShardingRules) -> Params:
  """Pure dict of `NamedSharding`s for the params of (an abstract) `model`."""
  state = nnx.state(model, nnx.Param)

  def one(v):
    return v.replace(named_sharding(v.get_metadata()["logical_axes"], v.shape, rules, mesh))
  return nnx.to_pure_dict(jax.tree.map(one, state, is_leaf=_is_var))


def create_model(cfg: ModelConfig, rng: jax.Array | int = 0, mesh: Mesh | None = None,
                 rules: ShardingRules | None = None) -> Transformer:
  """Randomly initialised model whose parameters are created on their shards."""
  if isinstance(rng, int):
    rng = jax.random.key(rng)
  if mesh is None:
    return Transformer(cfg, rngs=nnx.Rngs(params=rng))
  rules = rules or ShardingRules()
  abstract = abstract_model(cfg, mesh, rules)
  graphdef, _ = nnx.split(abstract)
  shardings = param_shardings(abstract, mesh, rules)

  @jax.jit
  def init(key):
    model = Transformer(cfg, rngs=nnx.Rngs(params=key), rules=rules, mesh=mesh)
    return nnx.to_pure_dict(nnx.state(model, nnx.Param))

  params = jax.jit(init, out_shardings=shardings)(rng)
  return nnx.merge(graphdef, params)


def split_params(model: Transformer) -> tuple[nnx.GraphDef, Params]:
  """(graphdef, params as a pure nested dict of arrays)."""
  graphdef, state = nnx.split(model)
  return graphdef, nnx.to_pure_dict(state)


def merge_params(graphdef: nnx.GraphDef, params: Params) -> Transformer:
  """Inverse of `split_params`; accepts dicts whose integer keys became strings."""
  return nnx.merge(graphdef, nnx.restore_int_paths(params))


def count_params(params_or_model: Any) -> int:
  if isinstance(params_or_model, nnx.Module):
    params_or_model = nnx.to_pure_dict(nnx.state(params_or_model, nnx.Param))
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params_or_model)))
