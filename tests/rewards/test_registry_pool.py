"""Registry, reward system and worker pool: combination, metrics, timeouts, crashes, replacement, shutdown."""
import os
import time

import ml_collections
import numpy as np
import pytest

import r1jax.rewards as R
from r1jax.rewards import pool as rpool
from r1jax.rewards import registry


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  try:   # a zombie still answers kill(0): check its state
    with open(f'/proc/{pid}/stat') as f:
      return f.read().split(')')[-1].split()[0] != 'Z'
  except FileNotFoundError:
    return False


@pytest.fixture(scope='module')
def pool():
  p = rpool.RewardPool(num_workers=2, timeout_s=2.0)
  yield p
  p.close()


def test_pool_ok_error_timeout_crash_and_replacement(pool):
  pids = pool.pids()
  t0 = time.monotonic()
  res = pool.map(rpool._debug_sleep, [((0.0, 3.0), {}), ((10.0,), {})], timeout_s=1.0)
  assert time.monotonic() - t0 < 4.0
  assert [r.status for r in res] == ['ok', 'timeout'] and res[0].value == 3.0
  assert pool.map(rpool._debug_crash, [((), {})])[0].status == 'crash'
  assert pool.map(rpool._debug_raise, [((), {})])[0].status == 'error'
  assert pool.healthy()
  assert set(pool.pids()) != set(pids)
  for pid in set(pids) - set(pool.pids()):
    assert not _alive(pid)
  got = pool.map(rpool._debug_pid, [((), {})] * 6)
  assert all(r.status == 'ok' for r in got) and {r.value for r in got} <= set(pool.pids())


def test_pool_async_submit_overlaps(pool):
  t0 = time.monotonic()
  fut = pool.submit(rpool._debug_sleep, [((0.5,), {})] * 2)
  assert time.monotonic() - t0 < 0.2 and not fut.done()
  assert [r.value for r in fut.result(timeout=5)] == [1.0, 1.0]


def test_pool_close_reaps_workers():
  p = rpool.RewardPool(num_workers=2, timeout_s=2.0)
  pids = p.pids()
  assert p.map(rpool._debug_pid, [((), {})])[0].status == 'ok'
  p.close()
  p.close()
  assert all(not _alive(pid) for pid in pids)
  assert p.submit(rpool._debug_pid, [((), {})]).result()[0].status == 'closed'


def test_registry_names_and_register():
  for name in ['accuracy', 'math', 'code', 'countdown', 'format', 'format_soft', 'tag_count', 'language',
               'overlong', 'cosine', 'repetition']:
    assert name in R.names()
  with pytest.raises(ValueError):
    R.register('format', lambda c, **k: np.zeros(len(c)))
  with pytest.raises(KeyError):
    R.get('nope')


@pytest.mark.skipif(bool(R.code.sandbox_problem()), reason='code sandbox unavailable')
def test_accuracy_dispatch():
  comps = ['\\boxed{2}', '<answer>(1+2)*4</answer>', '<answer>56</answer>', 'def f():\n  return 1\n']
  fields = dict(task=['gsm8k', 'countdown', 'arithmetic', 'humaneval'], answer=['2', None, None, None],
                numbers=[None, [1, 2, 4], None, None], target=[None, 12, 56, None],
                tests=[None, None, None, 'def check(c):\n  assert c() == 1\n'], entry_point=[None, None, None, 'f'])
  assert registry.accuracy_reward(comps, **fields).tolist() == [1.0, 1.0, 1.0, 1.0]
  assert registry.accuracy_reward(['\\boxed{3}'], answer=['2']).tolist() == [0.0]


COMPS = ['<think>so</think><answer>\\boxed{\\frac{1}{2}}</answer>', 'I think 0.5', 'junk', '<think>x</think>']
FIELDS = {'answer': ['0.5', '1/2', '3', '1'], 'completion_lengths': [10, 90, 200, 5]}


@pytest.mark.parametrize('num_workers', [0, 2])
def test_reward_system(num_workers):
  cfg = ml_collections.ConfigDict({
      'weights': {'accuracy': 1.0, 'format': 0.5, 'overlong': 1.0, 'tag_count': 0.0},
      'kwargs': {'overlong': {'max_tokens': 100, 'cache_tokens': 20}, 'format': {'prompt_opens_think': False}},
      'num_workers': num_workers, 'timeout_s': 5.0})
  with R.build_reward_system(cfg) as rs:
    res = rs.score(COMPS, FIELDS)
    assert res.total.dtype == np.float32 and res.total.shape == (4,)
    np.testing.assert_allclose(res.components['accuracy'], [1, 1, 0, 0])
    np.testing.assert_allclose(res.components['format'], [1, 0, 0, 0])
    np.testing.assert_allclose(res.components['overlong'], [0, -0.5, -1, 0])
    np.testing.assert_allclose(res.total, [1.5, 0.5, -1, 0])
    m = res.metrics
    assert m['accuracy_rate'] == 0.5 and m['format_rate'] == 0.25 and m['reward/timeouts'] == 0
    assert m['reward/errors'] == 0 and m['reward/accuracy_mean'] == 0.5 and 'reward/tag_count_mean' in m
    res2 = rs.submit(COMPS, FIELDS).result(timeout=30)
    np.testing.assert_allclose(res2.total, res.total)


def test_reward_system_counts_failures_instead_of_raising():
  with R.build_reward_system({'weights': {'math': 1.0, 'overlong': 1.0, 'cosine': 0.0},
                              'num_workers': 0}) as rs:
    res = rs.score(['\\boxed{1}', 'x'], {'answer': ['1', '1']})   # no completion_lengths: shaping errors
  assert res.components['math'].tolist() == [1.0, 0.0]
  assert res.components['overlong'].tolist() == [0.0, 0.0]
  assert res.metrics['reward/errors'] == 4   # overlong and cosine, 2 items each


def test_reward_system_config_errors():
  with pytest.raises(KeyError):
    R.build_reward_system({'weights': {'nope': 1.0}})
  with pytest.raises(KeyError):
    R.build_reward_system({'weights': {'format': 1.0}, 'extra': 1})
  with pytest.raises(ValueError):
    R.build_reward_system({'weights': {}})


def test_pool_workers_have_scrubbed_env_and_memory_cap(monkeypatch):
  monkeypatch.setenv('R1JAX_TEST_CLOUD_TOKEN', 'secret')
  with rpool.RewardPool(num_workers=1, timeout_s=20.0, memory_mb=1024) as p:
    env = p.map(rpool._debug_env, [((), {})])[0]
    assert env.status == 'ok' and 'R1JAX_TEST_CLOUD_TOKEN' not in env.value and 'PATH' in env.value
    big, small = p.map(rpool._debug_alloc, [((1536,), {}), ((64,), {})])
    assert big.status in ('error', 'crash') and small.status == 'ok'   # a MemoryError, not 1.5 GB of the host
    assert p.healthy()


def _chunk_echo(completions, value=None, **kwargs):
  """Pooled in chunks: returns each row's `value`; a chunk with a 'bad' completion raises as a whole."""
  del kwargs
  if 'bad' in completions:
    raise ValueError('bad chunk')
  return np.asarray(value, np.float32)


def test_chunked_pooled_reward_keeps_rows_aligned_and_isolates_a_failing_chunk():
  registry.register('test_chunk_echo', _chunk_echo, pooled=True, chunked=True, overwrite=True)
  n = 40
  comps = ['ok'] * n
  comps[33] = 'bad'
  with R.RewardSystem({'test_chunk_echo': 1.0}, num_workers=2, timeout_s=5.0) as system:
    res = system.score(comps, {'value': np.arange(n, dtype=np.float32)})
  st = res.statuses['test_chunk_echo']
  bad = [i for i, s in enumerate(st) if s != 'ok']
  assert st[33] == 'error' and 1 < len(bad) < n // 2 and bad == list(range(bad[0], bad[-1] + 1))
  ok = [i for i in range(n) if i not in bad]
  np.testing.assert_array_equal(res.components['test_chunk_echo'][ok], np.asarray(ok, np.float32))
  assert (res.components['test_chunk_echo'][bad] == 0).all() and res.metrics['reward/errors'] == len(bad)


_UNGUARDED = '''
import os, pathlib, sys
out = pathlib.Path(sys.argv[1])
(out / f"imported-{os.getpid()}").touch()
from r1jax import run as run_lib
run_lib.refuse_in_spawned_import()          # what r1jax.run.run does first
(out / f"trained-{os.getpid()}").touch()    # "training": must happen in the parent only
from r1jax.rewards import pool as rpool
p = rpool.RewardPool(num_workers=1, timeout_s=2.0)
try:
  p.map(rpool._debug_sleep, [((0.0, 1.0), {})])
  print("SCORED")
except rpool.RewardPoolError as e:
  print("POOL ERROR:", e)
  try:
    p.submit(rpool._debug_sleep, [((0.0, 1.0), {})])
  except rpool.RewardPoolError:
    print("LATER SUBMIT RAISES")
p.close()
'''


def test_unguarded_script_trains_once_and_the_pool_gives_up(tmp_path):
  """A script that starts work at import time, with no `if __name__ == '__main__':` guard: every
  spawned worker imports it first. `refuse_in_spawned_import` (r1jax.run.run's first line) stops the
  worker before it trains, and the pool raises RewardPoolError after MAX_STARTUP_FAILURES workers in
  a row died, instead of respawning them forever or scoring the items 0."""
  import subprocess
  import sys
  script = tmp_path / 'unguarded.py'
  script.write_text(_UNGUARDED)
  proc = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True,
                        text=True, timeout=240)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'POOL ERROR:' in proc.stdout and "if __name__ == '__main__':" in proc.stdout, proc.stdout
  assert 'LATER SUBMIT RAISES' in proc.stdout and 'SCORED' not in proc.stdout
  imported = list(tmp_path.glob('imported-*'))
  assert len(imported) == 1 + rpool.MAX_STARTUP_FAILURES, imported   # the parent and each worker
  assert [p.name for p in tmp_path.glob('trained-*')] == [f'trained-{_parent_pid(imported)}']
  assert 'was called while a spawned worker process imported the main script' in proc.stderr


def _parent_pid(imported):
  """The parent's pid: the first of the import markers (the parent imports the script first)."""
  return min(imported, key=lambda p: p.stat().st_mtime_ns).name.split('-')[1]


def test_refuse_in_spawned_import_is_quiet_in_the_main_process():
  from r1jax import run as run_lib
  run_lib.refuse_in_spawned_import()
