"""Code accuracy: run a candidate program against its tests in a sandbox, and decide pass/fail outside it.

Test formats (`tests`):
- a string with `entry_point`: HumanEval (the program, then the test code, then `check(entry_point)`);
- a string without `entry_point`: a test script (assert statements) run after the program;
- a list of strings: one assert statement per case, fraction = share that pass (MBPP style);
- a list of `{'input': str, 'output': str}` or a dict `{'inputs': [...], 'outputs': [...]}` (APPS/CodeContests,
  also accepted as a JSON string): stdin/stdout cases, compared line by line ignoring trailing whitespace.

Where the verdict comes from (docs/rewards.md has the threat model):
- stdin/stdout: each case is one sandboxed run of the program as `__main__`; the parent compares the output.
- the assert formats: two sandboxes per run. The *server* holds the program and answers calls; the *tester* runs
  the tests in its own interpreter with the program's names as proxies, so every value it compares was rebuilt
  from plain data (see `_sandbox_main.py`). The verdict is the tester's stdout, an anonymous file only the parent
  holds. The candidate never sees a nonce, a results file or a result descriptor.
Isolation (`sandbox.py`): bubblewrap namespaces as uid 65534, a seccomp denylist, a cgroup per run with pids and
memory caps, killed as a whole at the end. `sandbox='strict'` (default) refuses to run (status 'error') where a
layer is missing; `sandbox='weak'` runs with what the host offers and says so in `CodeResult.caps`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

import numpy as np

from r1jax.rewards import sandbox as sbx

_MAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), '_sandbox_main.py')
_MAX_OUTPUT = 4 << 20
_MAX_PROGRAM = 1 << 20
SANDBOX_MODES = ('strict', 'weak')


@dataclasses.dataclass
class CodeResult:
  """passed: every case passed. fraction: share of cases passed. status: passed|failed|timeout|error."""
  passed: bool
  fraction: float
  status: str
  error: str = ''
  n_passed: int = 0
  n_total: int = 0
  caps: dict[str, Any] = dataclasses.field(default_factory=dict)
  wall_s: float = 0.0
  output: str = ''     # stdin/stdout mode: the first 2000 characters the last case printed (for debugging)


def _normalise_tests(tests: Any, entry_point: Optional[str]) -> tuple[str, Any, int]:
  """-> (mode, tests payload, number of cases)."""
  if isinstance(tests, str):
    stripped = tests.lstrip()
    if stripped[:1] in '[{' and stripped:
      try:
        return _normalise_tests(json.loads(tests), entry_point)
      except ValueError:
        pass
    return ('check' if entry_point else 'script'), tests, 1
  if isinstance(tests, dict) and 'inputs' in tests:
    cases = [{'input': str(i), 'output': str(o)} for i, o in zip(tests['inputs'], tests['outputs'])]
    return 'stdio', cases, len(cases)
  if isinstance(tests, (list, tuple)):
    if all(isinstance(t, str) for t in tests):
      return 'asserts', list(tests), len(tests)
    cases = []
    for t in tests:
      if not isinstance(t, dict):
        raise TypeError(f'unsupported test case {type(t).__name__}')
      cases.append({'input': str(t.get('input', t.get('stdin', ''))),
                    'output': str(t.get('output', t.get('stdout', t.get('expected_output', ''))))})
    return 'stdio', cases, len(cases)
  raise TypeError(f'unsupported tests type {type(tests).__name__}')


def _normalise_output(text: str) -> str:
  return '\n'.join(line.rstrip() for line in text.strip().splitlines())


def rmtree(path: str, max_entries: int = 1_000_000) -> bool:
  """Remove a directory tree; True if it is gone. Never raises, never follows a symlink (fd-relative walk with
  O_NOFOLLOW, iterative so depth cannot overflow the stack), never chmods through a link."""
  try:
    top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
  except FileNotFoundError:
    return True
  except OSError:
    try:
      os.unlink(path)
      return True
    except OSError:
      return False
  stack = [(top, -1, '')]
  stuck: set[tuple[int, int]] = set()
  budget = max_entries
  while stack and budget > 0:
    fd, pfd, name = stack[-1]
    descended = False
    try:
      with os.scandir(fd) as it:
        for e in it:
          budget -= 1
          if budget <= 0:
            break
          try:
            is_dir = e.is_dir(follow_symlinks=False)
            key = (e.inode(), 0)
          except OSError:
            continue
          if not is_dir:
            try:
              os.unlink(e.name, dir_fd=fd)
            except OSError:
              pass
            continue
          if key in stuck:
            continue
          try:
            cfd = os.open(e.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
          except OSError:
            try:   # a mode-000 directory of the candidate's: it is a real directory (O_NOFOLLOW said so)
              st = os.stat(e.name, dir_fd=fd, follow_symlinks=False)
              if stat.S_ISDIR(st.st_mode):
                os.chmod(e.name, 0o700, dir_fd=fd)   # not a link (lstat above), and nothing runs any more
                cfd = os.open(e.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
              else:
                raise OSError
            except (OSError, NotImplementedError):
              stuck.add(key)
              continue
          stack.append((cfd, fd, e.name))
          descended = True
          break
    except OSError:
      pass
    if descended:
      continue
    stack.pop()
    try:
      st = os.fstat(fd)
      os.close(fd)
    except OSError:
      st = None
    if pfd >= 0:
      try:
        os.rmdir(name, dir_fd=pfd)
      except OSError:
        if st is not None:
          stuck.add((st.st_ino, 0))
  for fd, _, _ in stack:
    try:
      os.close(fd)
    except OSError:
      pass
  try:
    os.rmdir(path)
  except FileNotFoundError:
    pass
  except OSError:
    return False
  return True


class _Run:
  """The pieces of one sandboxed run: support check, cgroup, seccomp program, launch and teardown."""

  def __init__(self, mode: str, memory_mb: int, nproc: int, fsize_mb: int, cpu_s: int):
    self.mode, self.fsize_mb, self.cpu_s, self.nproc = mode, fsize_mb, cpu_s, nproc
    self.support = sbx.probe()
    s = self.support
    self.root = s.root
    self.bwrap = bool(s.bwrap and s.userns and s.seccomp)
    missing = sbx.root_tools_missing() if self.root else []
    self.caps = {'bwrap': self.bwrap, 'seccomp': s.seccomp, 'cgroup': s.cgroup is not None,
                 'uid': sbx.NOBODY if (self.root and not missing) or self.bwrap else os.geteuid()}
    self.error = ''
    if mode == 'strict':
      problems = []
      if not self.bwrap or s.cgroup is None:
        problems.append(s.reason or 'sandbox layer missing')
      if missing:
        problems.append(f'missing {missing} (util-linux)')
      if problems:
        self.error = ('code sandbox unavailable: ' + '; '.join(problems) +
                      '. Install bubblewrap (apt-get install -y bubblewrap) and util-linux, or pass '
                      "sandbox='weak' to run with fewer layers (docs/rewards.md)")
        return
    elif mode != 'weak':
      self.error = f'unknown sandbox mode {mode!r}; expected one of {SANDBOX_MODES}'
      return
    elif missing:   # never run a program as root, not even in weak mode
      self.error = f'code sandbox unavailable: running as root needs {missing} (util-linux) to drop to uid 65534'
      return
    self.cgroup = None
    self.workdir = None
    self._fds: list[int] = []
    if s.cgroup is not None:
      try:
        self.cgroup = sbx.Cgroup(s.cgroup, nproc, (memory_mb + 256) << 20)
      except OSError as e:
        if mode == 'strict':
          self.error = f'cannot create the run cgroup: {e}'
          return
    self.caps['cgroup'] = self.cgroup is not None
    self.seccomp = sbx.seccomp_filter() if s.seccomp else b''
    if not self.bwrap:
      try:   # no mount namespace: the program needs a writable directory of its own
        self.workdir = tempfile.mkdtemp(prefix='r1jax_weak_')
        if self.root:
          os.chown(self.workdir, sbx.NOBODY, sbx.NOBODY)
      except OSError as e:
        self.error = f'cannot create a working directory: {e}'
    self.procs: list[sbx.Launched] = []

  def fd(self, data: bytes) -> int:
    fd = sbx.memfd(data)
    self._fds.append(fd)
    return fd

  def start(self, role_argv: list[str], stdin_fd: Optional[int], stdout_fd: Optional[int], pass_fds: list[int],
            tmp_mb: int, trusted: bool = False) -> sbx.Launched:
    """trusted: the tester, which runs no program code. Without bubblewrap (weak mode) it shares the host's PID
    namespace with the program, so when the trainer is root it keeps root's uid: the program (uid 65534) then cannot
    open its /proc entries to write a verdict."""
    # -S: no site processing (.pth files, editable finders: slow, and nothing of the trainer's belongs inside);
    # the roles that run the program add the site-packages directories themselves (numpy etc. stay importable).
    py = [sys.executable, '-I', '-S', '-B', '-c', _main_source()]
    if self.bwrap:
      argv = sbx.bwrap_argv(self.support, self.fd(self.seccomp), tmp_mb, py + role_argv)
      pass_fds = pass_fds + [self._fds[-1]]
    else:
      prelude = ['seccomp', self.seccomp.hex()] if self.seccomp else []
      argv = py + prelude + role_argv
    if self.root and not sbx.root_tools_missing() and not (trusted and not self.bwrap):
      prefix, fds = sbx.drop_privileges_argv(sbx.view_paths(self.support.bwrap if self.bwrap else None))
      argv, pass_fds = prefix + argv, pass_fds + fds
    env = sbx.sandbox_env(self.workdir or '/tmp')
    p = sbx.Launched(argv, cgroup=self.cgroup, stdin_fd=stdin_fd, stdout_fd=stdout_fd, pass_fds=pass_fds,
                     fsize_mb=self.fsize_mb, cpu_s=self.cpu_s, env=env, cwd=self.workdir or '/',
                     nproc=None if self.cgroup is not None or self.root else self.nproc)
    self.procs.append(p)
    return p

  def kill_all(self) -> None:
    if self.cgroup is not None:
      self.cgroup.kill()
    for p in self.procs:
      p.kill()
    self.procs = []

  def close(self) -> bool:
    """Kill everything, remove the cgroup and working directory; True when nothing is left. Never raises."""
    clean = True
    try:
      self.kill_all()
      if self.cgroup is not None:
        clean &= self.cgroup.remove()
      for fd in self._fds:
        try:
          os.close(fd)
        except OSError:
          pass
      self._fds = []
      if self.workdir is not None:
        clean &= rmtree(self.workdir)
    except Exception:  # noqa: BLE001 - teardown never raises into the trainer
      clean = False
    return clean


def sandbox_problem(sandbox: str = 'strict') -> str:
  """'' when `run_tests(..., sandbox=sandbox)` can run on this host, else why not (what to install)."""
  run = _Run.__new__(_Run)
  try:
    run.__init__(sandbox, 64, 8, 1, 1)
  except Exception as e:  # noqa: BLE001
    return f'{type(e).__name__}: {e}'
  finally:
    if hasattr(run, 'procs'):
      run.close()
  return run.error


_MAIN_SRC: Optional[str] = None


def _main_source() -> str:
  global _MAIN_SRC
  if _MAIN_SRC is None:
    with open(_MAIN) as f:
      _MAIN_SRC = f.read()
  return _MAIN_SRC


def _site_json() -> str:
  import site
  try:
    paths = site.getsitepackages()
  except AttributeError:
    paths = []
  return json.dumps([p for p in paths if os.path.isdir(p)])


def _read_fd(fd: int, limit: int) -> bytes:
  try:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, limit)
  except OSError:
    return b''


def run_tests(program: str, tests: Any, entry_point: Optional[str] = None, timeout_s: float = 5.0,
              memory_mb: int = 1024, fsize_mb: int = 16, nproc: int = 64,
              case_timeout_s: Optional[float] = None, sandbox: str = 'strict',
              trusted_code: Optional[str] = None) -> CodeResult:
  """Run `program` against `tests` in the sandbox. Never raises for anything the program does.

  timeout_s is the wall-clock budget of the whole run (all cases); case_timeout_s (default timeout_s) limits one
  case. memory_mb and nproc cap the run's cgroup (everything it starts, shared memory and tmpfs included).
  trusted_code (e.g. the HumanEval prompt) runs on the tester's side, so helpers the tests call are the dataset's
  own, not the program's redefinitions.
  """
  t0 = time.monotonic()
  if not isinstance(program, str):
    return CodeResult(False, 0.0, 'error', 'program is not a string')
  if len(program) > _MAX_PROGRAM:
    return CodeResult(False, 0.0, 'error', 'program too long')
  try:
    mode, payload, n_total = _normalise_tests(tests, entry_point)
  except (TypeError, KeyError) as e:
    return CodeResult(False, 0.0, 'error', f'bad tests: {e}')
  if n_total == 0:
    return CodeResult(False, 0.0, 'error', 'no test cases')
  case_s = float(case_timeout_s or timeout_s)
  try:
    run = _Run(sandbox, memory_mb, nproc, fsize_mb, int(math.ceil(timeout_s)) + 1)
  except Exception as e:  # noqa: BLE001
    return CodeResult(False, 0.0, 'error', f'sandbox setup failed: {type(e).__name__}: {e}')
  if run.error:
    run.close() if hasattr(run, 'procs') else None
    return CodeResult(False, 0.0, 'error', run.error, 0, n_total, dict(run.caps), time.monotonic() - t0)
  deadline = t0 + timeout_s
  try:
    if mode == 'stdio':
      results, status = _run_stdio(run, program, payload, case_s, deadline)
    else:
      results, status = _run_rpc(run, program, mode, payload, entry_point or '', trusted_code, case_s, deadline,
                                 n_total)
  except Exception as e:  # noqa: BLE001 - e.g. no memory for a memfd, fork failure: an error, not a crash
    results, status = {}, f'error: {type(e).__name__}: {e}'
  finally:
    if run.cgroup is not None:
      run.caps['memory_peak_mb'] = run.cgroup.memory_peak() >> 20
    clean = run.close()
  caps = dict(run.caps, clean=clean)
  n_passed = sum(ok for ok, _ in results.values())
  first_error = next((msg for i, (ok, msg) in sorted(results.items()) if not ok and msg), '')
  if status.startswith('error'):
    return CodeResult(False, 0.0, 'error', status[7:], 0, n_total, caps, time.monotonic() - t0)
  passed = n_passed == n_total and status == 'ok'
  if status == 'timeout':
    final, err = 'timeout', f'timed out after {timeout_s:g}s'
  else:
    final, err = ('passed', '') if passed else ('failed', first_error)
  return CodeResult(passed, n_passed / n_total, final, err, n_passed, n_total, caps, time.monotonic() - t0,
                    getattr(run, 'output', ''))


def _wait(proc: subprocess.Popen, deadline: float) -> bool:
  """Wait for proc until deadline; True if it exited. A pidfd wakes us at once (Popen.wait polls in steps of up
  to 50 ms, a visible share of a 100 ms run)."""
  try:
    fd = os.pidfd_open(proc.pid)
  except (AttributeError, OSError):
    fd = -1
  if fd >= 0:
    import select
    try:
      select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
    finally:
      os.close(fd)
  try:
    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    return True
  except subprocess.TimeoutExpired:
    return False


def _run_stdio(run: _Run, program: str, cases: list, case_s: float, deadline: float):
  results: dict[int, tuple[bool, str]] = {}
  run.output = ''
  prog_fd = run.fd(program.encode('utf-8', 'surrogateescape'))
  for i, case in enumerate(cases):
    if time.monotonic() >= deadline:
      return results, 'timeout'
    stdin_fd = run.fd(case['input'].encode('utf-8', 'surrogateescape'))
    out_fd = run.fd(b'')
    p = run.start(['main', _site_json(), str(prog_fd)], stdin_fd, out_fd, [prog_fd], tmp_mb=64)
    p.go()
    finished = _wait(p.proc, min(deadline, time.monotonic() + case_s))
    code = p.proc.returncode
    run.kill_all()   # whatever the program left behind dies with its cgroup before the next case
    if not finished:
      if time.monotonic() >= deadline:
        return results, 'timeout'
      results[i] = (False, 'timeout')
      continue
    got = _read_fd(out_fd, _MAX_OUTPUT).decode('utf-8', 'replace')
    run.output = got[:2000]
    if code != 0:
      results[i] = (False, f'exit status {code}')
    elif _normalise_output(got) != _normalise_output(case['output']):
      results[i] = (False, 'wrong output')
    else:
      results[i] = (True, '')
  return results, 'ok'


def _run_rpc(run: _Run, program: str, mode: str, tests: Any, entry_point: str, trusted: Optional[str],
             case_s: float, deadline: float, n_total: int):
  req_r, req_w = os.pipe()
  rep_r, rep_w = os.pipe()
  pipes = [req_r, req_w, rep_r, rep_w]
  try:
    s_spec = {'program': program, 'req_r': req_r, 'rep_w': rep_w, 'case_s': case_s}
    t_spec = {'mode': mode, 'tests': tests, 'entry_point': entry_point, 'trusted': trusted or '',
              'req_w': req_w, 'rep_r': rep_r, 'case_s': case_s, 'n_cases': n_total}
    s_in = run.fd(json.dumps(s_spec).encode('utf-8', 'surrogatepass'))
    t_in = run.fd(json.dumps(t_spec).encode('utf-8', 'surrogatepass'))
    t_out = run.fd(b'')
    server = run.start(['server', _site_json()], s_in, None, [req_r, rep_w], tmp_mb=64)
    tester = run.start(['tester', '[]'], t_in, t_out, [req_w, rep_r], tmp_mb=16, trusted=True)
  finally:
    for fd in pipes:
      os.close(fd)
  server.go()
  tester.go()
  finished = _wait(tester.proc, deadline)
  run.kill_all()
  results: dict[int, tuple[bool, str]] = {}
  done = False
  for line in _read_fd(t_out, _MAX_OUTPUT).decode('utf-8', 'replace').splitlines():
    if line == 'done':
      done = True
      continue
    parts = line.split(' ', 3) + ['']
    if parts[0] == 'case' and parts[1].isdigit() and int(parts[1]) < n_total:
      results.setdefault(int(parts[1]), (parts[2] == '1', parts[3]))
  if not finished:
    return results, 'timeout'
  if not done and not results:
    return results, f'error: tester failed (exit {tester.proc.returncode})'
  return results, 'ok'


def extract_code(completion: str, language: str = 'python') -> str:
  """The program in a completion: the last fenced ```python block (or any last fenced block), after `</think>`
  when present; else the text after `</think>` (or all of it)."""
  if not isinstance(completion, str):
    return ''
  text = completion.rsplit('</think>', 1)[-1]
  fence = '```'
  end = text.rfind(fence)
  if end > 0:
    start = text.rfind(fence, 0, end)
    if start >= 0:
      block = text[start + 3:end]
      first_nl = block.find('\n')
      if first_nl >= 0 and block[:first_nl].strip().lower() in ('', language, 'py', 'python3'):
        block = block[first_nl + 1:]
      return block
  return text


def code_reward(completions: list[str], tests: list[Any] | None = None, entry_point: list[Any] | None = None,
                prompt: list[str] | None = None, partial: bool = False, timeout_s: float = 5.0,
                memory_mb: int = 1024, extract: bool = True, prepend_prompt: Optional[bool] = None,
                sandbox: str = 'strict', **kwargs) -> np.ndarray:
  """1.0 if the program passes all tests (or the fraction passed when partial=True).

  HumanEval completions continue the prompt: with `prepend_prompt` (default: when an entry_point and a prompt are
  given and the extracted code does not itself define the entry point) the prompt is put in front of the code.
  """
  del kwargs
  if tests is None:
    raise KeyError("the 'code' reward needs a 'tests' field")
  n = len(completions)
  entry_point = entry_point if entry_point is not None else [None] * n
  prompt = prompt if prompt is not None else [None] * n
  out = np.zeros(n, dtype=np.float32)
  for i, (c, t, ep, p) in enumerate(zip(completions, tests, entry_point, prompt)):
    program = extract_code(c) if extract else c
    use_prompt = prepend_prompt
    if use_prompt is None:
      use_prompt = bool(ep and p and f'def {ep}' not in program)
    if use_prompt and p:
      program = p + program
    res = run_tests(program, t, entry_point=ep, timeout_s=timeout_s, memory_mb=memory_mb, sandbox=sandbox,
                    trusted_code=p if ep and p else None)
    out[i] = res.fraction if partial else float(res.passed)
  return out
