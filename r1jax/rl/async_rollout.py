"""Asynchronous off-policy rollouts for the GRPO trainer (`config.rl.async_staleness = k`).

Schedule (deterministic, so runs and resumes reproduce bitwise). Policy version v = the
number of GRPO steps applied to the params. Before training step t the trainer launches
the rollouts of step t + k with the current params (version t), then takes step t's
rollouts, launched k steps earlier with version max(0, t - k). So step t trains on
rollouts that are `t - version <= k` versions old, and while step t trains, the rollouts
of steps t+1 .. t+k are in flight. k = 0 is the synchronous loop.

What overlaps. Everything runs from the trainer's one Python thread through JAX's async
dispatch: `ExperienceMaker.launch` enqueues the sampler's programs and returns device
futures; `finish` (k steps later) fetches ids, decodes and scores on the host.
  * Shared mesh (`async_sampler_devices = 0`): the devices run the sampler's program of
    step t+k, then the update of step t, in dispatch order: device time is *not* saved.
    What is hidden is the host work (fetch, detokenise, rewards, advantages) of step t,
    which runs while the devices sample step t+k.
  * Disjoint sub-meshes (`async_sampler_devices = n`): the last n devices sample, the
    others train; the params are pushed to the sampler after each update onto the
    sampler's shardings (`transfer`: device to device, never through the host).
    Sampling of step t+k then runs on its devices while the trainer's devices run
    step t's log-prob passes and update: device time overlaps too.
One thread keeps the order of collectives identical on every process and avoids two
threads enqueueing programs onto the same devices in different orders.

Memory: each in-flight step holds its own copy of the params it was launched with (up to
k + 1 copies on the sampler's devices while a step is being launched). They are what makes resume exact: a checkpoint
at step c stores the params of the in-flight steps c .. c+k-1 (`inflight` in the
checkpoint tree, their versions in the metadata) and the prompt iterator's state before
step c's prompts were drawn; a resume re-launches those steps from the stored params with
the same prompts and keys, so it reproduces the in-flight rollouts exactly.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from r1jax import sharding
from r1jax.models.factory import abstract_model, param_shardings, split_params

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class AsyncConfig:
  """Defaults of `config.rl.async_staleness` / `async_sampler_devices` (written here once)."""
  staleness: int = 0          # k: rollouts may come from a policy up to k versions old
  sampler_devices: int = 0    # n > 0: the last n devices sample, the others train


def check(staleness: int, sampler_devices: int) -> None:
  if staleness < 0 or sampler_devices < 0:
    raise ValueError(f"async_staleness={staleness} and async_sampler_devices={sampler_devices} "
                     "must be >= 0")


def enabled(rl) -> bool:
  """Whether the trainer takes its rollouts from `AsyncRollouts` (else: inline)."""
  return rl.async_staleness > 0 or rl.async_sampler_devices > 0


def loss_config(rl):
  """`rl.loss`, with truncated IS turned on for stale rollouts when no correction is set:
  the weight min(pi_current / pi_behaviour, is_cap) corrects for the staleness."""
  if rl.async_staleness > 0 and rl.loss.is_correction == "none":
    return rl.loss.replace(is_correction="tis")
  return rl.loss


def split_mesh(shape, sampler_devices: int, devices=None):
  """(trainer mesh, sampler mesh), both of `shape` (one -1 fills each part). The sampler
  takes the last n / P devices of each of the P processes, so both meshes span every
  process (each process keeps driving both programs, as SPMD needs)."""
  devices = list(devices if devices is not None else jax.devices())
  n = sampler_devices
  procs = sorted({d.process_index for d in devices})
  if not 0 < n < len(devices) or n % len(procs):
    raise ValueError(f"async_sampler_devices={n} must leave devices for the trainer "
                     f"({len(devices)} in all) and divide over the {len(procs)} processes")
  trainer, sampler = [], []
  for p in procs:
    local = [d for d in devices if d.process_index == p]
    cut = len(local) - n // len(procs)
    trainer += local[:cut]
    sampler += local[cut:]
  return (sharding.make_mesh(tuple(shape), devices=trainer),
          sharding.make_mesh(tuple(shape), devices=sampler))


@dataclasses.dataclass
class SamplerPlacement:
  """Where the sampler's params live: the trainer's own arrays, or a sub-mesh."""
  graphdef: Any                 # the graphdef the sampler merges (its mesh in the constraints)
  mesh: Any
  shardings: Any                # params' shardings on `mesh`; None = the trainer's own
  push: Callable[[Any], Any]    # trainer params -> params for the sampler (a new buffer)


def placement(model_cfg, graphdef, params, mesh, rules, sampler_mesh=None) -> SamplerPlacement:
  """The sampler's graphdef and the push of the trainer's params to it.

  Same mesh: the push is a jitted copy (the update donates the trainer's params, and an
  in-flight step needs its version kept). Sub-mesh: a graphdef built on the sampler's
  mesh and `jax.device_put` onto its shardings (a device-to-device transfer).
  """
  if sampler_mesh is None:
    copy = jax.jit(lambda p: jax.tree.map(jnp.copy, p),
                   out_shardings=jax.tree.map(lambda x: x.sharding, params))
    return SamplerPlacement(graphdef, mesh, None, copy)
  abstract = abstract_model(model_cfg, sampler_mesh, rules)
  s_graphdef, _ = split_params(abstract)
  shard = param_shardings(abstract, sampler_mesh, rules)
  if jax.process_count() > 1 and sampler_mesh.devices.shape != mesh.devices.shape:
    raise ValueError(f"async_sampler_devices with several processes needs sampler and trainer "
                     f"meshes of one shape, got {sampler_mesh.devices.shape} and "
                     f"{mesh.devices.shape}")
  return SamplerPlacement(s_graphdef, sampler_mesh, shard,
                          lambda p: jax.tree.map(lambda x, h: transfer(x, mesh, h), p, shard))


def transfer(x: jax.Array, src_mesh, target) -> jax.Array:
  """`x` (on `src_mesh`) onto the `NamedSharding` `target`, device to device.

  One process: `jax.device_put`. Several: JAX cannot reshard across hosts between different
  device sets (except on TPU's TFRT runtime), so `x` is laid out with target's spec on its
  own mesh and each local shard is copied to the device at the same mesh position of
  target's mesh, which `split_mesh` puts in the same process.
  """
  if jax.process_count() == 1:
    return jax.device_put(x, target)
  x = jax.device_put(x, jax.sharding.NamedSharding(src_mesh, target.spec))
  peer = dict(zip(src_mesh.devices.flat, target.mesh.devices.flat))
  shards = [jax.device_put(s.data, peer[s.device]) for s in x.addressable_shards]
  return jax.make_array_from_single_device_arrays(x.shape, target, shards)


def to_mesh(rollout, src_mesh, mesh, rules):
  """A Rollout's arrays (on `src_mesh`) resharded onto `mesh` (batch-major)."""
  def put(x):
    target = (sharding.replicated(mesh) if x.ndim == 0
              else sharding.batch_sharding(mesh, rules, x.shape))
    return transfer(x, src_mesh, target)
  return jax.tree.map(put, rollout)


def staleness_metrics(step: int, versions_R: np.ndarray, k: int) -> dict[str, float]:
  """Per-row policy versions -> mean / max staleness and its distribution over 0..k."""
  st = step - np.asarray(versions_R, np.int64)
  out = {"async/policy_version": float(np.mean(versions_R)),
         "async/staleness_mean": float(st.mean()), "async/staleness_max": float(st.max())}
  out.update({f"async/staleness_frac/{j}": float(np.mean(st == j)) for j in range(k + 1)})
  return out


@dataclasses.dataclass
class _Job:
  pending: Any        # PendingExperience (device futures)
  version: int
  params: Any         # the params it was launched with (kept for checkpoints)
  data_state: dict    # the prompt iterator's state before this step's prompts


class AsyncRollouts:
  """Keeps the rollouts of steps t .. t+k in flight (see the module docstring).

  `get(step, params)` launches step + k with `params` (version `step`) and returns step's
  (Experience, version). The trainer calls it once per step, in order.
  """

  def __init__(self, maker, prompt_iter, base_key, staleness: int, num_steps: int,
               push: Callable[[Any], Any]):
    self.maker, self.prompt_iter, self.base_key = maker, prompt_iter, base_key
    self.k, self.num_steps, self.push = staleness, num_steps, push
    self.jobs: dict[int, _Job] = {}
    self.push_s = 0.0

  def _launch(self, step: int, version: int, params) -> None:
    if step >= self.num_steps or step in self.jobs:
      return
    data_state = self.prompt_iter.get_state()
    batch = next(self.prompt_iter)
    pending = self.maker.launch(params, batch, jax.random.fold_in(self.base_key, step))
    self.jobs[step] = _Job(pending, version, params, data_state)

  def start(self, step0: int, params, inflight: list | None = None,
            versions: list[int] | None = None) -> None:
    """Launches steps step0 .. step0+k-1: from a checkpoint's in-flight params and their
    versions when given (exact resume), else from `params` (version step0)."""
    fresh = None
    for j, s in enumerate(range(step0, step0 + self.k)):
      if inflight is not None and j < len(inflight):
        self._launch(s, int(versions[j]), inflight[j])
      else:
        if inflight is None and step0 > 0 and j == 0:
          log.warning("Async rollouts: no in-flight params in the checkpoint of step %d; the "
                      "in-flight steps restart from its params (not an exact resume)", step0)
        fresh = fresh if fresh is not None else self.push(params)
        self._launch(s, step0, fresh)

  def get(self, step: int, params):
    t = time.perf_counter()
    self._launch(step + self.k, step, self.push(params))
    self.push_s = time.perf_counter() - t
    job = self.jobs.pop(step)
    return self.maker.finish(job.pending), job.version

  def data_state(self, done: int) -> dict:
    """The prompt iterator's state before step `done`'s prompts were drawn."""
    job = self.jobs.get(done)
    return job.data_state if job is not None else self.prompt_iter.get_state()

  def inflight(self, done: int) -> tuple[list, list[int]]:
    """(params, versions) of the steps launched but not yet trained, in step order."""
    steps = sorted(s for s in self.jobs if s >= done)
    return [self.jobs[s].params for s in steps], [self.jobs[s].version for s in steps]

  def close(self) -> None:
    """Waits for the in-flight programs (their arrays are dropped) and forgets them."""
    for job in self.jobs.values():
      for ro, _ in job.pending.launched:
        jax.block_until_ready(ro)
    self.jobs.clear()
