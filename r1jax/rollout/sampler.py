"""Group-rollout sampler: one jitted prefill, then one `lax.while_loop` of decode steps.

Shape suffixes: B prompts (after batch bucketing), G samples per prompt,
R = B * G rows, P prompt length (after bucketing), L = max_new_tokens,
S = P + L cache slots, V vocab, W longest stop sequence.

Flow of `Sampler.generate` (details and memory figures in docs/sampler.md):
  1. Host: drop all-padding leading columns, left-pad the prompts to the smallest
     prompt-length bucket and the batch to the smallest batch bucket. Padded rows
     have an all-zero mask; they start `done` and are dropped from the output.
  2. `prefill` (jit): one forward of the B prompts into a [B, P] cache, repeated
     G times into the [R, S] decode cache (prefill costs B, not R, prompts),
     and the first token sampled from each row's last prompt position.
  3. `decode` (jit, the state donated): a `lax.while_loop` of single-token steps
     over `_State` until every row is done or L tokens were drawn.
Programs are cached per (bucketed batch, bucketed length, SamplerConfig), so a
training run with fixed buckets compiles a small, fixed number of programs.
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
from r1jax.rollout.buckets import choose_bucket
from r1jax.sharding import ShardingRules, batch_sharding

FINISH_STOP = 0     # EOS id or a stop sequence
FINISH_LENGTH = 1   # ran out of max_new_tokens (truncated)


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
  """Sampling settings; frozen and hashable (it is static under jit)."""
  num_samples: int = 1            # G completions per prompt
  max_new_tokens: int = 128
  temperature: float = 1.0
  top_p: float = 1.0
  top_k: int = 0                  # 0 = off
  # top-p without top-k looks for the nucleus among the top_p_candidates largest logits
  # (lax.top_k) instead of sorting the whole vocabulary; 0 = exact (full sort).
  top_p_candidates: int = 1024
  greedy: bool = False
  eos_ids: tuple[int, ...] = ()
  stop_sequences: tuple[tuple[int, ...], ...] = ()   # token-id sequences, e.g. "</answer>"
  pad_id: int = 0
  cache_dtype: str = "bfloat16"
  prompt_len_buckets: tuple[int, ...] = ()   # prompts left-padded to the smallest bucket >= length
  batch_buckets: tuple[int, ...] = ()        # prompt count padded to the smallest bucket >= B

  def __post_init__(self):
    # Lists (from YAML/ml_collections configs) become tuples so the config stays hashable.
    for name in ("eos_ids", "prompt_len_buckets", "batch_buckets"):
      object.__setattr__(self, name, tuple(int(x) for x in getattr(self, name)))
    object.__setattr__(self, "stop_sequences",
                       tuple(tuple(int(t) for t in s) for s in self.stop_sequences))
    if self.num_samples < 1 or self.max_new_tokens < 1:
      raise ValueError("num_samples and max_new_tokens must be >= 1")
    if not self.greedy and self.temperature <= 0:
      raise ValueError(f"temperature must be > 0 (or greedy=True), got {self.temperature}")
    if not 0.0 < self.top_p <= 1.0:
      raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
    if self.top_k < 0 or self.top_p_candidates < 0:
      raise ValueError(f"top_k and top_p_candidates must be >= 0, got {self.top_k}, "
                       f"{self.top_p_candidates}")
    if any(len(s) == 0 for s in self.stop_sequences):
      raise ValueError("stop sequences must be non-empty")
    jnp.dtype(self.cache_dtype)  # fails early on a bad dtype name

  def program_key(self) -> "SamplerConfig":
    """The fields a compiled program depends on (buckets only choose shapes)."""
    return dataclasses.replace(self, prompt_len_buckets=(), batch_buckets=())


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Rollout:
  """Output of `Sampler.generate` (device arrays; rows i*G .. i*G+G-1 are prompt i).

  completion_mask is 1 on generated tokens up to and including the EOS / last
  stop-sequence token; completion_ids hold pad_id after it. logprobs are under
  log_softmax(logits / T) (T = 1 when greedy), sampling_logprobs under the
  truncated distribution actually drawn from; both are 0 where the mask is 0.
  num_steps is the number of tokens drawn (1 from the prefill plus one per
  decode iteration): < L when the loop stopped early.
  """
  prompt_ids: jax.Array          # [R, P] int32, as fed (after bucketing)
  prompt_mask: jax.Array         # [R, P] int32
  completion_ids: jax.Array      # [R, L] int32
  completion_mask: jax.Array     # [R, L] int32
  lengths: jax.Array             # [R] int32
  finish_reason: jax.Array       # [R] int32, FINISH_STOP or FINISH_LENGTH
  logprobs: jax.Array            # [R, L] float32
  sampling_logprobs: jax.Array   # [R, L] float32
  num_steps: jax.Array           # [] int32


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _State:
  """Decode-loop carry. `step` = tokens drawn so far; token `step - 1` is fed next."""
  step: jax.Array                # [] int32
  tokens: jax.Array              # [R] int32, last drawn token
  done: jax.Array                # [R] bool
  cache: list | None             # per layer {"k","v"} [R, S, K, H]; None at jit boundaries
  kv_mask: jax.Array             # [R, S] int32, valid cache slots
  prompt_lens: jax.Array         # [R] int32, real prompt tokens (position of token 0)
  recent: jax.Array              # [R, W] int32, last W drawn tokens (-1 = none yet)
  rng: jax.Array                 # key
  completion_ids: jax.Array      # [R, L]
  completion_mask: jax.Array     # [R, L]
  logprobs: jax.Array            # [R, L]
  sampling_logprobs: jax.Array   # [R, L]


def _smallest_bucket(n: int, buckets: tuple[int, ...], what: str) -> int:
  if buckets and n > max(buckets):
    logging.warning("%s %d exceeds the largest bucket %d: compiling for the exact size",
                    what, n, max(buckets))
  return choose_bucket(n, buckets)


def bucket_prompts(prompt_ids, prompt_mask, config: SamplerConfig
                   ) -> tuple[np.ndarray, np.ndarray, int]:
  """Host-side bucketing. Returns (ids [B', P'], mask [B', P'], real prompt count B).

  Leading columns that are padding in every row are dropped first, so the bucket
  depends on the longest real prompt, not on how the caller padded.
  """
  ids = np.asarray(prompt_ids).astype(np.int32)
  mask = np.asarray(prompt_mask).astype(np.int32)
  if ids.ndim != 2 or ids.shape != mask.shape:
    raise ValueError(f"prompt_ids {ids.shape} and prompt_mask {mask.shape} must be equal [B, P]")
  lens = mask.sum(axis=1)
  if (lens == 0).any():
    raise ValueError("every prompt needs at least one token (mask all zero in some row)")
  if (np.diff(mask, axis=1) < 0).any():
    raise ValueError("prompts must be left-padded (mask 0...0 1...1 in every row)")
  b, p = ids.shape
  longest = int(lens.max())
  ids, mask = ids[:, p - longest:], mask[:, p - longest:]
  ids = np.where(mask == 1, ids, np.int32(config.pad_id))
  p_bucket = _smallest_bucket(longest, config.prompt_len_buckets, "Prompt length")
  b_bucket = _smallest_bucket(b, config.batch_buckets, "Prompt batch")
  pad_cols, pad_rows = p_bucket - longest, b_bucket - b
  ids = np.pad(ids, ((0, pad_rows), (pad_cols, 0)), constant_values=config.pad_id)
  mask = np.pad(mask, ((0, pad_rows), (pad_cols, 0)), constant_values=0)
  return ids, mask, b


def _record(state: _State, col, tokens_R, logprobs_R, sampling_logprobs_R,
            config: SamplerConfig) -> _State:
  """Writes the tokens drawn at column `col` and updates done / stop tracking."""
  live_R = ~state.done
  tokens_R = jnp.where(live_R, tokens_R, config.pad_id)
  zero = jnp.float32(0)

  def put(buf_RL, x_R):
    return jax.lax.dynamic_update_slice(buf_RL, x_R[:, None].astype(buf_RL.dtype), (0, col))

  stopped_R, recent = stop_hits(tokens_R, state.recent, config)
  return dataclasses.replace(
      state,
      tokens=tokens_R,
      done=state.done | (live_R & stopped_R),
      recent=recent,
      completion_ids=put(state.completion_ids, tokens_R),
      completion_mask=put(state.completion_mask, live_R.astype(jnp.int32)),
      logprobs=put(state.logprobs, jnp.where(live_R, logprobs_R, zero)),
      sampling_logprobs=put(state.sampling_logprobs, jnp.where(live_R, sampling_logprobs_R, zero)))


def _draw(logits_RV, rng, step, config: SamplerConfig):
  keys = None if config.greedy else sampling.row_keys(rng, step, logits_RV.shape[0])
  return sampling.sample(logits_RV, keys, temperature=config.temperature, top_p=config.top_p,
                         top_k=config.top_k, greedy=config.greedy,
                         top_p_candidates=config.top_p_candidates)


def stop_hits(tokens_N, recent_NW, config: SamplerConfig):
  """(EOS or stop sequence ends the row [N] bool, updated recent window)."""
  hit = jnp.zeros(tokens_N.shape, bool)
  for eos in config.eos_ids:
    hit |= tokens_N == eos
  if config.stop_sequences:
    recent_NW = jnp.concatenate([recent_NW[:, 1:], tokens_N[:, None]], axis=1)
    w = recent_NW.shape[1]
    for seq in config.stop_sequences:
      hit |= jnp.all(recent_NW[:, w - len(seq):] == jnp.asarray(seq, jnp.int32), axis=1)
  return hit, recent_NW


def _replicate_key(rng: jax.Array, sharding: NamedSharding) -> jax.Array:
  """A (typed) PRNG key replicated over a mesh that may span several processes.

  `jax.device_put(key, sharding)` only accepts shardings of addressable devices
  once the key is a device array, so in a multi-process run the key's raw data
  goes through the host (every process holds the same key: it is derived from
  the seed and the step) and is assembled with `make_array_from_callback`.
  """
  if jax.process_count() == 1:
    return jax.device_put(rng, sharding)
  typed = jnp.issubdtype(rng.dtype, jax.dtypes.prng_key)
  data = np.asarray(jax.random.key_data(rng) if typed else rng)
  arr = jax.make_array_from_callback(data.shape, sharding, lambda idx: data[idx])
  return jax.random.wrap_key_data(arr, impl=jax.random.key_impl(rng)) if typed else arr


@dataclasses.dataclass
class _Programs:
  # (params, ids [B,P], mask [B,P], rng) -> (cache, state, ids [R,P], mask [R,P])
  prefill: Callable
  # (params, cache, state) -> (Rollout, cache); the cache is donated
  decode: Callable
  batch: int
  prompt_len: int


class Sampler:
  """Jitted group rollouts against the policy's own (already sharded) params.

  Args:
    graphdef: from `split_params(model)`; params are passed to `generate`.
    model_cfg: the model's config.
    config: default `SamplerConfig` (each `generate` call may override it).
    mesh / rules: when given, prompts and the cache are sharded over the batch
      axes and the cache's kv heads over `tensor`; None = single device.
  """

  def __init__(self, graphdef: nnx.GraphDef, model_cfg: ModelConfig, config: SamplerConfig,
               mesh: Mesh | None = None, rules: ShardingRules | None = None):
    self.graphdef = graphdef
    self.model_cfg = model_cfg
    self.config = config
    self.mesh = mesh
    self.rules = (rules or ShardingRules()) if mesh is not None else rules
    self._programs: dict[tuple, _Programs] = {}
    self.num_traces = 0     # incremented on every (re)trace of prefill or decode

  # ---------------------------------------------------------------- public
  def generate(self, params: Any, prompt_ids, prompt_mask, rng: jax.Array,
               config: SamplerConfig | None = None) -> Rollout:
    """Samples G completions for each of the B left-padded prompts [B, P].

    Rows i*G .. i*G+G-1 of the returned `Rollout` belong to prompt i. Arrays stay
    on device (sharded over the batch axes when a mesh is set).
    """
    config = config or self.config
    ids, mask, b = bucket_prompts(prompt_ids, prompt_mask, config)
    progs = self.programs(params, ids.shape[0], ids.shape[1], config)
    if self.mesh is not None:
      ids = jax.device_put(ids, batch_sharding(self.mesh, self.rules, ids.shape))
      mask = jax.device_put(mask, batch_sharding(self.mesh, self.rules, mask.shape))
      rng = _replicate_key(rng, NamedSharding(self.mesh, P()))
    cache, state, ids_RP, mask_RP = progs.prefill(params, ids, mask, rng)
    rollout, cache = progs.decode(params, cache, state)
    del cache  # returned only so that the donated buffers alias in place
    rollout = dataclasses.replace(rollout, prompt_ids=ids_RP, prompt_mask=mask_RP)
    rows = b * config.num_samples
    if ids.shape[0] != b:  # drop the batch-bucket padding rows (they sit at the end)
      rollout = Rollout(**{f.name: (getattr(rollout, f.name) if f.name == "num_steps"
                                    else getattr(rollout, f.name)[:rows])
                           for f in dataclasses.fields(Rollout)})
    return rollout

  def programs(self, params: Any, batch: int, prompt_len: int,
               config: SamplerConfig | None = None) -> _Programs:
    """The (cached) jitted prefill/decode pair for a bucketed [batch, prompt_len]."""
    config = (config or self.config).program_key()
    key = (batch, prompt_len, config)
    if key not in self._programs:
      self._programs[key] = self._build(params, batch, prompt_len, config)
    return self._programs[key]

  # ---------------------------------------------------------------- programs
  def _build(self, params, b: int, p: int, config: SamplerConfig) -> _Programs:
    cfg, g, length = self.model_cfg, config.num_samples, config.max_new_tokens
    r, s = b * g, p + length
    w = max((len(q) for q in config.stop_sequences), default=1)
    cache_dtype = jnp.dtype(config.cache_dtype)
    graphdef = self.graphdef
    if s > cfg.max_position_embeddings:
      logging.warning("Prompt bucket %d + max_new_tokens %d exceeds max_position_embeddings %d",
                      p, length, cfg.max_position_embeddings)

    def prefill(params, ids_BP, mask_BP, rng):
      self.num_traces += 1
      model = merge_params(graphdef, params)
      positions_BP = jnp.maximum(jnp.cumsum(mask_BP, axis=1) - 1, 0)
      cache = kv_cache.init_cache(cfg, b, p, cache_dtype)
      # Hidden states only: the unembedding is needed at the last position alone.
      h_BPD, cache = model(ids_BP, positions_BP, mask_BP, cache=cache, cache_index=0,
                           return_hidden=True)
      logits_BV = model.unembed(h_BPD[:, -1:])[:, 0]
      # The G samples of a prompt share its prefill: repeat the cache, don't recompute.
      rep = lambda x: jnp.repeat(x, g, axis=0)
      def grow(x, axis):  # the L decode slots after the prompt's P, on the slot axis
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, length)
        return jnp.pad(rep(x), widths)
      cache = [{n: grow(layer[n], kv_cache.SEQ_AXIS[n]) for n in ("k", "v")} for layer in cache]
      ids_RP, mask_RP = rep(ids_BP), rep(mask_BP)
      prompt_lens_R = jnp.sum(mask_RP, axis=1).astype(jnp.int32)
      state = _State(
          step=jnp.int32(0),
          tokens=jnp.zeros((r,), jnp.int32),
          done=prompt_lens_R == 0,  # batch-bucket padding rows never generate
          cache=cache,
          kv_mask=jnp.pad(mask_RP, ((0, 0), (0, length))),
          prompt_lens=prompt_lens_R,
          recent=jnp.full((r, w), -1, jnp.int32),
          rng=rng,
          completion_ids=jnp.full((r, length), config.pad_id, jnp.int32),
          completion_mask=jnp.zeros((r, length), jnp.int32),
          logprobs=jnp.zeros((r, length), jnp.float32),
          sampling_logprobs=jnp.zeros((r, length), jnp.float32))
      state = _record(state, 0, *_draw(rep(logits_BV), rng, 0, config), config)
      state = dataclasses.replace(state, step=jnp.int32(1), cache=None)
      return cache, state, ids_RP, mask_RP

    def decode(params, cache, state: _State) -> tuple[Rollout, list]:
      # The cache travels outside the state at the jit boundary so that only it
      # is donated, and it is returned so the donated buffers are aliased to an
      # output: the while loop then updates them in place (no second copy).
      self.num_traces += 1
      model = merge_params(graphdef, params)
      state = dataclasses.replace(state, cache=cache)

      def cond(st: _State):
        return (st.step < length) & ~jnp.all(st.done)

      def body(st: _State) -> _State:
        slot = p + st.step - 1  # cache slot of the token fed now (drawn at step - 1)
        kv_mask = jax.lax.dynamic_update_slice(st.kv_mask, jnp.ones((r, 1), jnp.int32), (0, slot))
        positions_R1 = (st.prompt_lens + st.step - 1)[:, None]
        logits_R1V, cache = model(st.tokens[:, None], positions_R1, kv_mask, cache=st.cache,
                                  cache_index=slot)
        st = dataclasses.replace(st, cache=cache, kv_mask=kv_mask)
        st = _record(st, st.step, *_draw(logits_R1V[:, 0], st.rng, st.step, config), config)
        return dataclasses.replace(st, step=st.step + 1)

      st = jax.lax.while_loop(cond, body, state)
      lengths = jnp.sum(st.completion_mask, axis=1).astype(jnp.int32)
      finish = jnp.where(st.done, FINISH_STOP, FINISH_LENGTH).astype(jnp.int32)
      empty = jnp.zeros((r, 0), jnp.int32)  # prompts are filled in by `generate`
      rollout = Rollout(prompt_ids=empty, prompt_mask=empty, completion_ids=st.completion_ids,
                        completion_mask=st.completion_mask, lengths=lengths,
                        finish_reason=finish, logprobs=st.logprobs,
                        sampling_logprobs=st.sampling_logprobs, num_steps=st.step)
      return rollout, st.cache

    if self.mesh is None:
      return _Programs(jax.jit(prefill), jax.jit(decode, donate_argnums=1), b, p)

    mesh, rules = self.mesh, self.rules
    rep_s = NamedSharding(mesh, P())
    bs = lambda *shape: batch_sharding(mesh, rules, shape)
    param_s = jax.tree.map(lambda x: x.sharding if isinstance(x, jax.Array) else rep_s, params)
    cache_s = kv_cache.cache_shardings(cfg, r, s, mesh, rules)
    state_s = _State(
        step=rep_s, tokens=bs(r), done=bs(r), cache=None,
        kv_mask=bs(r, s), prompt_lens=bs(r), recent=bs(r, w), rng=rep_s,
        completion_ids=bs(r, length), completion_mask=bs(r, length), logprobs=bs(r, length),
        sampling_logprobs=bs(r, length))
    rollout_s = Rollout(
        prompt_ids=bs(r, 0), prompt_mask=bs(r, 0), completion_ids=bs(r, length),
        completion_mask=bs(r, length), lengths=bs(r), finish_reason=bs(r),
        logprobs=bs(r, length), sampling_logprobs=bs(r, length), num_steps=rep_s)
    prefill_jit = jax.jit(prefill, in_shardings=(param_s, bs(b, p), bs(b, p), rep_s),
                          out_shardings=(cache_s, state_s, bs(r, p), bs(r, p)))
    decode_jit = jax.jit(decode, in_shardings=(param_s, cache_s, state_s),
                         out_shardings=(rollout_s, cache_s), donate_argnums=1)
    return _Programs(prefill_jit, decode_jit, b, p)
