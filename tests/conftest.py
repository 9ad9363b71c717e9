"""Test setup: an 8-device CPU mesh, configured before any JAX backend starts."""
import os

# Must happen before jax initialises a backend: every test sees 8 CPU devices, so the
# sharded code paths (data, fsdp, tensor axes) really run sharded in CI.
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _share_compilations() -> None:
  """A persistent XLA compilation cache for this test session (a fresh directory, removed at
  exit): many tests compile the same tiny programs (new jitted closures of the same model), and
  on 2 cores compiling is much of the suite's time (tests/rl/test_trainer.py: 282 -> 203 s).
  Set through the environment, so pytest-xdist workers and the tests' subprocesses (CLI,
  multi-host) share it. A directory the user chose (JAX_COMPILATION_CACHE_DIR) is kept."""
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return
  import atexit
  import shutil
  import tempfile
  d = tempfile.mkdtemp(prefix="r1jax-tests-xla-cache-")
  atexit.register(shutil.rmtree, d, ignore_errors=True)
  os.environ.update(JAX_COMPILATION_CACHE_DIR=d, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")


_share_compilations()
import jax  # noqa: E402

from r1jax import runtime  # noqa: E402

# What `python -m r1jax.main` sets on a CPU (Eigen dots in the training programs), 8 devices.
runtime.configure_cpu(cpu_devices=8)
assert jax.config.jax_num_cpu_devices == 8, "a backend started before conftest ran"
jax.config.update("jax_enable_x64", False)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def devices():
  devs = jax.devices()
  assert len(devs) == 8, f"expected 8 CPU devices, got {len(devs)}"
  return devs
