"""Code verifier: test formats, fractions, statuses, code extraction, sandbox layers."""
import os

import pytest

from r1jax.rewards import code as rcode

pytestmark = pytest.mark.skipif(bool(rcode.sandbox_problem()), reason=rcode.sandbox_problem())

PROG = 'def add(a, b):\n  return a + b\n'
CHECK = 'def check(candidate):\n  assert candidate(1, 2) == 3\n  assert candidate(-1, 1) == 0\n'


def test_humaneval_style():
  r = rcode.run_tests(PROG, CHECK, entry_point='add', timeout_s=5)
  assert r.passed and r.fraction == 1.0 and r.status == 'passed' and r.n_total == 1
  r = rcode.run_tests('def add(a, b):\n  return a - b\n', CHECK, entry_point='add', timeout_s=5)
  assert not r.passed and r.fraction == 0.0 and r.status == 'failed' and 'AssertionError' in r.error


def test_assert_list_fraction_and_script():
  r = rcode.run_tests(PROG, ['assert add(1, 1) == 2', 'assert add(1, 1) == 3', 'assert add(0, 0) == 0'],
                      timeout_s=5)
  assert r.n_passed == 2 and r.fraction == pytest.approx(2 / 3) and not r.passed
  assert rcode.run_tests(PROG, 'assert add(2, 2) == 4', timeout_s=5).passed


def test_stdio_cases_and_formats():
  prog = 'import sys\nn = int(input())\nprint(sum(map(int, sys.stdin.read().split()[:n])))\n'
  cases = [{'input': '3\n1 2 3\n', 'output': '6\n'}, {'input': '2\n5 5', 'output': '10  \n\n'},
           {'input': '1\n7', 'output': '8'}]
  r = rcode.run_tests(prog, cases, timeout_s=5)
  assert r.n_passed == 2 and r.n_total == 3
  assert rcode.run_tests(prog, {'inputs': ['1\n4'], 'outputs': ['4']}, timeout_s=5).passed
  assert rcode.run_tests(prog, '{"inputs": ["1\\n4"], "outputs": ["4"]}', timeout_s=5).passed
  assert rcode.run_tests('import sys\nprint(1)\nsys.exit(0)', [{'input': '', 'output': '1'}], timeout_s=5).passed


def test_errors_never_raise():
  assert rcode.run_tests('def f(:', CHECK, 'add', timeout_s=5).status == 'failed'
  assert rcode.run_tests(PROG, [], timeout_s=5).status == 'error'
  assert rcode.run_tests(PROG, 42, timeout_s=5).status == 'error'
  assert rcode.run_tests(None, CHECK, timeout_s=5).status == 'error'
  # Exit early with success is not a pass: results need the harness's nonce.
  r = rcode.run_tests('import os\nos._exit(0)', CHECK, 'add', timeout_s=5)
  assert not r.passed
  r = rcode.run_tests('raise SystemExit(0)', CHECK, 'add', timeout_s=5)
  assert not r.passed


def test_timeout_keeps_finished_cases():
  r = rcode.run_tests('def f(x):\n  while x: pass\n  return 1', ['assert f(0) == 1', 'f(1)'], timeout_s=2,
                      case_timeout_s=10)
  assert r.status == 'timeout' and r.n_passed == 1 and r.fraction == 0.5


def test_sandbox_environment():
  os.environ['R1JAX_TEST_SECRET'] = 'hunter2'
  try:
    prog = 'import os\nprint(os.environ.get("R1JAX_TEST_SECRET", "none"), os.getcwd() == os.environ["HOME"])'
    r = rcode.run_tests(prog, [{'input': '', 'output': 'none True'}], timeout_s=5)
    assert r.passed, r
  finally:
    del os.environ['R1JAX_TEST_SECRET']
  assert r.caps['bwrap'] and r.caps['seccomp'] and r.caps['cgroup'] and r.caps['uid'] == 65534 and r.caps['clean']


def test_extract_code_and_reward():
  comp = '<think>plan</think>\nHere:\n```python\ndef add(a, b):\n  return a + b\n```\nDone.'
  assert rcode.extract_code(comp).strip().startswith('def add')
  assert rcode.extract_code('no fences').strip() == 'no fences'
  body = '```python\n  return a + b\n```'
  prompt = 'def add(a, b):\n'
  r = rcode.code_reward([comp, body, 'nope'], tests=[CHECK] * 3, entry_point=['add'] * 3, prompt=[prompt] * 3,
                        timeout_s=5)
  assert r.tolist() == [1.0, 1.0, 0.0]
  r = rcode.code_reward([PROG], tests=[['assert add(1,1)==2', 'assert add(1,1)==3']], partial=True, timeout_s=5)
  assert r.tolist() == [0.5]
