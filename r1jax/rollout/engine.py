"""Continuous-batching rollout engine: a fixed number of decode slots, refilled as rows end.

Shape suffixes: B prompts (after batch bucketing), G samples per prompt, R = B * G
rows (requests), N decode slots, P prompt length (after bucketing), L =
max_new_tokens, S = P + L cache slots per decode slot, V vocab, W longest stop
sequence.

The static `Sampler` decodes all R rows together until the longest ends, so a row
that stops early keeps its KV region and its share of every step. Here the KV cache
holds N slots (N <= R): each slot holds one row at a time, at its own step (the
model takes a per-row `cache_index`), and when the row ends (EOS, stop sequence or
its token budget) the slot takes the next waiting row. Memory is N x S, not R x S.

Flow of `Engine.generate` (same arguments and `Rollout` as `Sampler.generate`):
  1. Host: `bucket_prompts`, as the sampler.
  2. `prefill` (jit): one forward of the B prompts into a [B, P] prompt cache (kept
     for the whole call; a row's prompt KV is copied from it into a slot when the
     row is admitted, so the G rows of a prompt share one prefill) and token 0 of
     every row drawn from its prompt's last logits, exactly as the sampler does.
  3. Decode in chunks: a refill (free slots take the next waiting rows, in request
     order), then up to `refill_every` single-token steps over the N slots (fewer
     when no slot is live any more). `refill="device"`: one jitted `lax.while_loop`
     over chunks runs to the end; `refill="host"`: a jitted chunk is called from a
     host loop that reads one scalar per chunk.
Each drawn token is written at [row, step of that row] of [R, L] buffers, so results
come back in request order. Row r's key at its step s is fold_in(fold_in(rng, s), r),
the sampler's, so a row's tokens do not depend on which slot or when it ran.
All shapes are static: programs are cached per (bucketed batch, bucketed prompt
length, SamplerConfig, slot count).

Slot count: `EngineConfig.num_slots`, or with 'auto' (the default) one slot per row while
the KV cache fits a memory budget (`kv_budget`). A call in which every row has a slot
has nothing to refill and runs as one static wave through `Sampler` (bitwise its
output, none of the per-row bookkeeping above).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from r1jax.models import kv_cache
from r1jax.models.config import ModelConfig
from r1jax.models.factory import merge_params
from r1jax.rollout import sampling
from r1jax.rollout.sampler import (FINISH_LENGTH, FINISH_STOP, Rollout, Sampler, SamplerConfig,
                                   _replicate_key, bucket_prompts, stop_hits)
from r1jax.sharding import ShardingRules, batch_sharding

REFILL_MODES = ("device", "host")
ENGINES = ("static", "continuous")   # the stage configs' `engine` switch
DEFAULT_ENGINE = "continuous"        # the one default of every stage's `engine` field
AUTO_SLOTS = 0                       # num_slots 0 (or 'auto'): sized per call, see `auto_slots`


@dataclasses.dataclass(frozen=True)
class EngineConfig:
  """Engine settings (static; the sampling settings stay in `SamplerConfig`)."""
  # N decode slots, capped at the call's row count R. 0 / 'auto': one slot per row, capped
  # by the KV-cache budget below. A call whose rows all get a slot runs as one static wave.
  num_slots: int | str = AUTO_SLOTS
  refill_every: int = 8       # decode steps between refill checks
  refill: str = "device"      # "device": one while_loop; "host": chunks + one scalar sync each
  # KV budget of 'auto' on a GPU/TPU: this share of the device's memory_stats()['bytes_limit'],
  # minus the params' bytes on that device (the rest is left to the trainer's state,
  # activations and the engine's other buffers).
  memory_fraction: float = 0.5
  # KV budget of 'auto' where the device reports no memory stats (CPU), over all devices.
  host_kv_bytes: int = 4 << 30

  def __post_init__(self):
    if self.num_slots == "auto":
      object.__setattr__(self, "num_slots", AUTO_SLOTS)
    if not isinstance(self.num_slots, int) or self.num_slots < 0 or self.refill_every < 1:
      raise ValueError(f"num_slots must be >= 0 (0 / 'auto' = sized automatically) and "
                       f"refill_every >= 1, got {self.num_slots!r}, {self.refill_every}")
    if self.refill not in REFILL_MODES:
      raise ValueError(f"refill must be one of {REFILL_MODES}, got {self.refill!r}")
    if not 0 < self.memory_fraction <= 1 or self.host_kv_bytes < 1:
      raise ValueError(f"memory_fraction must be in (0, 1] and host_kv_bytes >= 1, got "
                       f"{self.memory_fraction}, {self.host_kv_bytes}")


def slot_bytes(model_cfg: ModelConfig, seq: int, cache_dtype) -> int:
  """Device bytes one decode slot of S = `seq` cache positions holds: its K/V in every layer
  and its [S] int32 validity mask."""
  return kv_cache.cache_bytes(model_cfg, 1, seq, cache_dtype) + 4 * seq


def auto_slots(rows: int, per_slot: int, budget: int, multiple: int = 1) -> int:
  """Slots for a call of `rows` rows: all of them when `rows * per_slot` fits `budget`,
  else as many as fit, rounded down to a multiple of `multiple` (the batch shards), >= 1."""
  fit = budget // max(per_slot, 1)
  if fit >= rows:
    return rows
  if fit < 1:
    logging.warning("One decode slot (%d bytes) exceeds the KV budget (%d bytes): using 1 slot",
                    per_slot, budget)
  return max(fit // multiple * multiple, min(multiple, rows), 1)


def _memory_stats(dev) -> dict | None:
  try:
    return dev.memory_stats()
  except Exception:  # pylint: disable=broad-except  (backends without the query)
    return None


def kv_budget(params: Any, mesh: Mesh | None, rules: ShardingRules | None,
              engine: EngineConfig) -> tuple[int, int]:
  """(KV-cache bytes for all slots together, batch shards) for `num_slots='auto'`.

  With memory stats (GPU/TPU): `memory_fraction * bytes_limit` minus the params' bytes on
  this process's first device of the mesh, times the number of shards the slot axis is split over (the cache's
  rows are sharded over the batch axes; kv heads over `tensor` are not counted, so this is
  conservative). Without (CPU): `host_kv_bytes`.
  """
  # This process's first device of the mesh: with several processes each asks its own
  # device (same kind and params layout on every host, so every process gets the same N).
  dev = (next(d for d in mesh.devices.flat if d.process_index == jax.process_index())
         if mesh is not None else jax.devices()[0])
  shards = 1
  if mesh is not None:
    axes = batch_sharding(mesh, rules or ShardingRules(), (mesh.devices.size,)).spec[0]
    for a in (axes if isinstance(axes, tuple) else (axes,) if axes else ()):
      shards *= mesh.shape[a]
  stats = _memory_stats(dev)
  if not stats or "bytes_limit" not in stats:
    return engine.host_kv_bytes, shards
  on_dev = sum(s.data.nbytes for x in jax.tree.leaves(params) if isinstance(x, jax.Array)
               for s in x.addressable_shards if s.device == dev)
  per_dev = int(engine.memory_fraction * stats["bytes_limit"]) - on_dev
  return max(per_dev, 0) * shards, shards


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _State:
  """Engine carry. Slot arrays are [N]; row buffers [R, ...] are in request order."""
  iters: jax.Array               # [] int32, decode steps run
  next_row: jax.Array            # [] int32, first row not yet admitted
  slot_row: jax.Array            # [N] int32, row held (-1 = never used)
  slot_step: jax.Array           # [N] int32, tokens the row has drawn; token step-1 is fed next
  slot_done: jax.Array           # [N] bool, free (row ended, or never used)
  tokens: jax.Array              # [N] int32, last drawn token
  kv_mask: jax.Array             # [N, S] int32, valid cache slots
  prompt_lens: jax.Array         # [N] int32
  recent: jax.Array              # [N, W] int32, last W drawn tokens (-1 = none)
  rng: jax.Array                 # key
  budgets: jax.Array             # [R] int32, tokens a row may draw (<= L)
  done0: jax.Array               # [R] bool, row ended at token 0 (drawn in prefill)
  stopped: jax.Array             # [R] bool, ended on EOS / stop sequence
  completion_ids: jax.Array      # [R, L]
  completion_mask: jax.Array     # [R, L]
  logprobs: jax.Array            # [R, L]
  sampling_logprobs: jax.Array   # [R, L]


def _keys(rng, steps_N, rows_N):
  """Row r's key at its step s: fold_in(fold_in(rng, s), r), as `sampling.row_keys`."""
  return jax.vmap(lambda s, r: jax.random.fold_in(jax.random.fold_in(rng, s), r.astype(jnp.uint32))
                  )(steps_N, rows_N)


@dataclasses.dataclass
class _Programs:
  prefill: Callable   # (params, ids [B,P], mask [B,P], rng, budgets [R]) -> (pcache, state, ids_RP, mask_RP)
  init: Callable      # () -> cache [N, S]
  run: Callable       # (params, pcache, pmask, cache, state) -> (state, cache); cache donated
  finish: Callable    # (state) -> Rollout
  slots: int


class Engine:
  """Continuous-batching drop-in for `Sampler` (same `generate` and `Rollout`).

  A call whose rows all get a slot (N >= R, e.g. `num_slots='auto'` when the KV budget
  holds every row) has nothing to refill: it runs as one static wave through the
  `Sampler`'s own programs, so its outputs are bitwise the static sampler's and it pays
  none of the engine's per-row bookkeeping. Calls with more rows than slots (or with
  per-row `budgets`) decode through the slots.

  Args: as `Sampler`, plus `engine` (`EngineConfig`).
  """

  def __init__(self, graphdef: nnx.GraphDef, model_cfg: ModelConfig, config: SamplerConfig,
               mesh: Mesh | None = None, rules: ShardingRules | None = None,
               engine: EngineConfig | None = None):
    self.graphdef = graphdef
    self.model_cfg = model_cfg
    self.config = config
    self.engine = engine or EngineConfig()
    self.mesh = mesh
    self.rules = (rules or ShardingRules()) if mesh is not None else rules
    self._programs: dict[tuple, _Programs] = {}
    self._traces = 0        # (re)traces of the engine's own programs
    self.static = Sampler(graphdef, model_cfg, config, mesh, rules)   # the one-wave path
    self._budget = None     # (KV bytes, batch shards) for num_slots='auto', set on first use
    self.last_decode_steps = None  # [] int32 device array: decode steps of the last call
    self.last_static = None        # whether the last call ran as one static wave

  @property
  def num_traces(self) -> int:
    """(Re)traces of every program, the engine's and its static wave's."""
    return self._traces + self.static.num_traces

  def num_slots(self, params: Any, batch: int, prompt_len: int,
                config: SamplerConfig | None = None) -> int:
    """N for a bucketed [batch, prompt_len] call: `num_slots` (or, for 'auto', as many as
    fit the KV budget), capped at the row count. Fixed per bucket: no recompiles."""
    config = config or self.config
    rows = batch * config.num_samples
    if self.engine.num_slots != AUTO_SLOTS:
      return min(self.engine.num_slots, rows)
    if self._budget is None:
      self._budget = kv_budget(params, self.mesh, self.rules, self.engine)
    per_slot = slot_bytes(self.model_cfg, prompt_len + config.max_new_tokens, config.cache_dtype)
    return auto_slots(rows, per_slot, *self._budget)

  # ---------------------------------------------------------------- public
  def generate(self, params: Any, prompt_ids, prompt_mask, rng: jax.Array,
               config: SamplerConfig | None = None, budgets=None) -> Rollout:
    """As `Sampler.generate`; `budgets` ([B*G] ints <= max_new_tokens, optional) caps
    each row's tokens (a row that reaches its budget ends with FINISH_LENGTH)."""
    config = config or self.config
    ids, mask, b = bucket_prompts(prompt_ids, prompt_mask, config)
    g, length = config.num_samples, config.max_new_tokens
    r_pad = ids.shape[0] * g
    full = np.full((r_pad,), length, np.int32)
    if budgets is not None:
      budgets = np.asarray(budgets, np.int32).reshape(-1)
      if budgets.shape != (b * g,) or budgets.min() < 1 or budgets.max() > length:
        raise ValueError(f"budgets must be {b * g} ints in [1, {length}]")
      full[:b * g] = budgets
    self.last_static = budgets is None and self.num_slots(params, *ids.shape, config) >= r_pad
    if self.last_static:   # a slot for every row: nothing to refill, one static wave
      rollout = self.static.generate(params, prompt_ids, prompt_mask, rng, config)
      self.last_decode_steps = rollout.num_steps - 1   # token 0 is drawn in prefill
      return rollout
    progs = self.programs(params, ids.shape[0], ids.shape[1], config)
    if self.mesh is not None:
      ids = jax.device_put(ids, batch_sharding(self.mesh, self.rules, ids.shape))
      mask = jax.device_put(mask, batch_sharding(self.mesh, self.rules, mask.shape))
      rng = _replicate_key(rng, NamedSharding(self.mesh, P()))
    pcache, state, ids_RP, mask_RP = progs.prefill(params, ids, mask, rng, full)
    cache = progs.init()
    if self.engine.refill == "device":
      state, cache = progs.run(params, pcache, mask, cache, state)
    else:
      while True:
        state, cache = progs.run(params, pcache, mask, cache, state)
        # The one host sync per chunk: is any row still live or waiting?
        if not bool(jnp.any(~state.slot_done) | (state.next_row < r_pad)):
          break
    del cache
    self.last_decode_steps = state.iters
    rollout = dataclasses.replace(progs.finish(state), prompt_ids=ids_RP, prompt_mask=mask_RP)
    if r_pad != b * g:  # drop the batch-bucket padding rows (they sit at the end)
      rollout = Rollout(**{f.name: (getattr(rollout, f.name) if f.name == "num_steps"
                                    else getattr(rollout, f.name)[:b * g])
                           for f in dataclasses.fields(Rollout)})
    return rollout

  def programs(self, params: Any, batch: int, prompt_len: int,
               config: SamplerConfig | None = None) -> _Programs:
    """The (cached) continuous-batching programs for a bucketed [batch, prompt_len]."""
    config = (config or self.config).program_key()
    slots = self.num_slots(params, batch, prompt_len, config)
    key = (batch, prompt_len, config, slots)
    if key not in self._programs:
      self._programs[key] = self._build(params, batch, prompt_len, config, slots)
    return self._programs[key]

  # ---------------------------------------------------------------- programs
  def _build(self, params, b: int, p: int, config: SamplerConfig, n: int) -> _Programs:
    cfg, g, length = self.model_cfg, config.num_samples, config.max_new_tokens
    r, s = b * g, p + length
    w = max((len(q) for q in config.stop_sequences), default=1)
    cache_dtype = jnp.dtype(config.cache_dtype)
    graphdef, every, mode = self.graphdef, self.engine.refill_every, self.engine.refill

    def prefill(params, ids_BP, mask_BP, rng, budgets_R):
      self._traces += 1
      model = merge_params(graphdef, params)
      positions_BP = jnp.maximum(jnp.cumsum(mask_BP, axis=1) - 1, 0)
      pcache = kv_cache.init_cache(cfg, b, p, cache_dtype)
      h_BPD, pcache = model(ids_BP, positions_BP, mask_BP, cache=pcache, cache_index=0,
                            return_hidden=True)
      logits_RV = jnp.repeat(model.unembed(h_BPD[:, -1:])[:, 0], g, axis=0)
      ids_RP, mask_RP = jnp.repeat(ids_BP, g, axis=0), jnp.repeat(mask_BP, g, axis=0)
      # Token 0 of every row, with the sampler's keys (step 0, row r).
      keys = None if config.greedy else sampling.row_keys(rng, 0, r)
      tok_R, lp_R, slp_R = sampling.sample(
          logits_RV, keys, temperature=config.temperature, top_p=config.top_p,
          top_k=config.top_k, greedy=config.greedy, top_p_candidates=config.top_p_candidates)
      real_R = jnp.sum(mask_RP, axis=1) > 0   # batch-bucket padding rows draw nothing
      hit_R, _ = stop_hits(tok_R, jnp.full((r, w), -1, jnp.int32), config)
      col0 = lambda x, fill, dtype: jnp.full((r, length), fill, dtype).at[:, 0].set(
          jnp.where(real_R, x, fill).astype(dtype))
      budgets_R = jnp.where(real_R, budgets_R, 1)
      state = _State(
          iters=jnp.int32(0), next_row=jnp.int32(0),
          slot_row=jnp.full((n,), -1, jnp.int32), slot_step=jnp.ones((n,), jnp.int32),
          slot_done=jnp.ones((n,), bool), tokens=jnp.zeros((n,), jnp.int32),
          kv_mask=jnp.zeros((n, s), jnp.int32), prompt_lens=jnp.zeros((n,), jnp.int32),
          recent=jnp.full((n, w), -1, jnp.int32), rng=rng, budgets=budgets_R,
          done0=~real_R | hit_R | (budgets_R <= 1), stopped=real_R & hit_R,
          completion_ids=col0(tok_R, config.pad_id, jnp.int32),
          completion_mask=col0(jnp.ones((r,), jnp.int32), 0, jnp.int32),
          logprobs=col0(lp_R, 0.0, jnp.float32), sampling_logprobs=col0(slp_R, 0.0, jnp.float32))
      return pcache, state, ids_RP, mask_RP

    def refill(st: _State, pcache, pmask_BP, cache):
      """Free slots take the next waiting rows (in request order); their prompt KV is
      copied from the prompt cache, and token 0 (drawn in prefill) is fed next."""
      free_N = st.slot_done
      cand_N = st.next_row + jnp.cumsum(free_N.astype(jnp.int32)) - 1
      take_N = free_N & (cand_N < r)
      row_N = jnp.where(take_N, cand_N, st.slot_row)
      pidx_N = jnp.maximum(row_N, 0) // g
      def copy(x, name):   # the prompt region [0, P) of each taking slot
        axis = kv_cache.SEQ_AXIS[name]
        old = jax.lax.slice_in_dim(x, 0, p, axis=axis)
        new = jnp.take(pcache_layer[name], pidx_N, axis=0).astype(x.dtype)
        sel = take_N.reshape((n,) + (1,) * (x.ndim - 1))
        return jax.lax.dynamic_update_slice_in_dim(x, jnp.where(sel, new, old), 0, axis)
      new_cache = []
      for layer, pcache_layer in zip(cache, pcache):
        new_cache.append({name: copy(layer[name], name) for name in ("k", "v")})
      pm_NP = jnp.take(pmask_BP, pidx_N, axis=0)
      kv_mask = jnp.where(take_N[:, None], jnp.pad(pm_NP, ((0, 0), (0, length))), st.kv_mask)
      tok0_N = st.completion_ids[jnp.maximum(row_N, 0), 0]
      recent0 = jnp.full((n, w), -1, jnp.int32).at[:, -1].set(tok0_N)
      st = dataclasses.replace(
          st, next_row=st.next_row + jnp.sum(take_N.astype(jnp.int32)), slot_row=row_N,
          slot_step=jnp.where(take_N, 1, st.slot_step),
          slot_done=jnp.where(take_N, st.done0[jnp.maximum(row_N, 0)], st.slot_done),
          tokens=jnp.where(take_N, tok0_N, st.tokens), kv_mask=kv_mask,
          prompt_lens=jnp.where(take_N, jnp.sum(pm_NP, axis=1), st.prompt_lens),
          recent=jnp.where(take_N[:, None], recent0, st.recent))
      return st, new_cache

    def step(model, st: _State, cache):
      """One token for every live slot, written at [its row, its step]."""
      live_N = ~st.slot_done
      slot_N = jnp.minimum(p + st.slot_step - 1, s - 1)   # cache slot of the token fed now
      kv_mask = st.kv_mask.at[jnp.arange(n), slot_N].set(1)
      positions_N1 = (st.prompt_lens + st.slot_step - 1)[:, None]
      logits_N1V, cache = model(st.tokens[:, None], positions_N1, kv_mask, cache=cache,
                                cache_index=slot_N)
      keys = None if config.greedy else _keys(st.rng, st.slot_step, jnp.maximum(st.slot_row, 0))
      tok_N, lp_N, slp_N = sampling.sample(
          logits_N1V[:, 0], keys, temperature=config.temperature, top_p=config.top_p,
          top_k=config.top_k, greedy=config.greedy, top_p_candidates=config.top_p_candidates)
      hit_N, recent = stop_hits(tok_N, st.recent, config)
      row_N = jnp.where(live_N, st.slot_row, r)            # r: out of bounds, dropped
      col_N = jnp.minimum(st.slot_step, length - 1)
      put = lambda buf, x: buf.at[row_N, col_N].set(x.astype(buf.dtype), mode="drop")
      budget_N = st.budgets[jnp.maximum(st.slot_row, 0)]
      ended_N = live_N & (hit_N | (st.slot_step + 1 >= budget_N))
      st = dataclasses.replace(
          st, iters=st.iters + 1, slot_step=st.slot_step + live_N.astype(jnp.int32),
          slot_done=st.slot_done | ended_N, tokens=jnp.where(live_N, tok_N, st.tokens),
          kv_mask=kv_mask, recent=jnp.where(live_N[:, None], recent, st.recent),
          stopped=st.stopped.at[row_N].set(hit_N, mode="drop"),
          completion_ids=put(st.completion_ids, tok_N),
          completion_mask=put(st.completion_mask, jnp.ones_like(tok_N)),
          logprobs=put(st.logprobs, lp_N), sampling_logprobs=put(st.sampling_logprobs, slp_N))
      return st, cache

    def pending(st: _State):
      return jnp.any(~st.slot_done) | (st.next_row < r)

    def run(params, pcache, pmask_BP, cache, st: _State):
      self._traces += 1
      model = merge_params(graphdef, params)

      def chunk(carry):
        """Refill, then up to `every` steps (fewer when no slot is live any more)."""
        st, cache = refill(carry[0], pcache, pmask_BP, carry[1])
        stop_at = st.iters + every
        return jax.lax.while_loop(lambda c: (c[0].iters < stop_at) & jnp.any(~c[0].slot_done),
                                  lambda c: step(model, *c), (st, cache))
      if mode == "device":   # nested loops, not a cond per step: no branch copies the cache
        return jax.lax.while_loop(lambda c: pending(c[0]), chunk, (st, cache))
      return chunk((st, cache))

    def finish(st: _State) -> Rollout:
      self._traces += 1
      lengths = jnp.sum(st.completion_mask, axis=1).astype(jnp.int32)
      empty = jnp.zeros((r, 0), jnp.int32)
      return Rollout(prompt_ids=empty, prompt_mask=empty, completion_ids=st.completion_ids,
                     completion_mask=st.completion_mask, lengths=lengths,
                     finish_reason=jnp.where(st.stopped, FINISH_STOP, FINISH_LENGTH
                                             ).astype(jnp.int32),
                     logprobs=st.logprobs, sampling_logprobs=st.sampling_logprobs,
                     num_steps=jnp.max(lengths))

    init = lambda: kv_cache.init_cache(cfg, n, s, cache_dtype)
    if self.mesh is None:
      return _Programs(jax.jit(prefill), jax.jit(init), jax.jit(run, donate_argnums=(3, 4)),
                       jax.jit(finish), n)

    mesh, rules = self.mesh, self.rules
    rep_s = NamedSharding(mesh, P())
    bs = lambda *shape: batch_sharding(mesh, rules, shape)
    param_s = jax.tree.map(lambda x: x.sharding if isinstance(x, jax.Array) else rep_s, params)
    cache_s = kv_cache.cache_shardings(cfg, n, s, mesh, rules)
    pcache_s = kv_cache.cache_shardings(cfg, b, p, mesh, rules)
    # Slots over the batch axes; row buffers too (a step scatters N rows into them).
    state_s = _State(
        iters=rep_s, next_row=rep_s, slot_row=bs(n), slot_step=bs(n), slot_done=bs(n),
        tokens=bs(n), kv_mask=bs(n, s), prompt_lens=bs(n), recent=bs(n, w), rng=rep_s,
        budgets=bs(r), done0=bs(r), stopped=bs(r), completion_ids=bs(r, length),
        completion_mask=bs(r, length), logprobs=bs(r, length), sampling_logprobs=bs(r, length))
    rollout_s = Rollout(
        prompt_ids=bs(r, 0), prompt_mask=bs(r, 0), completion_ids=bs(r, length),
        completion_mask=bs(r, length), lengths=bs(r), finish_reason=bs(r),
        logprobs=bs(r, length), sampling_logprobs=bs(r, length), num_steps=rep_s)
    prefill_jit = jax.jit(prefill, in_shardings=(param_s, bs(b, p), bs(b, p), rep_s, bs(r)),
                          out_shardings=(pcache_s, state_s, bs(r, p), bs(r, p)))
    run_jit = jax.jit(run, in_shardings=(param_s, pcache_s, bs(b, p), cache_s, state_s),
                      out_shardings=(state_s, cache_s), donate_argnums=(3, 4))
    return _Programs(prefill_jit, jax.jit(init, out_shardings=cache_s), run_jit,
                     jax.jit(finish, in_shardings=(state_s,), out_shardings=rollout_s), n)


def make_sampler(graphdef: nnx.GraphDef, model_cfg: ModelConfig, config: SamplerConfig,
                 mesh: Mesh | None = None, rules: ShardingRules | None = None, *,
                 section: Any = None):
  """The rollout sampler a stage config asks for: `section` (an `RLConfig` or a
  `SamplerSection`) has `engine` ('static' -> `Sampler`, 'continuous' -> `Engine`) and
  `engine_slots`, `engine_refill_every`, `engine_refill`; None = `DEFAULT_ENGINE` with the
  `EngineConfig` defaults."""
  kind = getattr(section, "engine", DEFAULT_ENGINE) if section is not None else DEFAULT_ENGINE
  if kind == "static":
    return Sampler(graphdef, model_cfg, config, mesh, rules)
  if kind != "continuous":
    raise ValueError(f"engine={kind!r} is not one of {ENGINES}")
  return Engine(graphdef, model_cfg, config, mesh, rules,
                engine_config(section) if section is not None else None)


def engine_config(section: Any) -> EngineConfig:
  """`EngineConfig` from a config section's `engine_*` fields."""
  return EngineConfig(num_slots=section.engine_slots, refill_every=section.engine_refill_every,
                      refill=section.engine_refill)
