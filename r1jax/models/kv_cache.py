"""KV cache: a list (one entry per layer) of {"k", "v"} arrays of shape [B, S, K, H].

The cache is a plain pytree so the sampler can carry it through `lax.while_loop`
and donate it. Its dtype is configurable: bfloat16 halves its memory.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding

from r1jax.models.config import ModelConfig
from r1jax.sharding import ShardingRules, named_sharding

CACHE_LOGICAL_AXES = ("batch", "cache_seq", "act_kv_heads", "head_dim")


def cache_shape(cfg: ModelConfig, batch: int, length: int) -> tuple[int, int, int, int]:
  return (batch, length, cfg.num_kv_heads, cfg.head_dim)


def init_cache(cfg: ModelConfig, batch: int, length: int, dtype=jnp.bfloat16) -> list[dict]:
  """Zeros [B, S, K, H] per layer (call inside jit with out_shardings to shard)."""
  shape = cache_shape(cfg, batch, length)
  return [{"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}
          for _ in range(cfg.num_layers)]


def cache_shardings(cfg: ModelConfig, batch: int, length: int, mesh: Mesh,
                    rules: ShardingRules) -> list[dict[str, NamedSharding]]:
  """Batch over the data axes, kv heads over `tensor` (when they divide)."""
  s = named_sharding(CACHE_LOGICAL_AXES, cache_shape(cfg, batch, length), rules, mesh)
  return [{"k": s, "v": s} for _ in range(cfg.num_layers)]


def cache_bytes(cfg: ModelConfig, batch: int, length: int, dtype=jnp.bfloat16) -> int:
  b, s, k, h = cache_shape(cfg, batch, length)
  return 2 * cfg.num_layers * b * s * k * h * jnp.dtype(dtype).itemsize


def make_cache(cfg: ModelConfig, batch: int, length: int, dtype=jnp.bfloat16,
               mesh: Mesh | None = None, rules: ShardingRules | None = None) -> list[dict]:
  """Allocates the cache directly sharded (never whole on one device)."""
  if mesh is None:
    return init_cache(cfg, batch, length, dtype)
  shardings = cache_shardings(cfg, batch, length, mesh, rules or ShardingRules())
  return jax.jit(lambda: init_cache(cfg, batch, length, dtype), out_shardings=shardings)()
