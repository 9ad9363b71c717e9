"""Robustness: whatever the model writes, every verifier returns a float in bounded time and the pool survives.

Hypothesis fuzzes the text verifiers; a fixed adversarial corpus covers huge numbers, deep nesting, a 5 MB
completion, invalid UTF-8 and control characters, unbalanced braces/tags, and hostile programs.
"""
import os
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import r1jax.rewards as R
from r1jax.rewards import countdown as rc
from r1jax.rewards import format as rformat
from r1jax.rewards import language as rlang
from r1jax.rewards import math as rmath
from r1jax.rewards import shaping as rshaping

_ALPHABET = st.sampled_from(list('0123456789{}\\()[]/,.-+*=$ abx\n') +
                            ['\\boxed{', '\\frac{', '<think>', '</think>', '<answer>', '</answer>', '####',
                             '\\fbox{', '\\sqrt{', '\\text{', '我', '\x00', '\ud800', '\ufffd'])
TEXTS = st.lists(_ALPHABET, max_size=60).map(''.join) | st.text(max_size=200)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(TEXTS, st.sampled_from(['1', '\\frac{1}{2}', 'x+1', '(1,2)', '1,234']))
def test_text_verifiers_never_raise(text, gold):
  ans = rmath.extract_answer(text)
  assert ans is None or isinstance(ans, str)
  assert isinstance(rmath.verify(text, gold), bool)
  assert isinstance(rformat.is_strict_format(text), bool)
  assert isinstance(rformat.is_soft_format(text, prompt_opens_think=True), bool)
  assert 0.0 <= rformat.tag_count_score(text) <= 1.0
  assert 0.0 <= rlang.language_share(text, 'en') <= 1.0
  assert isinstance(rc.check_countdown(text, [1, 2, 3], 6), bool)
  assert isinstance(rc.check_arithmetic(text, 3), bool)
  assert -1.0 <= rshaping.repetition_fraction(text) <= 1.0


@FUZZ
@given(st.integers(-10**30, 10**30), st.integers(1, 10**6))
def test_numbers_roundtrip(n, d):
  assert rmath.verify(f'<answer>{n}</answer>', str(n))
  assert rmath.verify(f'\\boxed{{{n:,}}}', n)
  assert not rmath.verify(f'\\boxed{{{n + d}}}', str(n))


@FUZZ
@given(st.lists(st.sampled_from(['<think>', '</think>', '<answer>', '</answer>', 'x', ' ']), max_size=12))
def test_strict_implies_soft_and_full_tag_count(parts):
  text = ''.join(parts)
  if rformat.is_strict_format(text):
    assert rformat.is_soft_format(text) and rformat.tag_count_score(text) == 1.0


def _adversarial_texts():
  big = '9' * 10**6
  deep = '\\frac{' * 1000 + '1' + '}{2}' * 1000
  five_mb = ('<think>' + 'Let me think about it. ' * 230_000 + '\\boxed{' * 3 + '}' * 2 + ' 42')
  invalid_utf8 = (b'\xff\xfe<answer>\x80\x81 \\boxed{4\xc3}</answer>').decode('utf-8', 'surrogateescape')
  return {
      'huge_number': f'<answer>{big}</answer>',
      'huge_number_boxed': f'\\boxed{{{big}}} \\boxed{{{big}1}}',
      'deep_frac': f'\\boxed{{{deep}}}',
      'deep_frac_answer': f'<answer>{deep}</answer>',
      '5mb': five_mb,
      'invalid_utf8': invalid_utf8,
      'control_chars': '\x00\x01\x1b[31m<answer>\x07 4 \x0b</answer>\r\n\x7f',
      'unbalanced_braces': '\\boxed{{{{{{' * 5000 + '}' * 3,
      'unbalanced_tags': '<think><think></answer><answer>' * 10_000 + '<answer>',
      'many_boxes': '\\boxed{1' * 200_000,
      'many_numbers': '1,' * 1_000_000,
  }


@pytest.mark.parametrize('name', list(_adversarial_texts()))
def test_adversarial_text_inline_is_fast(name):
  text = _adversarial_texts()[name]
  rmath.warm_up()   # the inline math-verify helper's start (seconds) is not the verifier's time
  t0 = time.monotonic()
  rmath.verify(text, '42')
  rmath.verify(text, '9' * 10**6)
  rformat.is_strict_format(text)
  rformat.tag_count_score(text)
  rlang.language_share(rformat.think_text(text))
  rc.check_countdown(text, [1, 2], 3)
  rshaping.repetition_fraction(text)
  assert time.monotonic() - t0 < 5.0


def test_huge_equal_number_verifies():
  big = '7' * 10**6
  assert rmath.verify(f'<answer>{big}</answer>', big)
  assert not rmath.verify(f'<answer>{big}</answer>', big + '1')


@pytest.fixture(scope='module')
def system():
  rs = R.build_reward_system({'weights': {'accuracy': 1.0, 'format': 0.1, 'language': 0.1, 'repetition': 0.1},
                              'kwargs': {'accuracy': {'timeout_s': 2.0}}, 'num_workers': 2, 'timeout_s': 4.0})
  yield rs
  pids = rs.pool.pids()
  rs.close()
  assert not any(os.path.exists(f'/proc/{pid}') for pid in pids), 'pool workers left behind'


def _healthy(rs):
  res = rs.score(['<think>ok</think><answer>\\boxed{3}</answer>'], {'answer': ['3']})
  return rs.pool.healthy() and res.components['accuracy'][0] == 1.0


def test_adversarial_text_through_pool(system):
  texts = list(_adversarial_texts().values())
  t0 = time.monotonic()
  res = system.score(texts, {'answer': ['42'] * len(texts)})
  elapsed = time.monotonic() - t0
  assert elapsed < 4.0 * len(texts) / 2 + 5.0
  assert res.total.shape == (len(texts),) and np.all(np.isfinite(res.total))
  assert _healthy(system)


HOSTILE = {
    'infinite_loop': 'while True:\n  pass',
    'sleep_forever': 'import time\ntime.sleep(10**6)',
    'fork_bomb': 'import os\nwhile True:\n  os.fork()',
    'fork_bomb_subprocess': 'import subprocess\nwhile True:\n  subprocess.Popen(["sleep", "100"])',
    'memory_bomb': 'x = []\nwhile True:\n  x.append(bytearray(10**8))',
    'write_outside': 'open({path!r}, "w").write("pwned")',
    'write_outside_os': 'import os\nfd = os.open({path!r}, os.O_WRONLY | os.O_CREAT)\nos.write(fd, b"pwned")',
    'read_env': 'import os\nassert os.environ.get("R1JAX_ROBUST_SECRET") == "s3cret"',
    'socket_connect': 'import socket\nsocket.create_connection(("1.1.1.1", 53), timeout=1)',
    'socket_listen': 'import socket\ns = socket.socket()\ns.bind(("127.0.0.1", 0))\ns.listen()',
    'kill_parent': 'import os\nos.kill(os.getppid(), 9)',
    'ctypes': 'import ctypes\nctypes.CDLL(None).fork()',
    'output_flood': 'import os\nwhile True:\n  os.write(1, b"x" * 65536)',
    'exit_early': 'import sys\nsys.exit(0)',
}
# Harmless inside the sandbox (its private /tmp, its own network and PID namespaces), so a program that does them
# and is otherwise correct may pass; what must hold is that nothing happens outside.
CONTAINED = {'write_outside', 'write_outside_os', 'socket_listen', 'kill_parent', 'ctypes'}


@pytest.mark.skipif(bool(R.code.sandbox_problem()), reason='code sandbox unavailable')
def test_hostile_programs(system, tmp_path):
  target = str(tmp_path / 'outside.txt')
  os.environ['R1JAX_ROBUST_SECRET'] = 's3cret'
  try:
    names = list(HOSTILE)
    comps = [HOSTILE[n].format(path=target) for n in names]
    check = 'def check(candidate):\n  assert candidate() == 1\n'
    progs = [c + '\n\ndef f():\n  return 1\n' for c in comps]
    t0 = time.monotonic()
    res = system.score(progs, {'task': ['code'] * len(progs), 'tests': [check] * len(progs),
                               'entry_point': ['f'] * len(progs)})
    elapsed = time.monotonic() - t0
  finally:
    del os.environ['R1JAX_ROBUST_SECRET']
  # Item timeout is max(4, 2 + 2) s; 14 programs on 2 workers, the slow ones hit the 2 s sandbox timeout.
  assert elapsed < 4.0 * len(progs) / 2 + 5.0
  acc = dict(zip(names, res.components['accuracy']))
  assert all(v == 0.0 for k, v in acc.items() if k not in CONTAINED), acc
  assert not os.path.exists(target)
  assert res.metrics['reward/timeouts'] == 0   # the sandbox's own timeout fired first
  assert _healthy(system)
  # A sane program still passes afterwards.
  ok = system.score(['def f():\n  return 1\n'], {'task': ['code'], 'tests': [check], 'entry_point': ['f']})
  assert ok.components['accuracy'].tolist() == [1.0]


def test_pool_item_timeout_and_crash_recovery():
  from r1jax.rewards import pool as rpool
  with rpool.RewardPool(num_workers=2, timeout_s=1.0) as p:
    assert p.wait_ready()
    t0 = time.monotonic()
    res = p.map(rpool._debug_sleep, [((100,), {})] * 2 + [((0,), {})] * 2)
    # 1 s timeout, then the replacement workers start (seconds on a loaded 2-core CI box), never 100 s.
    assert time.monotonic() - t0 < 1.0 + 10.0
    assert [r.status for r in res] == ['timeout', 'timeout', 'ok', 'ok']
    assert p.healthy()
