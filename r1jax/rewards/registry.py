"""Reward registry and the reward system the GRPO trainer calls.

A reward function is `fn(completions: list[str], **fields) -> np.ndarray[float32] [N]`; `fields` are per-completion
lists (answer, task, numbers, target, tests, entry_point, completion_lengths, ...) plus per-reward config kwargs, and
a function ignores what it does not need. Rewards are registered by name; `build_reward_system(cfg)` combines them with
weights from config and logs every component as its own metric.

Slow or untrusted work (math-verify, running code) and the language identifier are `pooled`: scored item by item in a
`RewardPool` with a hard per-item timeout. Cheap text rules (format, shaping) run inline, batched, in the caller's
process. Whatever
a completion does, `score` returns: a failing item scores 0 and is counted in `reward/timeouts` / `reward/errors`.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from r1jax.rewards import code as rcode
from r1jax.rewards import countdown as rcountdown
from r1jax.rewards import format as rformat
from r1jax.rewards import language as rlanguage
from r1jax.rewards import math as rmath
from r1jax.rewards import shaping as rshaping
from r1jax.rewards.pool import RewardPool

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RewardSpec:
  name: str
  fn: Callable[..., np.ndarray]
  pooled: bool = False            # score per item in worker processes with a hard timeout
  requires: tuple[str, ...] = ()  # components computed first and passed as `_components`
  warmup: Optional[Callable[[], Any]] = None   # run once by each pool worker before it takes items
  chunked: bool = False           # pooled in chunks of completions, one pool task (and deadline) per chunk


_REGISTRY: dict[str, RewardSpec] = {}


def register(name: str, fn: Optional[Callable] = None, *, pooled: bool = False, requires: Sequence[str] = (),
             overwrite: bool = False, warmup: Optional[Callable[[], Any]] = None, chunked: bool = False):
  """Register `fn` under `name`; usable as `register('x', fn)` or as a decorator `@register('x')`.

  Pooled functions (and their `warmup`, which each pool worker runs before taking items, e.g. to load a model)
  must be importable module-level functions (they are pickled by reference into the workers). `chunked`: the pool
  scores a chunk of completions per task with one batched call (for items of a millisecond or less, where a round
  trip per item would cost more than the item); a chunk that times out or fails scores 0 for all its items.
  """
  def deco(f):
    if name in _REGISTRY and not overwrite:
      raise ValueError(f'reward {name!r} is already registered')
    _REGISTRY[name] = RewardSpec(name, f, pooled, tuple(requires), warmup, chunked)
    return f
  return deco(fn) if fn is not None else deco


def get(name: str) -> RewardSpec:
  if name not in _REGISTRY:
    raise KeyError(f'unknown reward {name!r}; registered: {sorted(_REGISTRY)}')
  return _REGISTRY[name]


def names() -> list[str]:
  return sorted(_REGISTRY)


# ---- accuracy: per-example dispatch on task / verifier ----
_KIND_ALIASES = {'countdown': 'countdown', 'arithmetic': 'arithmetic', 'code': 'code', 'humaneval': 'code',
                 'mbpp': 'code', 'apps': 'code', 'python': 'code', 'general': 'general'}


def _no_verifier(completions: list[str], **fields) -> np.ndarray:
  """General (non-reasoning) prompts have no gold answer: accuracy 0; see `r1jax.rewards.general`."""
  del fields
  return np.zeros(len(completions), dtype=np.float32)


_VERIFIERS = {'math': rmath.math_reward, 'countdown': rcountdown.countdown_reward,
              'arithmetic': rcountdown.arithmetic_reward, 'code': rcode.code_reward, 'general': _no_verifier}


def verifier_kind(task: Any) -> str:
  """'math' unless the task/verifier name says countdown, arithmetic, code (e.g. 'humaneval') or general."""
  t = str(task or 'math').lower()
  for key, kind in _KIND_ALIASES.items():
    if key in t:
      return kind
  return 'math'


def accuracy_reward(completions: list[str], task: Optional[list[Any]] = None, verifier: Optional[list[Any]] = None,
                    **fields) -> np.ndarray:
  """1 if the completion is correct for its example, dispatching on `verifier`, else `task`, else math."""
  n = len(completions)
  kinds = [verifier_kind(v) for v in (verifier if verifier is not None else task if task is not None else [None] * n)]
  out = np.zeros(n, dtype=np.float32)
  per_example = {k: v for k, v in fields.items() if isinstance(v, (list, tuple, np.ndarray)) and len(v) == n}
  scalars = {k: v for k, v in fields.items() if k not in per_example}
  for kind in set(kinds):
    idx = [i for i, k in enumerate(kinds) if k == kind]
    sub = {k: [v[i] for i in idx] for k, v in per_example.items()}
    out[idx] = _VERIFIERS[kind]([completions[i] for i in idx], **sub, **scalars)
  return out


# Pooled: slow or untrusted per-item work (math-verify, running code) and the language identifier (py3langid's
# pure-Python n-gram walk, the main host cost of long CoTs: in workers it overlaps with device work and scales with
# num_workers instead of holding the trainer's GIL).
for _name, _fn, _pooled, _req in [
    ('accuracy', accuracy_reward, True, ()),
    ('math', rmath.math_reward, True, ()),
    ('code', rcode.code_reward, True, ()),
    ('countdown', rcountdown.countdown_reward, False, ()),
    ('arithmetic', rcountdown.arithmetic_reward, False, ()),
    ('format', rformat.format_reward, False, ()),
    ('format_soft', rformat.format_soft_reward, False, ()),
    ('tag_count', rformat.tag_count_reward, False, ()),
    ('language', rlanguage.language_reward, True, ()),
    ('overlong', rshaping.overlong_reward, False, ()),
    ('cosine', rshaping.cosine_reward, False, ('accuracy',)),
    ('repetition', rshaping.repetition_reward, False, ()),
]:
  register(_name, _fn, pooled=_pooled, requires=_req, warmup=rlanguage.warm_up if _name == 'language' else None,
           chunked=_name == 'language')


def score_one(fn: Callable, completion: str, fields: Mapping[str, Any], kwargs: Mapping[str, Any]) -> float:
  """Score one completion with a batched reward function (what pool workers run)."""
  merged = {**kwargs, **{k: [v] for k, v in fields.items()}}
  value = float(np.asarray(fn([completion], **merged), dtype=np.float64).reshape(-1)[0])
  return value if np.isfinite(value) else 0.0


def score_chunk(fn: Callable, completions: Sequence[str], fields: Mapping[str, Sequence[Any]],
                kwargs: Mapping[str, Any]) -> list[float]:
  """Score a chunk of completions with one batched call (what pool workers run for `chunked` rewards); `fields`
  holds one list per field, aligned with `completions`."""
  values = np.asarray(fn(list(completions), **{**kwargs, **fields}), dtype=np.float64).reshape(-1)
  if values.shape != (len(completions),):
    raise ValueError(f'reward returned {values.shape[0]} values for {len(completions)} completions')
  return [v if np.isfinite(v) else 0.0 for v in values.tolist()]


# Chunks per pool worker for `chunked` rewards: enough to balance uneven lengths, few enough to amortise the trip.
_CHUNKS_PER_WORKER = 4
_MAX_CHUNK = 64


@dataclasses.dataclass
class RewardResult:
  total: np.ndarray                    # float32 [N], weighted sum of the components
  components: dict[str, np.ndarray]    # name -> float32 [N], unweighted
  metrics: dict[str, float]
  statuses: dict[str, list[str]]       # name -> per-item 'ok' | 'timeout' | 'error' | 'crash' | 'closed'


class RewardSystem:
  """Weighted sum of registered rewards, scored in a worker pool (or inline when num_workers == 0)."""

  def __init__(self, weights: Mapping[str, float], kwargs: Optional[Mapping[str, Mapping[str, Any]]] = None,
               num_workers: int = 2, timeout_s: float = 5.0, mp_context: str = 'spawn',
               worker_memory_mb: Optional[int] = 2048):
    if not weights:
      raise ValueError('reward weights are empty')
    self.weights = {k: float(v) for k, v in weights.items()}
    self.kwargs = {k: dict(v) for k, v in (kwargs or {}).items()}
    unknown = [k for k in list(self.weights) + list(self.kwargs) if k not in _REGISTRY]
    if unknown:
      raise KeyError(f'unknown rewards {unknown}; registered: {sorted(_REGISTRY)}')
    self.timeout_s = float(timeout_s)
    self.order: list[str] = []
    for name in self.weights:
      self._add(name)
    self.order = sorted(self.order, key=lambda n: not get(n).pooled)   # stable: dependencies stay first
    needs_pool = any(get(n).pooled for n in self.order)
    warmups = tuple(dict.fromkeys(get(n).warmup for n in self.order if get(n).pooled and get(n).warmup))
    self.pool = (RewardPool(num_workers, timeout_s, mp_context, memory_mb=worker_memory_mb, warmups=warmups)
                 if num_workers > 0 and needs_pool else None)
    if self.pool is None:   # inline: math-verify still gets a hard deadline (a helper process, see rewards/math.py)
      rmath.set_inline_timeout(self.timeout_s)
    self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None
    self._closed = False

  def _add(self, name: str, stack: tuple[str, ...] = ()) -> None:
    if name in stack:
      raise ValueError(f'reward dependency cycle: {stack + (name,)}')
    for dep in get(name).requires:
      self._add(dep, stack + (name,))
    if name not in self.order:
      self.order.append(name)

  def _item_timeout(self, name: str) -> float:
    inner = self.kwargs.get(name, {}).get('timeout_s')
    return max(self.timeout_s, float(inner) + 2.0) if inner else self.timeout_s

  def score(self, completions: Sequence[str], fields: Optional[Mapping[str, Any]] = None) -> RewardResult:
    """Score a batch; never raises for anything inside the completions."""
    if self._closed:
      raise RuntimeError('RewardSystem is closed')
    t0 = time.monotonic()
    comps = [c if isinstance(c, str) else '' for c in completions]
    n = len(comps)
    fields = dict(fields or {})
    per_example = {}
    for k, v in fields.items():
      if isinstance(v, (list, tuple, np.ndarray)) and len(v) == n:
        per_example[k] = list(v)
      else:
        per_example[k] = [v] * n   # a scalar field applies to every completion
    components: dict[str, np.ndarray] = {}
    statuses: dict[str, list[str]] = {}
    futures = {}
    for name in self.order:   # submit every pooled component first so they run concurrently
      spec = get(name)
      if spec.pooled and spec.chunked and self.pool is not None:
        futures[name] = self._submit_chunks(spec, comps, per_example)
      elif spec.pooled and self.pool is not None:
        items = [((spec.fn, comps[i], {k: v[i] for k, v in per_example.items()}, self.kwargs.get(name, {})), {})
                 for i in range(n)]
        futures[name] = self.pool.submit(score_one, items, timeout_s=self._item_timeout(name))
    for name in self.order:
      spec = get(name)
      kw = self.kwargs.get(name, {})
      if name in futures and spec.chunked:
        values, status = self._chunk_results(*futures[name])
      elif name in futures:
        res = futures[name].result()
        values = np.asarray([r.value if r.status == 'ok' else 0.0 for r in res], dtype=np.float32)
        status = [r.status for r in res]
      elif spec.pooled and not spec.chunked:
        values, status = self._inline_items(spec, comps, per_example, kw)
      else:
        values, status = self._inline_batch(spec, comps, per_example, kw, components)
      components[name], statuses[name] = values, status
    total = np.zeros(n, dtype=np.float32)
    for name, w in self.weights.items():
      total += np.float32(w) * components[name]
    metrics = self._metrics(total, components, statuses, time.monotonic() - t0)
    return RewardResult(total, components, metrics, statuses)

  def _submit_chunks(self, spec, comps, per_example):
    n = len(comps)
    size = max(1, min(_MAX_CHUNK, -(-n // (self.pool.num_workers * _CHUNKS_PER_WORKER))))
    bounds = [(i, min(i + size, n)) for i in range(0, n, size)]
    items = [((spec.fn, comps[a:b], {k: v[a:b] for k, v in per_example.items()}, self.kwargs.get(spec.name, {})), {})
             for a, b in bounds]
    tmo = [self._item_timeout(spec.name) * (b - a) for a, b in bounds]
    return self.pool.submit(score_chunk, items, timeout_s=tmo), bounds

  @staticmethod
  def _chunk_results(future, bounds):
    n = bounds[-1][1] if bounds else 0
    values, status = np.zeros(n, dtype=np.float32), [''] * n
    for (a, b), r in zip(bounds, future.result()):
      if r.status == 'ok':
        values[a:b] = r.value
      status[a:b] = [r.status] * (b - a)
    return values, status

  def _inline_items(self, spec, comps, per_example, kw):
    values, status = np.zeros(len(comps), dtype=np.float32), []
    for i, c in enumerate(comps):
      try:
        values[i] = score_one(spec.fn, c, {k: v[i] for k, v in per_example.items()}, kw)
        status.append('ok')
      except Exception as e:  # noqa: BLE001
        log.debug('reward %s failed on item %d: %s', spec.name, i, e)
        status.append('error')
    return values, status

  def _inline_batch(self, spec, comps, per_example, kw, components):
    try:
      values = np.asarray(spec.fn(comps, **{**kw, **per_example}, _components=components), dtype=np.float32)
      if values.shape != (len(comps),):
        raise ValueError(f'reward {spec.name} returned shape {values.shape}, expected ({len(comps)},)')
      bad = ~np.isfinite(values)
      values[bad] = 0.0
      return values, ['ok' if not b else 'error' for b in bad]
    except Exception as e:  # noqa: BLE001 - isolate the failing items
      log.warning('reward %s failed on the batch (%s: %s); scoring items one by one', spec.name,
                  type(e).__name__, e)
    values, status = np.zeros(len(comps), dtype=np.float32), []
    for i, c in enumerate(comps):
      try:
        merged = {**kw, **{k: [v[i]] for k, v in per_example.items()}}
        sub = {k: v[i:i + 1] for k, v in components.items()}
        values[i] = float(np.asarray(spec.fn([c], **merged, _components=sub)).reshape(-1)[0])
        status.append('ok' if np.isfinite(values[i]) else 'error')
        values[i] = values[i] if np.isfinite(values[i]) else 0.0
      except Exception:  # noqa: BLE001
        status.append('error')
    return values, status

  def _metrics(self, total, components, statuses, elapsed) -> dict[str, float]:
    m = {'reward/total_mean': float(total.mean()) if total.size else 0.0,
         'reward/total_std': float(total.std()) if total.size else 0.0}
    timeouts = errors = 0
    for name, vals in components.items():
      m[f'reward/{name}_mean'] = float(vals.mean()) if vals.size else 0.0
      st = statuses[name]
      timeouts += st.count('timeout')
      errors += sum(s in ('error', 'crash', 'closed') for s in st)
    for rate, name in (('accuracy_rate', 'accuracy'), ('format_rate', 'format'), ('format_soft_rate', 'format_soft'),
                       ('math_rate', 'math'), ('code_rate', 'code')):
      if name in components:
        m[rate] = float((components[name] >= 1.0).mean()) if components[name].size else 0.0
    m['reward/timeouts'] = float(timeouts)
    m['reward/errors'] = float(errors)
    m['reward/score_time_s'] = float(elapsed)
    return m

  def submit(self, completions: Sequence[str], fields: Optional[Mapping[str, Any]] = None
             ) -> concurrent.futures.Future:
    """Score in the background; `.result()` gives the RewardResult (overlap scoring with device work)."""
    if self._executor is None:
      self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='r1jax-reward')
    return self._executor.submit(self.score, list(completions), dict(fields or {}))

  def close(self) -> None:
    if self._closed:
      return
    self._closed = True
    if self._executor is not None:
      self._executor.shutdown(wait=True)
    if self.pool is not None:
      self.pool.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def build_reward_system(cfg: Any) -> RewardSystem:
  """From an ml_collections.ConfigDict or dict: weights, kwargs (optional), num_workers (2), timeout_s (5.0),
  worker_memory_mb (2048, address-space cap of each pool worker)."""
  if hasattr(cfg, 'to_dict'):
    cfg = cfg.to_dict()
  cfg = dict(cfg)
  unknown = set(cfg) - {'weights', 'kwargs', 'num_workers', 'timeout_s', 'mp_context', 'worker_memory_mb'}
  if unknown:
    raise KeyError(f'unknown reward config keys {sorted(unknown)}')
  return RewardSystem(dict(cfg['weights']), {k: dict(v) for k, v in dict(cfg.get('kwargs') or {}).items()},
                      num_workers=int(cfg.get('num_workers', 2)), timeout_s=float(cfg.get('timeout_s', 5.0)),
                      mp_context=cfg.get('mp_context', 'spawn'),
                      worker_memory_mb=cfg.get('worker_memory_mb', 2048))
