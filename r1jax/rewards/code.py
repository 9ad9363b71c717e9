"""Code accuracy: run a candidate program against its tests in a sandboxed subprocess.

Test formats (`tests`):
- a string with `entry_point`: HumanEval (`prompt + completion`, then the test code, then `check(entry_point)`);
- a string without `entry_point`: a test script (assert statements) run after the program;
- a list of strings: one assert statement per case, fraction = share that pass (MBPP style);
- a list of `{'input': str, 'output': str}` or a dict `{'inputs': [...], 'outputs': [...]}` (APPS/CodeContests,
  also accepted as a JSON string): stdin/stdout cases, compared line by line ignoring trailing whitespace.

The sandbox (see `_harness.py` and docs/rewards.md): `python -I -B` in its own session and process group, a fresh
temporary working directory, a scrubbed environment, CPU/memory/file-size/open-file/process limits, network and PID
namespaces and Landlock where the kernel allows them, and a PEP 578 audit hook. The parent enforces the wall-clock
timeout and kills the whole process group; results come back through a nonce-tagged channel written per case, so a
timeout keeps the cases that finished.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Any, Optional

import numpy as np

_HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '_harness.py')
_MAX_RESULT_BYTES = 4 << 20


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


def _kill_group(proc: subprocess.Popen) -> None:
  try:
    os.killpg(proc.pid, signal.SIGKILL)
  except (ProcessLookupError, PermissionError):
    pass


def _rmtree(path: str) -> None:
  def onerror(func, p, _):
    try:
      os.chmod(p, 0o700)
      func(p)
    except OSError:
      pass
  shutil.rmtree(path, onerror=onerror)


def run_tests(program: str, tests: Any, entry_point: Optional[str] = None, timeout_s: float = 5.0,
              memory_mb: int = 1024, fsize_mb: int = 16, nproc: int = 16,
              case_timeout_s: Optional[float] = None) -> CodeResult:
  """Run `program` against `tests` in the sandbox. Never raises for anything the program does.

  timeout_s is the wall-clock budget of the whole run (all cases); case_timeout_s (default timeout_s) is a soft
  per-case alarm inside the sandbox, so one slow stdin/stdout case does not always cost the others.
  """
  import time
  t0 = time.monotonic()
  if not isinstance(program, str):
    return CodeResult(False, 0.0, 'error', 'program is not a string')
  try:
    mode, payload, n_total = _normalise_tests(tests, entry_point)
  except (TypeError, KeyError) as e:
    return CodeResult(False, 0.0, 'error', f'bad tests: {e}')
  if n_total == 0:
    return CodeResult(False, 0.0, 'error', 'no test cases')
  nonce = secrets.token_hex(16)
  base = tempfile.mkdtemp(prefix='r1jax_code_')
  workdir = os.path.join(base, 'work')
  os.mkdir(workdir, 0o700)
  spec = {'nonce': nonce, 'mode': mode, 'program': program, 'tests': payload, 'entry_point': entry_point or '',
          'workdir': workdir, 'parent_pid': os.getpid(), 'memory_mb': int(memory_mb), 'fsize_mb': int(fsize_mb),
          'nproc': int(nproc), 'cpu_s': int(math.ceil(timeout_s)) + 1,
          'case_s': float(case_timeout_s or timeout_s)}
  data = json.dumps(spec).encode('ascii')
  env = {'PATH': '/usr/bin:/bin', 'HOME': workdir, 'TMPDIR': workdir, 'LANG': 'C.UTF-8', 'LC_ALL': 'C.UTF-8',
         'PYTHONHASHSEED': '0', 'OPENBLAS_NUM_THREADS': '1', 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
  status, err = None, ''
  with open(os.path.join(base, 'results'), 'w+b') as res, open(os.path.join(base, 'stderr'), 'w+b') as errf:
    try:
      proc = subprocess.Popen([sys.executable, '-I', '-B', _HARNESS], stdin=subprocess.PIPE, stdout=res,
                              stderr=errf, cwd=workdir, env=env, start_new_session=True, close_fds=True)
    except OSError as e:
      _rmtree(base)
      return CodeResult(False, 0.0, 'error', f'cannot start sandbox: {e}')
    try:
      proc.communicate(input=data, timeout=timeout_s)
    except subprocess.TimeoutExpired:
      status, err = 'timeout', f'timed out after {timeout_s:g}s'
    except OSError:   # the child died before reading its spec
      pass
    finally:
      _kill_group(proc)   # also reaps anything the program left in the group
      proc.wait()
    res.seek(0)
    lines = res.read(_MAX_RESULT_BYTES).decode('utf-8', 'replace').splitlines()
    errf.seek(0)
    stderr_tail = errf.read()[-2000:].decode('utf-8', 'replace')
  _rmtree(base)
  results: dict[int, bool] = {}
  caps: dict[str, Any] = {}
  first_error = ''
  prefix = nonce + ' '
  for line in lines:
    if not line.startswith(prefix):
      continue
    kind, _, rest = line[len(prefix):].partition(' ')
    if kind == 'caps':
      try:
        caps = json.loads(rest)
      except ValueError:
        pass
    elif kind == 'compile':
      first_error = first_error or rest
    elif kind == 'case':
      idx, ok, msg = (rest.split(' ', 2) + ['', ''])[:3]
      if idx.isdigit() and 0 <= int(idx) < n_total and int(idx) not in results:
        results[int(idx)] = ok == '1'
        if ok != '1':
          first_error = first_error or msg
  n_passed = sum(results.values())
  fraction = n_passed / n_total
  passed = n_passed == n_total
  if status is None:
    if not caps:
      status, err = 'error', f'sandbox failed (exit {proc.returncode}): {stderr_tail.strip()[-300:]}'
    else:
      status = 'passed' if passed else 'failed'
      err = first_error
  return CodeResult(passed and status == 'passed', fraction, status, err, n_passed, n_total, caps,
                    time.monotonic() - t0)


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
                **kwargs) -> np.ndarray:
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
    res = run_tests(program, t, entry_point=ep, timeout_s=timeout_s, memory_mb=memory_mb)
    out[i] = res.fraction if partial else float(res.passed)
  return out
