"""r1jax.runtime: the CPU device count (set before JAX starts) and the training programs' dots."""
import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from r1jax import runtime

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = """
import json, os
if os.environ.get("CPUS"):   # pinned before JAX starts, as `taskset` would
  os.sched_setaffinity(0, json.loads(os.environ["CPUS"]))
import jax, jax.numpy as jnp
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


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_auto_counts_the_cores_the_process_may_use():
  """A process pinned to one core (`taskset`, or `r1_findings.py --jobs 2` on 2 cores) gets one
  device, not one per core of the machine: two devices' programs would share its core."""
  one = sorted(os.sched_getaffinity(0))[:1]
  assert _probe(["auto", "eigen"], CPUS=json.dumps(one))["devices"] == 1
  assert runtime.usable_cores() == len(os.sched_getaffinity(0))


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
  with pytest.raises(ValueError, match="cpu_malloc"):
    runtime.configure_cpu("auto", "eigen", cpu_malloc="jemalloc")
  with pytest.raises(ValueError, match="cpu_devices"):
    runtime.configure_cpu("many")


def test_the_test_session_runs_8_devices_and_eigen_training_programs():
  assert len(jax.devices()) == 8
  x = jnp.ones((8, 8))
  hlo = jax.jit(lambda a: a @ a, **runtime.train_jit_kwargs()).lower(x).compile().as_text()
  assert "ynn" not in hlo


def test_training_programs_keep_ynnpack_reductions():
  """Eigen dots, but YNNPACK's row reductions: without them XLA:CPU splits each reduction into
  reduce-window + reduce (docs/performance.md, session 12)."""
  x = jnp.ones((64, 512))
  hlo = jax.jit(lambda a: jnp.sum(a * a, -1), **runtime.train_jit_kwargs()).lower(x).compile(
      ).as_text()
  assert "ynn" in hlo and "reduce-window" not in hlo
  eigen_only = jax.jit(lambda a: jnp.sum(a * a, -1), compiler_options=runtime.EIGEN_DOTS).lower(
      x).compile().as_text()
  assert "reduce-window" in eigen_only      # what the option avoids


def test_auto_gives_large_models_one_device():
  assert runtime.auto_cpu_devices(2, model_params=runtime.AUTO_ONE_DEVICE_PARAMS) == 1
  assert runtime.auto_cpu_devices(2, model_params=runtime.AUTO_ONE_DEVICE_PARAMS - 1) == 2
  assert runtime.auto_cpu_devices(8, model_params=None) == 8


def _config(name, arg):
  from r1jax.config import sibling_config
  return sibling_config(os.path.join(REPO, "configs", "x.py"), name).get_config(arg)


def test_model_params_of_a_stage_and_a_pipeline(tmp_path):
  from r1jax import experiment
  from r1jax.models.config import ModelConfig
  tiny = ModelConfig()   # the defaults: d 128, 4 layers, 4 heads of 32, 2 kv heads, mlp 384
  assert runtime.non_embedding_params(tiny) == 4 * (128 * 32 * 12 + 3 * 128 * 384)
  sft = _config("sft", "tiny")
  assert runtime.model_params_of(sft) < runtime.AUTO_ONE_DEVICE_PARAMS
  # The 25M shape of benchmarks/peers.py, set on the stage: one device.
  sft.model.overrides.update(embed_dim=512, mlp_dim=1536, num_layers=8, num_heads=8,
                             num_kv_heads=4, head_dim=64)
  assert runtime.model_params_of(sft) == 8 * (512 * 64 * 24 + 3 * 512 * 1536)
  assert runtime.auto_cpu_devices(2, runtime.model_params_of(sft)) == 1
  # A pipeline: the largest stage whose model is known; a stage that starts from a stage not
  # yet run is skipped.
  pipe = _config("r1_pipeline", "tiny")
  assert runtime.model_params_of(pipe) == runtime.non_embedding_params(
      experiment.model_config_from(pipe.stages[pipe.order[0]]))
  # A stage that starts from a r1jax workdir reads its model_config.json.
  experiment.save_model_config(tiny.replace(num_layers=100), tmp_path)
  rl = _config("r1_zero", "tiny")
  rl.init_from = str(tmp_path)
  assert runtime.model_params_of(rl) == 25 * runtime.non_embedding_params(tiny)
  # ... and a Hugging Face directory its config.json (the peers benchmark's 25m checkpoint shape).
  hf_dir = tmp_path / "hf"
  hf_dir.mkdir()
  (hf_dir / "config.json").write_text(json.dumps(dict(
      model_type="qwen2", architectures=["Qwen2ForCausalLM"], vocab_size=1024, hidden_size=512,
      intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
      tie_word_embeddings=True, max_position_embeddings=4096, rope_theta=10000.0,
      rms_norm_eps=1e-6)))
  (hf_dir / "model.safetensors").write_bytes(b"")
  rl.init_from = str(hf_dir)
  assert runtime.model_params_of(rl) == 8 * (512 * 64 * 24 + 3 * 512 * 1536)


def test_configure_cpu_from_a_25m_stage_gives_one_device():
  script = f"""
import json, jax
from r1jax import runtime
from r1jax.config import sibling_config
c = sibling_config("{REPO}/configs/x.py", "sft").get_config("tiny")
c.model.overrides.update(embed_dim=512, mlp_dim=1536, num_layers=8, num_heads=8, num_kv_heads=4,
                         head_dim=64)
print(json.dumps(dict(applied=runtime.configure_cpu_from(c), devices=len(jax.devices()))))
"""
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
  out = subprocess.run([sys.executable, "-c", script], env=dict(env, JAX_PLATFORMS="cpu"),
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  r = json.loads(out.stdout.strip().splitlines()[-1])
  assert r["devices"] == 1 and r["applied"]["cpu_devices"] == 1
  assert r["applied"]["cpu_malloc"] == "keep"   # a 25M model on a CPU host


MALLOC_PROBE = """
import json, os, resource, sys
import numpy as np
from r1jax import runtime
applied = runtime.configure_cpu(0, "eigen", model_params=int(os.environ["PARAMS"]),
                                cpu_malloc=os.environ["MODE"])
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones((4096, 4096), np.float32)   # 64 MiB: above glibc's largest heap block, so mmap'd
before = faults()
for _ in range(4):
  np.ones((4096, 4096), np.float32)
print(json.dumps(dict(applied=applied, faults=(faults() - before) / 4)))
"""


def _malloc_probe(mode, params=runtime.KEEP_MEMORY_PARAMS, **env):
  env = {**{k: v for k, v in os.environ.items()
            if not (k.startswith("MALLOC_") or k == "GLIBC_TUNABLES")},
         "MODE": mode, "PARAMS": str(params), "JAX_PLATFORMS": "cpu", **env}
  out = subprocess.run([sys.executable, "-c", MALLOC_PROBE], env=env, capture_output=True,
                       text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_buffers_are_reused_not_page_faulted_in_again():
  """XLA:CPU's big buffers come and go at every step; glibc returns such blocks to the OS, and
  the next step page-faults them in again (the 25M update: 13.1 -> 4.9 s, docs/performance.md
  session 18). 'auto' on a CPU host keeps them for a model of 10M+ parameters; for a small model
  the setting measured no faster (slower in session 18), so 'auto' leaves it alone."""
  kept = _malloc_probe("auto")
  assert kept["applied"].get("cpu_malloc") == "keep"
  assert kept["faults"] < 50, kept
  system = _malloc_probe("system")
  assert "cpu_malloc" not in system["applied"]
  assert system["faults"] > 200, system       # 64 MiB a time: hundreds of faults even with THP
  small = _malloc_probe("auto", params=runtime.KEEP_MEMORY_PARAMS - 1)
  assert "cpu_malloc" not in small["applied"] and small["faults"] > 200, small
  # The user's own allocator settings win.
  users = _malloc_probe("keep", MALLOC_ARENA_MAX="4")
  assert "cpu_malloc" not in users["applied"] and users["faults"] > 200, users


def test_auto_malloc_is_for_cpu_hosts_only(monkeypatch):
  assert not runtime.accelerator_present("cpu")
  assert runtime.accelerator_present("cuda,cpu") and runtime.accelerator_present("tpu")
  # Nothing chosen: the device files decide.
  monkeypatch.setattr(runtime.glob, "glob", lambda p: ["/dev/accel0"] if "accel" in p else [])
  assert runtime.accelerator_present("")
  monkeypatch.setattr(runtime.glob, "glob", lambda p: [])
  assert not runtime.accelerator_present("")
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  assert not runtime.accelerator_present()


def _table_model():
  from r1jax.models.config import ModelConfig   # benchmarks/peers.py's table model
  return ModelConfig(family="qwen2", vocab_size=1024, embed_dim=256, mlp_dim=704, num_layers=4,
                     num_heads=4, num_kv_heads=2, head_dim=64)


def test_activation_estimate_is_near_xlas_temp_buffer():
  # XLA:CPU's temp buffer for the table's update (64 rows of 96 tokens) is 468 MiB.
  est = runtime.activation_bytes(_table_model(), 64 * 96, 96)
  assert 0.8 * (468 << 20) < est < 1.2 * (468 << 20)


def test_auto_grad_accum_splits_cpu_updates_into_whole_groups_per_shard():
  table = _table_model()
  assert runtime.auto_grad_accum(table, 64, 96, 8, 2, backend="cpu") == 2
  assert runtime.auto_grad_accum(table, 64, 96, 8, 2, backend="tpu") == 1
  assert runtime.auto_grad_accum(table, 64, 96, 8, 2, backend="gpu") == 1
  # Never fewer than a whole group per shard in a microbatch: 8 groups on 8 shards stay whole.
  assert runtime.auto_grad_accum(table, 64, 96, 8, 8, backend="cpu") == 1
  # A big model hits that cap; a small batch needs no split.
  big = dataclasses.replace(table, num_layers=32)
  assert runtime.auto_grad_accum(big, 64, 96, 8, 2, backend="cpu") == 4
  assert runtime.auto_grad_accum(table, 8, 96, 1, 2, backend="cpu") == 1
  assert runtime.grad_accum_steps(3, table, 64, 96) == 3


@pytest.mark.parametrize("bad", [-1, "two", 1.5, True])
def test_bad_grad_accum_steps_raise(bad):
  from r1jax import stage_config
  with pytest.raises(ValueError, match="grad_accum_steps"):
    stage_config.OptimConfig(grad_accum_steps=bad)
