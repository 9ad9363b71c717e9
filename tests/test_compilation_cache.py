"""`config.compilation_cache_dir`: compiled programs persist across processes (restarts)."""
import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import sys, jax, jax.numpy as jnp, ml_collections
    from r1jax.run import enable_compilation_cache
    c = ml_collections.ConfigDict(dict(compilation_cache_dir=sys.argv[1]))
    assert enable_compilation_cache(c) == sys.argv[1]
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    print(float(jax.jit(lambda x: jnp.sin(x) * 3 + 1)(jnp.arange(5.0)).sum()))
""")


def test_compilation_cache_dir(tmp_path):
  cache = tmp_path / "xla_cache"
  env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
  run = lambda: subprocess.run([sys.executable, "-c", SCRIPT, str(cache)], env=env,
                               capture_output=True, text=True, timeout=120)
  first = run()
  assert first.returncode == 0, first.stderr[-2000:]
  entries = sorted(p.name for p in cache.iterdir())
  assert entries, "nothing was written to the cache"
  second = run()  # a restart: same program, same cache
  assert second.returncode == 0 and second.stdout == first.stdout
  assert sorted(p.name for p in cache.iterdir()) == entries  # reused, nothing new compiled


def test_no_cache_dir_is_a_no_op():
  import ml_collections
  from r1jax.run import enable_compilation_cache
  assert enable_compilation_cache(ml_collections.ConfigDict(dict(compilation_cache_dir=""))) is None
