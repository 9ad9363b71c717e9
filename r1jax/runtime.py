"""XLA:CPU settings: the CPU device count (per process), the training programs' matmuls, and
the host allocator.

On a CPU, r1jax runs fastest as a small mesh of CPU devices (one per core), with XLA's own
(Eigen) dots in the training programs (update, reference / pi_old log-probs) and XLA:CPU's
default YNNPACK dots everywhere else. Measured on the peers benchmark's GRPO step
(`benchmarks/peers.py`, 2 cores; docs/performance.md): one device with YNNPACK 2.77-2.91 s,
two devices with YNNPACK 2.58-2.63 s, two devices with Eigen 2.43-2.49 s. Small decode
matmuls leave a core idle, so two devices decode the two halves of the batch side by side.
Eigen's dots ran the update and reference faster (measured, not explained), but made the
quickstart's decode (d = 128) several times slower, so the sampler keeps YNNPACK: Eigen is a
per-program compiler option (`train_jit_kwargs`), not a process flag.

XLA:CPU takes every program's buffers from the C allocator. glibc's returns big freed blocks to
the OS (`munmap`, heap trimming), so each step page-faults its buffers back in, and the kernel
zeroes every page: on the 25M peers workload 3.9M page faults and 77 s of system time against
171 s of user time. `cpu_malloc='auto'` (no GPU / TPU found, a model of `KEEP_MEMORY_PARAMS` or
more) makes glibc keep freed memory for the next step instead (`keep_freed_memory`): update
10.0-10.7 -> 5.1-6.0 s there (docs/performance.md, session 18). The price is that the process keeps
its peak memory until it exits. For small models the setting measured slower in session 18 (the
d = 128 GRPO step 1.50 / 1.55 -> 1.67 / 1.82 s) and level within the noise in session 19, so 'auto'
leaves them alone. It cannot keep everything: XLA:CPU takes a program's temporaries as one block
per run, and glibc maps a block asked for by a thread on a non-main arena afresh whatever
`M_MMAP_MAX` says (docs/performance.md, session 19).

Only the CPU backend is touched (`jax_num_cpu_devices`, an `xla_cpu_*` option on CPU jits),
so GPU / TPU hosts are unaffected. An explicit `JAX_NUM_CPU_DEVICES`,
`--xla_force_host_platform_device_count` or YNN flag in `XLA_FLAGS` wins.
"""
from __future__ import annotations

import ctypes
import glob
import logging
import os

log = logging.getLogger(__name__)

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
EIGEN_DOTS = {YNN_FLAG.lstrip("-"): ""}   # jit compiler_options: XLA's own dots, no YNNPACK
# The training programs' compiler_options: XLA's own (Eigen) dots, YNNPACK's reductions. With no
# YNNPACK at all (EIGEN_DOTS) XLA:CPU splits each row reduction (norms, softmax, the norms' and
# biases' gradients) into reduce-window + reduce: 16% of the 25M update's op time
# (docs/performance.md, session 12).
TRAIN_CPU_OPTIONS = {YNN_FLAG.lstrip("-"): "LIBRARY_FUSION_TYPE_REDUCE"}
MAX_AUTO_CPU_DEVICES = 8
# From this many non-embedding parameters, 'auto' gives one CPU device. Measured on 2 cores
# (docs/performance.md, session 7): the 3.2M peers-table model runs its GRPO step faster on two
# devices (2.43-2.49 s against 2.77-2.96 s), the 25M shape on one (17.4-17.7 s against 19.0 s;
# decode 58-61 against 82-97 ms a step at batch 64): its matmuls keep both cores busy from one
# program, and two devices' programs contend for them. The threshold sits between the two.
AUTO_ONE_DEVICE_PARAMS = 10_000_000
# From this many non-embedding parameters, cpu_malloc='auto' keeps freed memory: the 25M shape's
# update halves with it; the d = 128 models' GRPO step measured 10-17% slower (session 18) and
# level within the noise (session 19); the 3.2M peers-table model showed no difference beyond the
# noise (docs/performance.md).
KEEP_MEMORY_PARAMS = 10_000_000


# grad_accum_steps=0 (auto) on a CPU backend: the update's batch is split into microbatches of at
# most this much estimated activation memory (`activation_bytes`). XLA:CPU maps a program's
# temporaries as one block per run, and glibc maps a block that big afresh each time (page faults,
# zeroing): smaller microbatches reuse freed memory and stay in cache. Measured on 2 cores
# (docs/performance.md, session 20), updates in one batch against the microbatches this gives:
# the peers table 0.81-0.97 s against 0.77 s (2), its 25M shape 9.3 s against 5.5-6.4 s (8),
# the quickstart's R1-Zero (d = 128, 128 rows) 0.44-0.53 s against 0.39 s (4); a pretrain step
# (est. 168 MB) is not split. GPU / TPU updates are never split (auto = 1 there).
CPU_MICROBATCH_BYTES = 256 << 20
_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "float64": 8}

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
# Device files of the accelerators JAX drives: NVIDIA and AMD GPUs, TPUs (v4+ /dev/accel*, v5+
# VFIO groups).
_ACCELERATOR_FILES = ("/dev/nvidia[0-9]*", "/dev/kfd", "/dev/accel[0-9]*", "/dev/vfio/[0-9]*")
CPU_MALLOC_CHOICES = ("auto", "keep", "system")


def accelerator_present(platforms: str | None = None) -> bool:
  """Whether JAX will run on a GPU / TPU here, judged without starting a backend: from
  `platforms` (default: `JAX_PLATFORMS`, else `jax_platforms`) when set, else from the
  accelerators' device files."""
  if platforms is None:
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if not platforms:
      try:
        import jax   # pylint: disable=import-outside-toplevel
        platforms = jax.config.jax_platforms or ""
      except Exception:   # pylint: disable=broad-except
        platforms = ""
  if platforms:
    return any(p.strip() not in ("", "cpu") for p in platforms.split(","))
  return any(glob.glob(pattern) for pattern in _ACCELERATOR_FILES)


def keep_freed_memory() -> bool:
  """Makes glibc's malloc keep the memory a program frees for the next one: an arena per usable
  core (not glibc's 8 per core, whose heaps are unmapped when they empty), no `mmap`ed blocks,
  no trimming. Without this, XLA:CPU's big buffers go back to the OS at every
  free and are page-faulted (and zeroed by the kernel) in again at the next step. Returns False
  where there is no glibc `mallopt` (macOS, musl's no-op) or the user's `MALLOC_*` /
  `GLIBC_TUNABLES` environment chooses. The arena count only holds if it comes before the
  process's threads first allocate: call it before JAX starts (`configure_cpu` does)."""
  if any(k.startswith("MALLOC_") or k == "GLIBC_TUNABLES" for k in os.environ):
    return False
  try:
    mallopt = ctypes.CDLL(None).mallopt
  except (OSError, AttributeError):
    return False
  mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
  # -1 is glibc's SIZE_MAX here: never trim.
  return all(mallopt(p, v) == 1 for p, v in ((_M_ARENA_MAX, usable_cores()), (_M_MMAP_MAX, 0),
                                             (_M_TRIM_THRESHOLD, -1)))


def usable_cores() -> int:
  """The CPU cores this process may run on: its affinity mask where the OS has one (a child pinned
  by `taskset` or `experiments/r1_findings.py --jobs` sees its own share), else every core."""
  if hasattr(os, "sched_getaffinity"):
    return len(os.sched_getaffinity(0)) or 1
  return os.cpu_count() or 1


def auto_cpu_devices(cores: int | None = None, model_params: int | None = None) -> int:
  """One device per core, rounded down to a power of two (batch sizes divide it), <= 8; one
  device for a model of `AUTO_ONE_DEVICE_PARAMS` non-embedding parameters or more. The cores are
  those this process may run on (`taskset`, a cpuset), not the machine's."""
  if model_params is not None and model_params >= AUTO_ONE_DEVICE_PARAMS:
    return 1
  cores = cores or usable_cores()
  n = 1
  while n * 2 <= min(cores, MAX_AUTO_CPU_DEVICES):
    n *= 2
  return n


def activation_bytes(model_cfg, tokens: int, seq_len: int) -> int:
  """Estimated bytes a training step of `tokens` tokens (rows of `seq_len`) keeps for its backward
  pass: per token and layer four d-vectors (norms, attention output, residuals), q, k and v, the
  MLP's three hidden vectors and the attention probabilities over `seq_len`; plus the logits
  twice. For the peers table's model at its step (64 rows of 96 tokens) this is 448 MB, against
  the 468 MiB temp buffer XLA:CPU allocates for it."""
  c = model_cfg
  per_layer = (4 * c.embed_dim + c.head_dim * (c.num_heads + 2 * c.num_kv_heads)
               + 3 * c.mlp_dim + c.num_heads * seq_len)
  floats = c.num_layers * per_layer + 2 * c.vocab_size
  return tokens * floats * _DTYPE_BYTES.get(str(c.dtype), 4)


def auto_grad_accum(model_cfg, rows: int, seq_len: int, group_size: int = 1,
                    batch_shards: int = 1, backend: str | None = None) -> int:
  """`optim.grad_accum_steps=0` (auto): 1 unless the step runs on the CPU backend; there the fewest
  microbatches (a power of two) whose `activation_bytes` fit in `CPU_MICROBATCH_BYTES`, but no
  more than leave every microbatch a whole number of groups (`group_size` rows) on each of the
  batch's `batch_shards` shards."""
  if backend is None:
    import jax   # pylint: disable=import-outside-toplevel
    backend = jax.default_backend()
  if backend != "cpu":
    return 1
  groups = rows // max(1, group_size)
  need = -(-activation_bytes(model_cfg, rows * seq_len, seq_len) // CPU_MICROBATCH_BYTES)
  n = 1
  while n < need and groups % (2 * n * max(1, batch_shards)) == 0:
    n *= 2
  return n


def grad_accum_steps(value: int, model_cfg, rows: int, seq_len: int, group_size: int = 1,
                     batch_shards: int = 1) -> int:
  """A config's `optim.grad_accum_steps` as a count: 0 (auto) is `auto_grad_accum`'s choice."""
  if value:
    return int(value)
  n = auto_grad_accum(model_cfg, rows, seq_len, group_size, batch_shards)
  log.info("grad_accum_steps=0 (auto): %d microbatch(es) of %d rows", n, rows // n)
  return n


def non_embedding_params(model_cfg) -> int:
  """Parameters of the transformer layers of a `ModelConfig` (embeddings, norms, biases excluded):
  the weights every token's forward pass multiplies by."""
  d, hd = model_cfg.embed_dim, model_cfg.head_dim
  attn = d * hd * (2 * model_cfg.num_heads + 2 * model_cfg.num_kv_heads)
  return model_cfg.num_layers * (attn + 3 * d * model_cfg.mlp_dim)


def model_params_of(config) -> int | None:
  """`non_embedding_params` of the largest model a stage config (or a pipeline's stages) names,
  read from the config and `init_from`'s model config alone (no JAX backend); None if unknown."""
  from r1jax import experiment   # pylint: disable=import-outside-toplevel
  stages = config.get("stages") if hasattr(config, "get") else None
  found = []
  for c in (list(stages.values()) if stages else [config]):
    try:
      found.append(non_embedding_params(experiment.model_config_from(c)))
    except Exception:   # pylint: disable=broad-except
      continue        # e.g. a pipeline stage whose init_from is a stage not yet run
  return max(found) if found else None


def _backends_started() -> bool:
  try:
    from jax._src import xla_bridge
    return bool(xla_bridge.backends_are_initialized())
  except Exception:  # private API moved: assume started, so nothing is changed under JAX
    return True


def configure_cpu(cpu_devices: int | str = "auto", cpu_matmul: str = "eigen",
                  model_params: int | None = None, cpu_malloc: str = "auto") -> dict:
  """Sets the CPU device count, the training programs' matmuls and the host allocator; returns
  what was applied.

  cpu_devices: 'auto' (`auto_cpu_devices(model_params=model_params)`), or a count; 0 leaves
    JAX's default (1).
  cpu_matmul: the training programs' dots on CPU: 'eigen' (XLA's own; `train_jit_kwargs`) or
    'ynnpack' (XLA:CPU's default, which the sampler always uses).
  cpu_malloc: 'auto' (`keep_freed_memory` when no GPU / TPU is found and `model_params` is
    known and at least `KEEP_MEMORY_PARAMS`), 'keep' (always), or 'system' (the C library's
    defaults).
  Call before the first JAX computation: once a backend exists the device count cannot
  change (a notebook should call it in its first cell); the matmul choice still applies.
  """
  if cpu_matmul not in ("eigen", "ynnpack"):
    raise ValueError(f"cpu_matmul={cpu_matmul!r}: expected 'eigen' or 'ynnpack'")
  if cpu_malloc not in CPU_MALLOC_CHOICES:
    raise ValueError(f"cpu_malloc={cpu_malloc!r}: expected one of {CPU_MALLOC_CHOICES}")
  if isinstance(cpu_devices, str):
    if cpu_devices != "auto":
      raise ValueError(f"cpu_devices={cpu_devices!r}: expected 'auto' or a device count")
    n = auto_cpu_devices(model_params=model_params)
  else:
    n = int(cpu_devices)
    if n < 0:
      raise ValueError(f"cpu_devices={cpu_devices} must be >= 0")
  global _train_matmul
  _train_matmul = cpu_matmul   # read at jit time by train_jit_kwargs (no backend needed)
  applied = {"cpu_matmul": cpu_matmul}
  big = model_params is not None and model_params >= KEEP_MEMORY_PARAMS
  if cpu_malloc == "keep" or (cpu_malloc == "auto" and big and not accelerator_present()):
    if keep_freed_memory():
      applied["cpu_malloc"] = "keep"
  flags = os.environ.get("XLA_FLAGS", "")
  user_count = ("JAX_NUM_CPU_DEVICES" in os.environ
                or "--xla_force_host_platform_device_count" in flags)
  if _backends_started():
    log.info("configure_cpu: JAX backends already started; the CPU device count is left as is")
    return applied
  import jax
  if n > 0 and not user_count and jax.config.jax_num_cpu_devices in (-1, 1):
    jax.config.update("jax_num_cpu_devices", n)
    applied["cpu_devices"] = n
  return applied


_train_matmul = "eigen"   # CommonConfig.cpu_matmul's default, until configure_cpu sets it


def train_jit_kwargs() -> dict:
  """`jax.jit` keyword arguments for a training program (update, reference / pi_old pass):
  Eigen dots and YNNPACK reductions (`TRAIN_CPU_OPTIONS`) on the CPU backend when
  `cpu_matmul='eigen'` and the user's XLA_FLAGS do not choose YNNPACK's fusions themselves;
  {} elsewhere."""
  if _train_matmul != "eigen" or YNN_FLAG in os.environ.get("XLA_FLAGS", ""):
    return {}
  import jax
  if jax.default_backend() != "cpu":
    return {}
  return {"compiler_options": dict(TRAIN_CPU_OPTIONS)}


def configure_cpu_from(config) -> dict:
  """`configure_cpu` with a stage's (or a pipeline's) `cpu_devices` / `cpu_matmul` / `cpu_malloc`
  fields; 'auto' devices and allocator also look at the size of the model the config names
  (`model_params_of`)."""
  from r1jax.stage_config import CommonConfig
  get = config.get if hasattr(config, "get") else lambda k, d: getattr(config, k, d)
  devices = get("cpu_devices", CommonConfig.cpu_devices)
  malloc = get("cpu_malloc", CommonConfig.cpu_malloc)
  wanted = (devices == "auto" and not _backends_started()) or malloc == "auto"
  params = model_params_of(config) if wanted else None
  return configure_cpu(devices, get("cpu_matmul", CommonConfig.cpu_matmul), model_params=params,
                       cpu_malloc=malloc)
