"""From prompts to a scored, advantage-weighted GRPO batch.

The host/device boundary is explicit here: the sampler returns token ids and
log-probs (device), this module fetches ids to the host, decodes text, scores
it with the rule-based reward system, computes group advantages, and hands a
batch of arrays back to the device. Nothing else crosses.

Scoring overlaps sampling: the prompts of a step are sampled in `num_chunks`
chunks, and while the device samples chunk k+1 the reward workers score chunk k.

Multi-host: every process builds the same global prompt batch (same seed, same
order), the sampler shards it, each process decodes and scores only its own
rows, and the rewards are all-gathered so every process computes the same
advantages.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from r1jax.rl import advantages as adv_lib
from r1jax.rollout import buckets
from r1jax.rollout.sampler import FINISH_LENGTH, FINISH_STOP, Rollout, Sampler, SamplerConfig
from r1jax.rollout.stops import apply_stops


@dataclasses.dataclass
class PendingExperience:
  """A launched step: the prompt batch and each chunk's (Rollout futures, host fields)."""
  batch: Mapping[str, Any]
  launched: list
  t0: float
  dispatch_s: float


@dataclasses.dataclass
class Experience:
  """One step's rollouts. Device arrays in `rollout`; host numpy elsewhere. R = B*G rows."""
  rollout: Rollout
  rewards: np.ndarray            # [R] float32 weighted total
  components: dict[str, np.ndarray]
  advantages: np.ndarray         # [R] float32
  texts: list[str]               # this process's rows only (decoded where they are scored)
  lengths: np.ndarray            # [R]
  truncated: np.ndarray          # [R] bool
  metrics: dict[str, float]


def host_fetch(x: jax.Array) -> np.ndarray:
  """Whole global array on this host (all-gathered across processes if needed)."""
  if jax.process_count() > 1 and not x.is_fully_addressable:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))


def _local_rows(n: int) -> slice:
  pc, pi = jax.process_count(), jax.process_index()
  per = n // pc
  return slice(pi * per, (pi + 1) * per) if n % pc == 0 else slice(0, n if pi == 0 else 0)


def decode_texts(tokenizer, ids_RL: np.ndarray, lengths_R: np.ndarray) -> list[str]:
  return [tokenizer.decode(ids_RL[i, :int(lengths_R[i])].tolist(), skip_special_tokens=False)
          for i in range(ids_RL.shape[0])]


def _put_like(x: np.ndarray, like: jax.Array) -> jax.Array:
  """A global host array placed with the sharding of `like` (also across processes)."""
  return jax.make_array_from_callback(x.shape, like.sharding, lambda idx: x[idx])


def cut_rollout(rollout: Rollout, lengths_R: np.ndarray, stopped_R: np.ndarray) -> Rollout:
  """The rollout with every token at or after `lengths_R[r]` out of the mask, the lengths
  fixed and the rows where a stop string was found marked FINISH_STOP (not truncated)."""
  length = rollout.completion_mask.shape[1]
  lengths_dev = _put_like(lengths_R.astype(np.int32), rollout.lengths)
  keep = (jnp.arange(length, dtype=jnp.int32)[None, :] < lengths_dev[:, None])
  mask = rollout.completion_mask * keep.astype(rollout.completion_mask.dtype)
  finish = jnp.where(_put_like(stopped_R.astype(bool), rollout.lengths), FINISH_STOP,
                     rollout.finish_reason).astype(rollout.finish_reason.dtype)
  return dataclasses.replace(
      rollout, completion_mask=mask, lengths=jnp.minimum(rollout.lengths, lengths_dev),
      finish_reason=finish, logprobs=jnp.where(keep, rollout.logprobs, 0.0),
      sampling_logprobs=jnp.where(keep, rollout.sampling_logprobs, 0.0))


# The step batch's [R, L] arrays, cut to the step's completion width (`rl.completion_buckets`).
COMPLETION_KEYS = ("completion_ids", "completion_mask", "old_logprobs", "sampler_logprobs")


@functools.partial(jax.jit, static_argnums=1)
def _cut_columns(arrays: dict, width: int) -> dict:
  return {k: v[:, :width] for k, v in arrays.items()}


def cut_completions(batch: dict, lengths_R: np.ndarray, widths: tuple[int, ...]
                    ) -> tuple[dict, int]:
  """(batch with its completion arrays cut to the smallest of `widths` that holds the longest
  of `lengths_R`, that width). Every column past the longest completion is masked in every row,
  and attention is causal, so log-probs, losses and gradients are those of the full width."""
  full = batch["completion_ids"].shape[1]
  width = min(buckets.choose_bucket(int(np.max(lengths_R, initial=1)), widths), full)
  if width >= full:
    return batch, full
  cut = _cut_columns({k: batch[k] for k in COMPLETION_KEYS if k in batch}, width)
  return {**batch, **cut}, width


def expand_fields(batch: Mapping[str, Any], group_size: int, skip=("prompt_ids", "prompt_mask")
                  ) -> dict[str, list]:
  """Per-prompt host fields -> per-completion lists (each repeated G times)."""
  out = {}
  for k, v in batch.items():
    if k in skip:
      continue
    vals = list(v) if not isinstance(v, np.ndarray) or v.ndim == 1 else [x for x in v]
    out[k] = [x for x in vals for _ in range(group_size)]
  return out


class ExperienceMaker:
  """Samples G completions per prompt, scores them on the host and computes advantages."""

  def __init__(self, sampler: Sampler, sampler_config: SamplerConfig, tokenizer, reward_system,
               rl, *, extra_fields: Mapping[str, Any] | None = None):
    """`rl`: the stage's `r1jax.stage_config.RLConfig` (advantage estimator, its ddof and
    eps, sample_chunks, stop_strings, the text statistics `cot_metrics` / `reflection_phrases`)."""
    self.sampler, self.scfg, self.tokenizer = sampler, sampler_config, tokenizer
    self.rewards = reward_system
    self.advantage, self.adv_ddof, self.adv_eps = rl.advantage, rl.adv_ddof, rl.adv_eps
    self.num_chunks = max(1, int(rl.sample_chunks))
    self.stop_strings = tuple(rl.stop_strings)
    self.extra_fields = dict(extra_fields or {})
    self.cot_metrics, self.reflection_phrases = rl.cot_metrics, tuple(rl.reflection_phrases)

  def _score_async(self, rollout: Rollout, fields: dict[str, list]):
    """Fetch ids, decode this process's rows, cut them at the first stop string (the
    mask, lengths and finish reasons follow the text) and submit them for scoring."""
    ids = host_fetch(rollout.completion_ids)
    lengths = host_fetch(rollout.lengths)
    finish = host_fetch(rollout.finish_reason)
    rows = _local_rows(ids.shape[0])
    texts, cut_len, stopped = apply_stops(self.tokenizer, ids[rows], lengths[rows],
                                          self.stop_strings)
    if self.stop_strings:
      new_len, new_stop = lengths.copy(), np.zeros(lengths.shape, bool)
      new_len[rows], new_stop[rows] = cut_len, stopped
      new_len = _allgather_rows(new_len[rows]) if jax.process_count() > 1 else new_len
      new_stop = _allgather_rows(new_stop[rows]) if jax.process_count() > 1 else new_stop
      if (new_len != lengths).any() or (new_stop & (finish != FINISH_STOP)).any():
        rollout = cut_rollout(rollout, new_len, new_stop)
        lengths = new_len
        finish = np.where(new_stop, FINISH_STOP, finish)
    local_fields = {k: v[rows] for k, v in fields.items()}
    local_fields["completion_lengths"] = [int(x) for x in lengths[rows]]
    for k, v in self.extra_fields.items():
      local_fields.setdefault(k, [v] * len(texts))
    future = self.rewards.submit(texts, local_fields)
    flags = {}
    if self.cot_metrics:   # text statistics of this process's rows, while the rewards are scored
      from r1jax.evals import curation  # pylint: disable=import-outside-toplevel
      flags = curation.cot_flags(texts, local_fields.get("question", [None] * len(texts)),
                                 bool(self.extra_fields.get("prompt_opens_think", False)),
                                 self.reflection_phrases, local_fields.get("target_language"))
    return future, texts, lengths, finish, rollout, flags

  def make(self, params, batch: Mapping[str, Any], rng: jax.Array) -> Experience:
    """`batch`: the global prompt batch (prompt_ids/prompt_mask [B, P] numpy + host fields)."""
    return self.finish(self.launch(params, batch, rng))

  def launch(self, params, batch: Mapping[str, Any], rng: jax.Array) -> "PendingExperience":
    """Dispatches the sampling of every chunk and returns at once (JAX async dispatch: the
    device arrays are futures). `finish` fetches, scores and computes advantages; the
    device samples chunk k+1 while the host scores chunk k, and the asynchronous trainer
    (`r1jax.rl.async_rollout`) runs other work between the two calls."""
    g = self.scfg.num_samples
    b = batch["prompt_ids"].shape[0]
    chunks = self.num_chunks if b % self.num_chunks == 0 else 1
    per = b // chunks
    fields = expand_fields(batch, g)
    t0 = time.perf_counter()
    launched = []
    for c in range(chunks):
      sl = slice(c * per, (c + 1) * per)
      ro = self.sampler.generate(params, batch["prompt_ids"][sl], batch["prompt_mask"][sl],
                                 jax.random.fold_in(rng, c), self.scfg)
      chunk_fields = {k: v[c * per * g:(c + 1) * per * g] for k, v in fields.items()}
      launched.append((ro, chunk_fields))
    return PendingExperience(batch, launched, t0, time.perf_counter() - t0)

  def finish(self, pending: "PendingExperience") -> Experience:
    """Fetches the ids chunk by chunk (each fetch waits for that chunk only), decodes,
    scores (overlapping the later chunks' sampling) and computes the advantages."""
    g = self.scfg.num_samples
    batch, t0 = pending.batch, pending.t0
    ts = time.perf_counter()
    pending_scores, rollouts = [], []
    for ro, chunk_fields in pending.launched:
      pending_scores.append(self._score_async(ro, chunk_fields))
      rollouts.append(pending_scores[-1][4])
    sample_time = pending.dispatch_s + time.perf_counter() - ts
    pending = pending_scores
    tw = time.perf_counter()
    results = [p[0].result() for p in pending]
    wait_time = time.perf_counter() - tw
    texts = [t for p in pending for t in p[1]]
    lengths = np.concatenate([p[2] for p in pending])
    finish = np.concatenate([p[3] for p in pending])
    # All-gather chunk by chunk, then concatenate: each process scored its slice of
    # *every* chunk, so gathering the concatenation of the local chunks would order
    # the rows [p0 c0, p0 c1, p1 c0, p1 c1] instead of [c0 (p0, p1), c1 (p0, p1)]
    # and give rewards to the wrong completions in multi-host runs.
    total = np.concatenate([_allgather_rows(r.total.astype(np.float32)) for r in results])
    comps = {k: np.concatenate([_allgather_rows(r.components[k].astype(np.float32))
                                for r in results]) for k in results[0].components}
    rollout = rollouts[0] if len(rollouts) == 1 else _concat_rollouts(rollouts)
    advantages = np.asarray(adv_lib.compute_advantages(total, g, self.advantage, self.adv_ddof,
                                                       self.adv_eps), np.float32)
    zero_var = np.asarray(adv_lib.zero_variance_groups(total, g), bool)
    reward_time = sum(r.metrics.get("reward/score_time_s", 0.0) for r in results)
    truncated = finish == FINISH_LENGTH
    metrics = {
        "reward/mean": float(total.mean()), "reward/std": float(total.std()),
        **{f"reward/{k}": float(v.mean()) for k, v in comps.items()},
        "completion_len/mean": float(lengths.mean()), "completion_len/max": float(lengths.max()),
        "completion_len/min": float(lengths.min()),
        "truncation_rate": float(truncated.mean()),
        "zero_variance_groups": float(zero_var.mean()),
        "time/sample_s": sample_time, "time/reward_wait_s": wait_time,
        "time/reward_total_s": reward_time,
        # Share of the reward work hidden behind sampling (1 = fully overlapped).
        "reward_overlap": float(1.0 - min(wait_time / reward_time, 1.0)) if reward_time > 0 else 0.0,
        "time/experience_s": time.perf_counter() - t0,
        "sampled_tokens": float(lengths.sum()),
        # Prompt width the step ran at (its bucket) and the share of it that is padding.
        "prompt_width": float(rollout.prompt_ids.shape[1]),
        "prompt_padding_fraction": buckets.padding_fraction(batch["prompt_mask"],
                                                            rollout.prompt_ids.shape[1]),
    }
    # Rates from the all-gathered components, and failure counts summed over the
    # chunks and the processes: each `RewardResult` only saw one chunk of this
    # process's rows (averaging them per chunk halved a count with 2 chunks, and
    # in multi-host runs process 0 would log its own rows' rates only).
    for rate, name in _RATES.items():
      if name in comps:
        metrics[rate] = float((comps[name] >= 1.0).mean())
    if self.cot_metrics:
      # All-gathered chunk by chunk, like the rewards: the share of all rows, on every process.
      for rate, name in (("mixing_rate", "mixed"), ("reflection_rate", "reflection"),
                         ("summary_rate", "summary")):
        flags = np.concatenate([_allgather_rows(p[5][name].astype(np.float32)) for p in pending])
        metrics[rate] = float(flags.mean()) if flags.size else 0.0
    counts = np.asarray([sum(r.metrics.get(k, 0.0) for r in results) for k in _COUNTS],
                        np.float32)
    for k, v in zip(_COUNTS, _allgather_rows(counts[None]).sum(axis=0)):
      metrics[k] = float(v)
    return Experience(rollout, total, comps, advantages, texts, lengths, truncated, metrics)


# Rate metrics (share of rows whose component is >= 1) as `RewardSystem` names them.
_RATES = {"accuracy_rate": "accuracy", "format_rate": "format", "format_soft_rate": "format_soft",
          "math_rate": "math", "code_rate": "code"}
_COUNTS = ("reward/timeouts", "reward/errors")


def _allgather_rows(x: np.ndarray) -> np.ndarray:
  if jax.process_count() == 1:
    return x
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _concat_rollouts(rollouts: list[Rollout]) -> Rollout:
  """Chunks -> one Rollout (prompt widths may differ across chunks: left-pad to the max)."""
  p = max(r.prompt_ids.shape[1] for r in rollouts)

  def lpad(x, fill):
    return jnp.pad(x, ((0, 0), (p - x.shape[1], 0)), constant_values=fill)
  pad_id = 0
  return Rollout(
      prompt_ids=jnp.concatenate([lpad(r.prompt_ids, pad_id) for r in rollouts]),
      prompt_mask=jnp.concatenate([lpad(r.prompt_mask, 0) for r in rollouts]),
      **{f.name: jnp.concatenate([getattr(r, f.name) for r in rollouts])
         for f in dataclasses.fields(Rollout)
         if f.name not in ("prompt_ids", "prompt_mask", "num_steps")},
      num_steps=jnp.max(jnp.stack([r.num_steps for r in rollouts])))


def select_groups(rewards: np.ndarray, group_size: int, num_groups: int, rng: np.random.Generator
                  ) -> tuple[np.ndarray, int]:
  """DAPO dynamic sampling with a static output size.

  Returns (row indices [num_groups * G], number of informative groups used).
  Groups whose G rewards differ come first; if there are too few, the batch is
  filled with zero-variance groups (their advantage is 0, so they add nothing
  to the gradient but keep the shape static).
  """
  zero = np.asarray(adv_lib.zero_variance_groups(rewards, group_size), bool)
  informative = np.flatnonzero(~zero)
  rest = np.flatnonzero(zero)
  rng.shuffle(informative)
  chosen = np.concatenate([informative, rest])[:num_groups]
  chosen.sort()
  rows = (chosen[:, None] * group_size + np.arange(group_size)[None, :]).reshape(-1)
  return rows, int(min(len(informative), num_groups))
