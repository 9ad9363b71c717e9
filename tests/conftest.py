"""Test setup: an 8-device CPU mesh, configured before any JAX backend starts."""
import os

# Must happen before jax initialises a backend: every test sees 8 CPU devices, so the
# sharded code paths (data, fsdp, tensor axes) really run sharded in CI.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
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
