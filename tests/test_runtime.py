"""r1jax.runtime: the CPU device count and matmul library, set before JAX starts."""
import json
import os
import subprocess
import sys

import jax
import pytest

from r1jax import runtime

PROBE = """
import json, os, jax, jax.numpy as jnp
from r1jax import runtime
applied = runtime.configure_cpu(*json.loads(os.environ["ARGS"]))
hlo = jax.jit(lambda a, b: a @ b).lower(jnp.ones((8, 8)), jnp.ones((8, 8))).compile().as_text()
again = runtime.configure_cpu(1, "eigen")  # the backend has started: nothing changes
print(json.dumps(dict(applied=applied, devices=len(jax.devices()), ynn="ynn" in hlo, again=again)))
"""


def _probe(args, **env):
  env = {**{k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")},
         "ARGS": json.dumps(args), "JAX_PLATFORMS": "cpu", **env}
  out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                       timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("cores,expected", [(1, 1), (2, 2), (3, 2), (6, 4), (8, 8), (96, 8)])
def test_auto_cpu_devices_is_a_power_of_two_per_core(cores, expected):
  assert runtime.auto_cpu_devices(cores) == expected


def test_defaults_split_the_cpu_and_use_eigen_matmuls():
  r = _probe(["auto", "eigen"])
  assert r["devices"] == runtime.auto_cpu_devices()
  assert r["applied"]["cpu_matmul"] == "eigen" and not r["ynn"]
  assert r["again"] == {}


def test_ynnpack_and_explicit_count():
  r = _probe([3, "ynnpack"])
  assert r["devices"] == 3 and r["ynn"] and "cpu_matmul" not in r["applied"]


def test_the_users_environment_wins():
  r = _probe(["auto", "eigen"], JAX_NUM_CPU_DEVICES="1",
             XLA_FLAGS="--xla_cpu_experimental_ynn_fusion_type=individual_dot")
  assert r["devices"] == 1 and r["ynn"] and r["applied"] == {}


def test_bad_values_raise():
  with pytest.raises(ValueError, match="cpu_matmul"):
    runtime.configure_cpu("auto", "mkl")
  with pytest.raises(ValueError, match="cpu_devices"):
    runtime.configure_cpu("many")


def test_the_test_session_runs_eigen_on_8_devices():
  assert len(jax.devices()) == 8
  assert runtime.YNN_FLAG in os.environ.get("XLA_FLAGS", "")
