"""Process-level XLA:CPU settings, applied before JAX starts its backends.

On a CPU, r1jax runs fastest as a small mesh of CPU devices (one per core) with XLA's own
(Eigen) matmuls instead of its YNNPACK fusions. Measured on the peers benchmark's GRPO step
(`benchmarks/peers.py`, 2 cores; docs/performance.md): one device with YNNPACK 2.77-2.91 s,
one device with Eigen 2.78 s, two devices with YNNPACK 2.58 s, two devices with Eigen
2.43-2.49 s. Small decode matmuls leave a core idle; two devices run two halves of the
batch side by side. Eigen's dots were faster than YNNPACK's at these shapes in the update and
the reference pass (measured, not explained: docs/performance.md).

Both settings only touch the CPU backend (`jax_num_cpu_devices`, an `--xla_cpu_*` flag), so
they are harmless on GPU / TPU hosts, where the accelerator stays the default backend.
Neither is applied over a user's own choice: an explicit `JAX_NUM_CPU_DEVICES`,
`--xla_force_host_platform_device_count`, or YNN flag in `XLA_FLAGS` wins.
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
MAX_AUTO_CPU_DEVICES = 8


def auto_cpu_devices(cores: int | None = None) -> int:
  """One device per core, rounded down to a power of two (batch sizes divide it), <= 8."""
  cores = cores or os.cpu_count() or 1
  n = 1
  while n * 2 <= min(cores, MAX_AUTO_CPU_DEVICES):
    n *= 2
  return n


def _backends_started() -> bool:
  try:
    from jax._src import xla_bridge
    return bool(xla_bridge.backends_are_initialized())
  except Exception:  # private API moved: assume started, so nothing is changed under JAX
    return True


def configure_cpu(cpu_devices: int | str = "auto", cpu_matmul: str = "eigen") -> dict:
  """Sets the CPU device count and matmul library; returns what was applied.

  cpu_devices: 'auto' (`auto_cpu_devices()`), or a count; 0 leaves JAX's default (1).
  cpu_matmul: 'eigen' (XLA's dots; YNNPACK fusions off) or 'ynnpack' (XLA's default).
  Call before the first JAX computation: once a backend exists, this only logs what it
  could not change (a notebook should call it in its first cell).
  """
  if cpu_matmul not in ("eigen", "ynnpack"):
    raise ValueError(f"cpu_matmul={cpu_matmul!r}: expected 'eigen' or 'ynnpack'")
  if isinstance(cpu_devices, str):
    if cpu_devices != "auto":
      raise ValueError(f"cpu_devices={cpu_devices!r}: expected 'auto' or a device count")
    n = auto_cpu_devices()
  else:
    n = int(cpu_devices)
    if n < 0:
      raise ValueError(f"cpu_devices={cpu_devices} must be >= 0")
  flags = os.environ.get("XLA_FLAGS", "")
  user_count = ("JAX_NUM_CPU_DEVICES" in os.environ
                or "--xla_force_host_platform_device_count" in flags)
  applied = {}
  if _backends_started():
    log.info("configure_cpu: JAX backends already started; CPU settings left as they are")
    return applied
  import jax
  if n > 0 and not user_count and jax.config.jax_num_cpu_devices in (-1, 1):
    jax.config.update("jax_num_cpu_devices", n)
    applied["cpu_devices"] = n
  if cpu_matmul == "eigen" and YNN_FLAG not in flags:
    os.environ["XLA_FLAGS"] = (flags + f" {YNN_FLAG}=").strip()
    applied["cpu_matmul"] = "eigen"
  return applied


def configure_cpu_from(config) -> dict:
  """`configure_cpu` with a stage's (or a pipeline's) `cpu_devices` / `cpu_matmul` fields."""
  from r1jax.stage_config import CommonConfig
  get = config.get if hasattr(config, "get") else lambda k, d: getattr(config, k, d)
  return configure_cpu(get("cpu_devices", CommonConfig.cpu_devices),
                       get("cpu_matmul", CommonConfig.cpu_matmul))
