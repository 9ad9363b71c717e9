"""A process pool for reward items with a hard per-item timeout enforced from outside.

Why not `multiprocessing.Pool` / `concurrent.futures.ProcessPoolExecutor`: neither can kill one stuck task (sympy on an
adversarial expression, a C-level loop) without tearing the pool down, and a crashed worker breaks the executor.
Here a single dispatcher thread in the parent owns N `spawn`ed workers, one pipe each:
- an item that exceeds its deadline gets its worker SIGKILLed, joined (no zombie) and replaced, and scores 0 with
  status 'timeout'; a worker that dies (segfault, os._exit, OOM kill) is replaced and its item gets 'crash';
- workers never use signal-based timeouts (math-verify's are switched off in them), the parent's deadline is the only
  clock, so nothing depends on running in a main thread;
- workers ask the kernel to SIGKILL them when the parent dies (PR_SET_PDEATHSIG) and also poll their parent pid, so a
  crashed trainer leaves no orphans; `close()` (also at interpreter exit) stops and reaps them;
- `submit` returns a `concurrent.futures.Future`, so the trainer can overlap scoring with device work.
`spawn` (not fork) because the trainer process holds JAX threads, and forking a threaded process is unsafe.
A spawned worker imports the parent's main script first (Python's rule: guard its top-level work with
`if __name__ == '__main__':`); `r1jax.run.run` refuses to train inside that import, and after
`MAX_STARTUP_FAILURES` workers in a row die or hang before they are ready the pool raises `RewardPoolError`
instead of respawning them forever.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import itertools
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
import weakref
from multiprocessing.connection import wait as mp_wait
from typing import Any, Callable, Optional, Sequence

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ItemResult:
  """value is None unless status == 'ok'. latency_s is dispatch-to-result wall time."""
  value: Any
  status: str          # ok | error | timeout | crash | closed
  error: str = ''
  latency_s: float = 0.0


def _set_pdeathsig() -> None:
  try:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)   # PR_SET_PDEATHSIG
  except Exception:  # noqa: BLE001 - Linux only; the ppid poll below is the fallback
    pass


# Environment variables a worker keeps; everything else of the trainer's (tokens, keys, cloud credentials) is dropped
# before any item runs, so nothing a worker starts inherits it.
_ENV_KEEP = ('PATH', 'HOME', 'LANG', 'LC_ALL', 'LC_CTYPE', 'TMPDIR', 'PYTHONPATH', 'PYTHONHASHSEED', 'R1JAX_DATA_DIR',
             'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')


_ENV_KEEP_PREFIXES = ('JAX_', 'XLA_', 'TPU_', 'CUDA_', 'LD_LIBRARY_PATH')   # device selection, not secrets


def _scrub_env() -> None:
  keep = {k: v for k, v in os.environ.items() if k in _ENV_KEEP or k.startswith(_ENV_KEEP_PREFIXES)}
  os.environ.clear()
  os.environ.update(keep)
  os.environ.setdefault('OMP_NUM_THREADS', '1')
  os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')


def _limit_memory(memory_mb: Optional[int]) -> None:
  """Cap the worker's address space, so one sympy blow-up (`x^{10^6}`) is a MemoryError or a crash of this worker
  (scored 0, worker replaced), not gigabytes taken from the trainer's host."""
  if not memory_mb:
    return
  import resource
  limit = int(memory_mb) << 20
  try:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
      limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
  except (ValueError, OSError):
    pass


def _worker_main(conn, parent_pid: int, memory_mb: Optional[int] = None, warm_math: bool = False,
                 warmups: Sequence[Callable[[], Any]] = ()) -> None:
  """Worker loop: recv (task_id, fn, args, kwargs), send (task_id, ok, value_or_error). `warmups` run before the
  worker reports ready (e.g. loading the language identifier), so that loading is not charged to an item's timeout."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the parent's business
  _set_pdeathsig()
  _scrub_env()
  from r1jax.rewards import math as rmath
  from r1jax.rewards import registry  # noqa: F401 - import the verifiers before announcing readiness
  rmath.IN_WORKER = True
  warm = lambda: rmath.answers_match('\\sqrt{4}', '2')   # imports math-verify, builds its parsers (seconds)
  if warm_math:
    warm()
  else:   # meanwhile items that need no sympy (code, fast paths) are already served
    threading.Thread(target=warm, daemon=True).start()
  for fn in warmups:
    try:
      fn()
    except Exception:  # noqa: BLE001 - the item that needs it will fail (scored 0), not the worker
      log.warning('reward worker warm-up %r failed', fn, exc_info=True)
  _limit_memory(memory_mb)   # after the imports: the limit is for items, not for loading sympy
  try:
    conn.send(('ready', os.getpid()))
  except (EOFError, OSError):
    os._exit(0)
  while True:
    if os.getppid() != parent_pid:
      os._exit(0)
    try:
      if not conn.poll(1.0):
        continue
      msg = conn.recv()
    except (EOFError, OSError):
      os._exit(0)
    if msg is None:
      os._exit(0)
    task_id, fn, args, kwargs = msg
    try:
      reply = (task_id, True, fn(*args, **kwargs))
    except BaseException as e:  # noqa: BLE001 - reported to the parent, never fatal here
      reply = (task_id, False, f'{type(e).__name__}: {e}'[:500] + '\n' + traceback.format_exc(limit=3)[-500:])
    try:
      conn.send(reply)
    except Exception as e:  # noqa: BLE001 - e.g. an unpicklable return value
      try:
        conn.send((task_id, False, f'cannot send result: {e}'[:500]))
      except (EOFError, OSError):
        os._exit(0)


class _Worker:
  def __init__(self, ctx, index: int, memory_mb: Optional[int] = None, warm_math: bool = False,
               warmups: Sequence[Callable[[], Any]] = ()):
    self.conn, child_conn = ctx.Pipe(duplex=True)
    self.proc = ctx.Process(target=_worker_main, args=(child_conn, os.getpid(), memory_mb, warm_math, tuple(warmups)),
                            daemon=True, name=f'r1jax-reward-{index}')
    self.proc.start()
    child_conn.close()
    self.task: Optional[tuple] = None    # (job, index, t_start, deadline)
    self.ready = False                   # set when the worker has imported everything: startup is not item time
    self.started = time.monotonic()

  def kill(self) -> None:
    try:
      self.proc.kill()
    except (OSError, ValueError, AttributeError):
      pass
    self.proc.join(5.0)
    self.conn.close()


class _Job:
  def __init__(self, n: int):
    self.future: concurrent.futures.Future = concurrent.futures.Future()
    self.results: list[Optional[ItemResult]] = [None] * n
    self.remaining = n

  def fail(self, exc: BaseException) -> None:
    if not self.future.done():
      self.future.set_exception(exc)

  def set(self, i: int, res: ItemResult) -> None:
    if self.results[i] is None:
      self.results[i] = res
      self.remaining -= 1
      if self.remaining == 0 and not self.future.done():
        self.future.set_result(self.results)


# Workers in a row that may die or hang before they are ready before the pool gives up (`RewardPoolError`).
MAX_STARTUP_FAILURES = 3


class RewardPoolError(RuntimeError):
  """The pool cannot start workers (e.g. each one dies importing the main script)."""


class RewardPool:
  """N worker processes, started once, scoring (fn, args, kwargs) items with a per-item timeout."""

  def __init__(self, num_workers: int = 2, timeout_s: float = 5.0, mp_context: str = 'spawn',
               startup_timeout_s: float = 120.0, memory_mb: Optional[int] = 2048, warm_math: bool = False,
               warmups: Sequence[Callable[[], Any]] = ()):
    """memory_mb: address-space cap of each worker (RLIMIT_AS), None for none. Code runs are sandboxed and
    capped by their own cgroup; this bounds what sympy/math-verify may take. warm_math: a worker reports ready
    only once math-verify is imported (else it imports it in the background). warmups: module-level callables
    each worker (and each replacement) runs before it reports ready."""
    if num_workers < 1:
      raise ValueError('num_workers must be >= 1 (use inline scoring for 0)')
    self.num_workers, self.timeout_s = num_workers, float(timeout_s)
    self.startup_timeout_s = float(startup_timeout_s)
    self.memory_mb, self.warm_math, self.warmups = memory_mb, warm_math, tuple(warmups)
    self._ctx = mp.get_context(mp_context)
    self._lock = threading.Lock()
    self._pending: collections.deque = collections.deque()
    self._wake_r, self._wake_w = os.pipe()
    os.set_blocking(self._wake_w, False)
    self._closed = False     # no more work: close(), or the dispatcher gave up (_fatal)
    self._shut = False       # close() ran: workers reaped, pipes closed
    self._ids = itertools.count()
    self.counters = collections.Counter()   # timeouts, crashes, errors, replaced, items
    self._startup_failures = 0               # workers in a row that died or hung before they were ready
    self._fatal: Optional[str] = None
    self._workers = [_Worker(self._ctx, i, memory_mb, warm_math, self.warmups) for i in range(num_workers)]
    self._thread = threading.Thread(target=self._loop, name='r1jax-reward-dispatch', daemon=True)
    self._thread.start()
    self._finalizer = weakref.finalize(self, RewardPool._shutdown_static, self._workers)

  # ---- public API ----
  def submit(self, fn: Callable, items: Sequence[tuple[tuple, dict]],
             timeout_s: Optional[float | Sequence[float]] = None) -> concurrent.futures.Future:
    """Score `fn(*args, **kwargs)` for each (args, kwargs) item; the future yields a list of ItemResult."""
    job = _Job(len(items))
    timeouts = (list(timeout_s) if isinstance(timeout_s, (list, tuple))
                else [float(timeout_s or self.timeout_s)] * len(items))
    with self._lock:   # checked under the lock that `_drain` takes: a job is queued before a drain or not at all
      fatal, closed = self._fatal, self._closed
      if not closed:
        for i, (args, kwargs) in enumerate(items):
          self._pending.append((job, i, fn, tuple(args), dict(kwargs), timeouts[i]))
    if fatal:
      raise RewardPoolError(fatal)
    if not items:
      job.future.set_result([])
    elif closed:
      for i in range(len(items)):
        job.set(i, ItemResult(None, 'closed', 'pool is closed'))
    else:
      self._wake()
    return job.future

  def map(self, fn: Callable, items: Sequence[tuple[tuple, dict]], timeout_s: Optional[float] = None):
    return self.submit(fn, items, timeout_s).result()

  def pids(self) -> list[int]:
    return [w.proc.pid for w in self._workers]

  def wait_ready(self, timeout_s: float = 120.0) -> bool:
    """Block until every worker has started (imports done); True if they all did in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
      if all(w.ready for w in self._workers):
        return True
      time.sleep(0.02)
    return False

  def healthy(self) -> bool:
    return not self._closed and self._thread.is_alive() and all(w.proc.is_alive() for w in self._workers)

  def close(self) -> None:
    """Stop the dispatcher, fail queued items with 'closed', stop and reap the workers. Idempotent."""
    if self._shut:
      return
    self._shut = self._closed = True
    self._wake()
    self._thread.join(10.0)
    self._finalizer()
    for fd in (self._wake_r, self._wake_w):
      try:
        os.close(fd)
      except OSError:
        pass

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  # ---- internals ----
  def _wake(self) -> None:
    try:
      os.write(self._wake_w, b'x')
    except (BlockingIOError, OSError):
      pass

  @staticmethod
  def _shutdown_static(workers: list[_Worker]) -> None:
    for w in workers:
      try:
        w.conn.send(None)
      except (OSError, ValueError):
        pass
    deadline = time.monotonic() + 2.0
    for w in workers:
      w.proc.join(max(0.0, deadline - time.monotonic()))
      if w.proc.is_alive():
        w.kill()
      else:
        w.proc.join()
        w.conn.close()

  def _replace(self, idx: int) -> None:
    self._workers[idx].kill()
    self.counters['replaced'] += 1
    self._workers[idx] = _Worker(self._ctx, idx, self.memory_mb, self.warm_math, self.warmups)

  def _startup_failed(self, idx: int, how: str) -> None:
    """A worker died or hung before it was ready: replace it, or, after `MAX_STARTUP_FAILURES` in a row,
    give up with `RewardPoolError` (every pending and later job raises it) instead of respawning forever."""
    w = self._workers[idx]
    code = w.proc.exitcode
    self._startup_failures += 1
    log.warning('reward worker %s before it was ready (exit code %s); replacing it', how, code)
    if self._startup_failures < MAX_STARTUP_FAILURES:
      self._replace(idx)
      return
    self._fatal = (
        f'{self._startup_failures} reward workers in a row {how} before they were ready (last exit code '
        f'{code}); their tracebacks are on stderr. A `spawn`ed worker first imports the main script: if the '
        "script starts training at import time, put that call under `if __name__ == '__main__':` "
        '(docs/rewards.md, "The pool").')
    log.error('reward pool: %s', self._fatal)
    w.kill()
    self._closed = True

  def _finish(self, w: _Worker, res: ItemResult) -> None:
    job, i, t0, _ = w.task
    w.task = None
    res.latency_s = time.monotonic() - t0
    self.counters['items'] += 1
    if res.status != 'ok':
      self.counters[res.status] += 1
    job.set(i, res)

  def _loop(self) -> None:
    try:
      self._run_loop()
    except Exception:  # noqa: BLE001 - never leave a caller waiting forever
      log.exception('reward pool dispatcher crashed')
      self._closed = True
    finally:
      self._drain('closed', 'pool is closed')

  def _drain(self, status: str, msg: str) -> None:
    with self._lock:
      pending, self._pending = list(self._pending), collections.deque()
    for job, i, *_ in pending:
      if self._fatal:   # the caller gets the error, not items scored 0 by a pool that cannot work
        job.fail(RewardPoolError(self._fatal))
      else:
        job.set(i, ItemResult(None, status, msg))
    for w in self._workers:
      if w.task is not None:
        if self._fatal:
          w.task[0].fail(RewardPoolError(self._fatal))
          w.task = None
        else:
          self._finish(w, ItemResult(None, status, msg))

  def _run_loop(self) -> None:
    while not self._closed:
      # Hand out work to idle workers.
      for idx, w in enumerate(self._workers):
        if w.task is not None or not w.ready:
          continue
        with self._lock:
          if not self._pending:
            break
          job, i, fn, args, kwargs, tmo = self._pending.popleft()
        now = time.monotonic()
        w.task = (job, i, now, now + tmo)
        try:
          w.conn.send((next(self._ids), fn, args, kwargs))
        except (OSError, ValueError, EOFError):
          self._finish(w, ItemResult(None, 'crash', 'worker died before the item was sent'))
          self._replace(idx)
        except Exception as e:  # noqa: BLE001 - unpicklable item
          self._finish(w, ItemResult(None, 'error', f'cannot send item: {e}'[:500]))
      busy = [w for w in self._workers if w.task is not None]
      starting = [w for w in self._workers if not w.ready]
      now = time.monotonic()
      wait_s = min([w.task[3] - now for w in busy] + [0.2 if starting else 1.0])
      ready = mp_wait([w.conn for w in busy + starting] + [self._wake_r], timeout=max(0.0, wait_s))
      if self._wake_r in ready:
        try:
          os.read(self._wake_r, 4096)
        except OSError:
          pass
      for idx, w in enumerate(self._workers):
        if not w.ready:
          if w.conn in ready:
            try:
              w.ready = w.conn.recv()[0] == 'ready'
              self._startup_failures = 0
            except (EOFError, OSError):
              self._startup_failed(idx, 'exited')
          elif not w.proc.is_alive():
            self._startup_failed(idx, 'exited')
          elif time.monotonic() - w.started > self.startup_timeout_s:
            self._startup_failed(idx, f'did not report ready within {self.startup_timeout_s:.0f} s')
          if self._closed:
            return
          continue
        if w.task is None:
          continue
        if w.conn in ready:
          try:
            _, ok, value = w.conn.recv()
            self._finish(w, ItemResult(value, 'ok') if ok else ItemResult(None, 'error', str(value)))
          except (EOFError, OSError):
            self._finish(w, ItemResult(None, 'crash', f'worker died (exit {w.proc.exitcode})'))
            self._replace(idx)
        elif time.monotonic() > w.task[3]:
          self._finish(w, ItemResult(None, 'timeout', 'item exceeded its timeout; worker killed'))
          self._replace(idx)
      # A worker that died while idle is replaced before it is handed work.
      for idx, w in enumerate(self._workers):
        if w.task is None and not w.proc.is_alive():
          self._replace(idx)


# Diagnostics used by tests and benchmarks (module-level so they pickle by reference into spawned workers).
def _debug_sleep(seconds: float, value: float = 1.0) -> float:
  time.sleep(seconds)
  return value


def _debug_crash() -> None:
  os._exit(13)


def _debug_raise() -> None:
  raise RuntimeError('boom')


def _debug_pid() -> int:
  return os.getpid()


def _debug_env() -> dict:
  return dict(os.environ)


def _debug_alloc(mb: int) -> int:
  x = bytearray(mb << 20)
  return len(x)
