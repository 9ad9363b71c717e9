"""r1jax.runtime: the CPU device count (set before JAX starts) and the training programs' dots."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from r1jax import runtime

PROBE = """
import json, os, jax, jax.numpy as jnp
from r1jax import runtime
applied = runtime.configure_cpu(*json.loads(os.environ["ARGS"]))
x = jnp.ones((8, 8))
hlo = lambda **kw: jax.jit(lambda a, b: a @ b, **kw).lower(x, x).compile().as_text()
seen = dict(plain_ynn="ynn" in hlo(), train_ynn="ynn" in hlo(**runtime.train_jit_kwargs()))
again = runtime.configure_cpu(1, "eigen")  # the backend has started: the count stays
print(json.dumps(dict(applied=applied, devices=len(jax.devices()), again=again, **seen)))
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


def test_defaults_split_the_cpu_and_give_training_programs_eigen_dots():
  r = _probe(["auto", "eigen"])
  assert r["devices"] == runtime.auto_cpu_devices()
  assert r["applied"]["cpu_devices"] == runtime.auto_cpu_devices() or r["devices"] == 1
  assert r["plain_ynn"] and not r["train_ynn"]   # the sampler keeps YNNPACK, training has Eigen
  assert "cpu_devices" not in r["again"]


def test_ynnpack_and_explicit_count():
  r = _probe([3, "ynnpack"])
  assert r["devices"] == 3 and r["plain_ynn"] and r["train_ynn"]


def test_the_users_environment_wins():
  r = _probe(["auto", "eigen"], JAX_NUM_CPU_DEVICES="1",
             XLA_FLAGS="--xla_cpu_experimental_ynn_fusion_type=individual_dot")
  assert r["devices"] == 1 and r["train_ynn"] and "cpu_devices" not in r["applied"]


def test_bad_values_raise():
  with pytest.raises(ValueError, match="cpu_matmul"):
    runtime.configure_cpu("auto", "mkl")
  with pytest.raises(ValueError, match="cpu_devices"):
    runtime.configure_cpu("many")


def test_the_test_session_runs_8_devices_and_eigen_training_programs():
  assert len(jax.devices()) == 8
  x = jnp.ones((8, 8))
  hlo = jax.jit(lambda a: a @ a, **runtime.train_jit_kwargs()).lower(x).compile().as_text()
  assert "ynn" not in hlo
