"""KV cache: a list (one entry per layer) of {"k": [B, K, H, S], "v": [B, K, S, H]} arrays.

The layouts are the ones attention multiplies without a transpose: scores are
q [B, K, G*T, H] @ k [B, K, H, S] and the output probs [B, K, G*T, S] @ v [B, K, S, H],
both plain batched matmuls over (B, K). With the Hugging Face order [B, S, K, H] the
compiler copied the whole cache of every layer into this order at every decode step
(see docs/performance.md). New tokens are written at slot positions along S.

The cache is a plain pytree so the sampler can carry it through `lax.while_loop`
and donate it. Its dtype is configurable: bfloat16 halves its memory.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding

from r1jax.models.config import ModelConfig
from r1jax.sharding import ShardingRules, named_sharding

CACHE_LOGICAL_AXES = {"k": ("batch", "act_kv_heads", "head_dim", "cache_seq"),
                      "v": ("batch", "act_kv_heads", "cache_seq", "head_dim")}
SEQ_AXIS = {"k": 3, "v": 2}  # where the S (slot) axis is in each array


def cache_shape(cfg: ModelConfig, batch: int, length: int) -> tuple[int, int, int, int]:
  """[B, S, K, H]: the logical extent of one of k / v (see `cache_shapes` for layouts)."""
  return (batch, length, cfg.num_kv_heads, cfg.head_dim)


def cache_shapes(cfg: ModelConfig, batch: int, length: int) -> dict[str, tuple[int, ...]]:
  b, s, k, h = cache_shape(cfg, batch, length)
  return {"k": (b, k, h, s), "v": (b, k, s, h)}


def init_cache(cfg: ModelConfig, batch: int, length: int, dtype=jnp.bfloat16) -> list[dict]:
  """Zeros k [B, K, H, S] and v [B, K, S, H] per layer (inside jit with out_shardings to shard)."""
  shapes = cache_shapes(cfg, batch, length)
  return [{n: jnp.zeros(shapes[n], dtype) for n in ("k", "v")} for _ in range(cfg.num_layers)]


def cache_shardings(cfg: ModelConfig, batch: int, length: int, mesh: Mesh,
                    rules: ShardingRules) -> list[dict[str, NamedSharding]]:
  """Batch over the data axes, kv heads over `tensor` (when they divide)."""
  shapes = cache_shapes(cfg, batch, length)
  s = {n: named_sharding(CACHE_LOGICAL_AXES[n], shapes[n], rules, mesh) for n in ("k", "v")}
  return [dict(s) for _ in range(cfg.num_layers)]


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
