"""Adversarial suite for the code reward, run as the CI user (root here): forged verdicts through every test format,
monkeypatching, escapes from the sandbox, processes that outlive the run, fork/memory bombs and cleanup attacks.

Every forging program is wrong, so each must score 0; every probe must find its attack denied; after each run
nothing may be left (no process of uid 65534, no cgroup, no temporary directory) and nothing outside may change.
Probes print what happened (stdin/stdout mode) and the test compares that text, so a failure says which attack
got through. Needs bubblewrap and writable cgroups; without them the strict-mode tests skip and the
layer-unavailable tests still run.
"""
import dataclasses
import fcntl
import glob
import os
import stat
import sys
import tempfile
import time

import pytest

from r1jax.rewards import code as rcode
from r1jax.rewards import sandbox as sbx

SUPPORT = sbx.probe()
STRICT = bool(SUPPORT.bwrap and SUPPORT.userns and SUPPORT.cgroup and SUPPORT.seccomp and not
              (SUPPORT.root and sbx.root_tools_missing()))
needs_strict = pytest.mark.skipif(not STRICT, reason=f'sandbox layers unavailable: {SUPPORT.reason}')


def _nobody_pids():
  out = set()
  for status in glob.glob('/proc/[0-9]*/status'):
    try:
      with open(status) as f:
        for line in f:
          if line.startswith('State:') and line.split()[1] in 'ZX':
            break   # exited, waiting to be reaped: runs nothing
          if line.startswith('Uid:'):
            if str(sbx.NOBODY) in line.split()[1:2]:
              out.add(int(status.split('/')[2]))
            break
    except OSError:
      pass
  return out


def _our_cgroups():
  if not SUPPORT.cgroup:
    return set()
  return {d for base in SUPPORT.cgroup.values() for d in glob.glob(os.path.join(base, f'r1jax-{os.getpid()}-*'))}


@pytest.fixture
def nothing_left():
  """Fails the test if a run leaves a process, a cgroup or a temporary directory behind."""
  before_pids, before_tmp = _nobody_pids(), set(glob.glob(os.path.join(tempfile.gettempdir(), 'r1jax_weak_*')))
  yield
  deadline = time.monotonic() + 3
  while _nobody_pids() - before_pids and time.monotonic() < deadline:
    time.sleep(0.05)
  assert not _nobody_pids() - before_pids, 'sandbox processes outlived the run'
  assert not _our_cgroups(), 'run cgroups left behind'
  assert set(glob.glob(os.path.join(tempfile.gettempdir(), 'r1jax_weak_*'))) <= before_tmp


def run(program, tests, **kw):
  kw.setdefault('timeout_s', 4)
  r = rcode.run_tests(program, tests, **kw)
  assert r.caps.get('clean', True), r
  return r


def probe(body, **kw):
  """Run `body` (which prints lines) as a stdin/stdout program; return what it printed."""
  r = run(body, [{'input': '', 'output': '\x00never'}], **kw)
  return r.output


# ------------------------------------------------------------------ forged verdicts, every format
CHECK = 'def check(candidate):\n  assert candidate(2) == 4\n  assert candidate(3) == 9\n'
WRONG = 'def f(x):\n  return 0\n'
FORGERIES = {
    'print_verdict': 'print("case 0 1 \\ndone")\nimport sys\nsys.stdout.flush()',
    'write_every_fd': ('import os\nfor fd in range(64):\n  try:\n    os.write(fd, b"case 0 1 \\ncase 1 1 \\ndone\\n")\n'
                       '  except OSError:\n    pass'),
    'exit_zero': 'import sys\nsys.exit(0)',
    'os_exit_zero': 'import os\nos._exit(0)',
    'eq_always_true': ('class Y:\n  __eq__ = lambda s, o: True\n  __bool__ = lambda s: True\n'
                       'def f(x):\n  return Y()'),
    'int_subclass_eq': 'class I(int):\n  __eq__ = lambda s, o: True\n  __hash__ = int.__hash__\ndef f(x):\n  return I(0)',
    'patch_builtins': ('import builtins\nbuiltins.AssertionError = type("E", (Exception,), {})\n'
                       'builtins.isinstance = lambda *a: True\nbuiltins.abs = lambda x: 0\n'
                       'builtins.len = lambda x: 0'),
    'patch_harness': ('import sys\nm = sys.modules["__main__"]\nfor k in list(vars(m)):\n'
                      '  if callable(getattr(m, k)) and not k.startswith("__"):\n'
                      '    setattr(m, k, lambda *a, **k: ["ok", 4])\nm._enc = lambda *a: 4'),
    'shadow_sorted': 'def sorted(x, **k):\n  return "same"\ndef f(x):\n  return "same"',
    'find_tests_in_proc': ('import os\nfor p in os.listdir("/proc"):\n  try:\n    d = open(f"/proc/{p}/cmdline").read()\n'
                           '    os.write(1, d.encode())\n  except Exception:\n    pass'),
    'trace_frames': ('import sys, gc\nfor o in gc.get_objects():\n  if isinstance(o, dict) and "rep_w" in o:\n'
                     '    import os\n    os.write(o["rep_w"], b"x" * 10)'),
    'proc_fd_verdict': ('import os\nfor p in os.listdir("/proc"):\n  for fd in ("0", "1", "3", "4", "5"):\n    try:\n'
                        '      f = os.open(f"/proc/{p}/fd/{fd}", os.O_WRONLY | os.O_APPEND)\n'
                        '      os.write(f, b"case 0 1 \\ncase 1 1 \\ncase 2 1 \\ndone\\n")\n    except OSError:\n      pass'),
    'signal_tester': ('import os, signal\nfor p in range(2, 400):\n  try:\n    if p != os.getpid():\n'
                      '      os.kill(p, signal.SIGSTOP)\n  except OSError:\n    pass'),
}


@needs_strict
@pytest.mark.parametrize('name', list(FORGERIES))
def test_forgeries_score_zero_in_every_format(name, nothing_left):
  prog = FORGERIES[name] + '\n' + ('' if 'def f' in FORGERIES[name] else WRONG)
  tests = {
      'check': (CHECK, 'f'),
      'script': ('assert f(2) == 4\nassert sorted([2, 1]) == f([2, 1])', None),
      'asserts': (['assert f(2) == 4', 'assert f(3) == 9', 'assert f([1]) == sorted([1])'], None),
  }
  for fmt, (t, ep) in tests.items():
    r = run(prog, t, entry_point=ep, timeout_s=3)
    assert r.fraction == 0.0 and not r.passed, (fmt, r)
  r = run(prog + '\nprint(f(int(input())))', [{'input': '2', 'output': '4'}, {'input': '3', 'output': '9'}])
  assert r.fraction == 0.0, r


@needs_strict
def test_trusted_prompt_helpers_cannot_be_redefined(nothing_left):
  prompt = 'def poly(xs, x):\n  return sum(c * x ** i for i, c in enumerate(xs))\n\ndef find_zero(xs):\n  """..."""\n'
  check = 'def check(candidate):\n  assert abs(poly([1, 2], candidate([1, 2]))) < 1e-6\n'
  honest = prompt + '  return -0.5\n'
  forged = prompt + '  return 7.0\n\ndef poly(xs, x):\n  return 0\n'
  assert run(honest, check, entry_point='find_zero', trusted_code=prompt).passed
  assert not run(forged, check, entry_point='find_zero', trusted_code=prompt).passed


@needs_strict
def test_honest_programs_still_pass(nothing_left):
  good = 'import numpy as np\ndef f(x):\n  return int(np.int64(x) ** 2)\n'
  assert run(good, CHECK, entry_point='f').passed
  assert run(good, ['assert f(2) == 4', 'assert f(3) == 9']).passed
  assert run('if __name__ == "__main__":\n  print(int(input()) ** 2)', [{'input': '3', 'output': '9'}]).passed
  gen = 'def f(n):\n  return (i * i for i in range(n))\n'
  assert run(gen, ['assert list(f(3)) == [0, 1, 4]']).passed
  assert not run(gen, ['assert f(3) == [0, 1, 4]']).passed   # a generator is not a list, as in plain Python
  big = 'TABLE = list(range(10**6))\ndef f(i):\n  return TABLE[i]\n'   # too big to copy: a handle
  assert run(big, ['assert f(5) == 5', 'assert len(TABLE) == 10**6 and TABLE[7] == 7']).passed


# ------------------------------------------------------------------ escapes
ESCAPES = r'''
import ctypes, errno, fcntl, os, resource, socket, stat, struct
libc = ctypes.CDLL(None, use_errno=True)
def res(name, fn):
  try:
    r = fn()
    if isinstance(r, int) and r < 0:
      print(name, errno.errorcode.get(ctypes.get_errno(), 'neg'))
    else:
      print(name, 'ALLOWED', str(r)[:60])
  except OSError as e:
    print(name, errno.errorcode.get(e.errno, e.errno))
  except Exception as e:
    print(name, type(e).__name__)
T = "/usr/bin/env"
st = os.stat(T)
res('chmod', lambda: os.chmod(T, st.st_mode & 0o7777))
res('chown', lambda: os.chown(T, st.st_uid, st.st_gid))
res('xattr', lambda: os.setxattr(T, 'user.r1jax', b'1'))
res('chattr', lambda: fcntl.ioctl(os.open(T, os.O_RDONLY), 0x40086602, struct.pack('i', 0x10)))
res('chattr_tmp', lambda: fcntl.ioctl(os.open('/tmp', os.O_RDONLY), 0x40086602, struct.pack('i', 0x10)))
res('write_usr', lambda: open('/usr/r1jax_pwned', 'w'))
res('mknod', lambda: os.mknod('/tmp/kmsg', 0o600 | stat.S_IFCHR, os.makedev(1, 11)))
res('shmget', lambda: libc.shmget(0x5eed, 4096, 0o1666))
res('semget', lambda: libc.semget(0x5eed, 1, 0o1666))
res('msgget', lambda: libc.msgget(0x5eed, 0o1666))
res('unix_socket', lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
res('netlink', lambda: socket.socket(16, socket.SOCK_RAW, 0))
res('tcp_connect', lambda: socket.create_connection(('1.1.1.1', 53), timeout=1))
res('setsid', lambda: os.setsid())
res('setuid', lambda: os.setuid(0))
res('setgid', lambda: os.setgid(0))
res('setgroups', lambda: os.setgroups([0]))
res('sched_fifo', lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1)))
res('nice', lambda: os.nice(-20))
res('ptrace', lambda: libc.ptrace(16, 1, 0, 0))
res('mount', lambda: libc.mount(b'none', b'/tmp', b'tmpfs', 0, None))
res('unshare', lambda: libc.unshare(0x10000000))
res('setns', lambda: libc.setns(os.open('/proc/self/ns/net', os.O_RDONLY), 0))
res('bpf', lambda: libc.syscall(321, 0, 0, 0))
res('perf_event_open', lambda: libc.syscall(298, 0, 0, -1, -1, 0))
res('rlimit_raise', lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1 << 20, 1 << 20)))
res('shadow', lambda: open('/etc/shadow').read(1))
print('root_home', repr(sorted(os.listdir('/root'))).replace(' ', '')) if os.path.isdir('/root') else None
res('data', lambda: os.listdir('/work/shared'))
print('uid', os.getuid(), os.getgid(), os.getgroups(), 'ppid', os.getppid())
status = dict(l.split(':', 1) for l in open('/proc/self/status') if ':' in l)
print('caps', status['CapEff'].strip(), status['CapBnd'].strip(), 'nnp', status['NoNewPrivs'].strip(),
      'seccomp', status['Seccomp'].strip())
secret = [p for p in os.listdir('/proc') if p.isdigit() and b'R1JAX_SECRET' in open(f'/proc/{p}/environ', 'rb').read()]
print('environ_secret', secret)
'''
EXPECTED = {
    'chmod': 'EROFS', 'chown': 'EROFS', 'xattr': 'EROFS', 'chattr': 'EPERM', 'chattr_tmp': 'EPERM',
    'write_usr': 'EROFS', 'mknod': 'EPERM', 'shmget': 'EPERM', 'semget': 'EPERM', 'msgget': 'EPERM',
    'unix_socket': 'EPERM', 'netlink': 'EPERM', 'tcp_connect': 'ENETUNREACH', 'setsid': 'EPERM',
    'setuid': 'EPERM', 'setgid': 'EPERM', 'setgroups': 'EPERM', 'sched_fifo': 'EPERM', 'nice': 'EPERM',
    'ptrace': 'EPERM', 'mount': 'EPERM', 'unshare': 'EPERM', 'setns': 'EPERM', 'bpf': 'EPERM',
    'perf_event_open': 'EPERM', 'rlimit_raise': 'ValueError', 'shadow': 'ENOENT',
    'data': 'ENOENT',
}


@needs_strict
def test_escape_classes_are_denied(nothing_left):
  before = os.stat('/usr/bin/env')
  os.environ['R1JAX_SECRET'] = 'hunter2'
  try:
    out = probe(ESCAPES, timeout_s=10)
  finally:
    del os.environ['R1JAX_SECRET']
  got = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.split()}
  bad = {k: got.get(k) for k, v in EXPECTED.items() if got.get(k) not in (v, 'EPERM', 'EACCES', 'EROFS')}
  assert not bad and 'ALLOWED' not in out, out
  assert 'uid 65534 65534 [] ppid 0' in out or 'uid 65534 65534 [] ppid 1' in out, out
  assert 'caps 0000000000000000 0000000000000000 nnp 1 seccomp 2' in out, out
  assert 'environ_secret []' in out, out
  # Only the Python installation is bound in; whatever else the host keeps under /root stays invisible.
  shown = [line for line in out.splitlines() if line.startswith('root_home ')]
  allowed = {p.split('/')[2] for p in sbx.python_paths() if p.startswith('/root/')}
  assert not shown or set(eval(shown[0].split(' ', 1)[1])) <= allowed, shown
  after = os.stat('/usr/bin/env')
  assert (after.st_mode, after.st_uid, after.st_gid, after.st_mtime_ns) == (
      before.st_mode, before.st_uid, before.st_gid, before.st_mtime_ns)
  assert not os.path.exists('/usr/r1jax_pwned')


@needs_strict
def test_processes_do_not_outlive_the_run(nothing_left, tmp_path):
  # setsid is refused; a double fork still dies with the run's cgroup and PID namespace.
  prog = ('import os, time\nif os.fork() == 0:\n  if os.fork() == 0:\n    time.sleep(60)\n  os._exit(0)\n'
          'time.sleep(0.3)\nprint("forked")')
  r = run(prog, [{'input': '', 'output': 'forked'}])
  assert r.passed
  r = run(prog.replace('print("forked")', 'def f(x):\n  return 0'), CHECK, entry_point='f')
  assert not r.passed


@needs_strict
def test_fork_bomb_is_capped_by_pids_max(nothing_left):
  prog = ('import os, time\nn = 0\nfor _ in range(300):\n  try:\n    if os.fork() == 0:\n      time.sleep(30)\n'
          '      os._exit(0)\n    n += 1\n  except OSError:\n    break\nprint(n)')
  r = run(prog, [{'input': '', 'output': ''}], nproc=32)
  assert r.output.strip().isdigit() and int(r.output) < 32, r
  r = run('import os\nwhile True:\n  try:\n    os.fork()\n  except OSError:\n    pass', CHECK, entry_point='f',
          timeout_s=2, nproc=32)
  assert r.fraction == 0.0


@needs_strict
@pytest.mark.parametrize('how', ['heap', 'memfd', 'tmpfs', 'forks'])
def test_memory_bombs_hit_the_cgroup_cap(nothing_left, how):
  body = {
      'heap': 'x = bytearray(1 << 30)\nx[::4096] = b"1" * len(x[::4096])',
      'memfd': ('import os, mmap\nfd = os.memfd_create("m")\nos.ftruncate(fd, 1 << 30)\n'
                'm = mmap.mmap(fd, 1 << 30)\nfor i in range(0, 1 << 30, 4096):\n  m[i] = 1'),
      'tmpfs': 'with open("/tmp/big", "wb") as f:\n  for _ in range(1024):\n    f.write(b"1" * (1 << 20))',
      'forks': ('import os, time\nfor _ in range(8):\n  if os.fork() == 0:\n    x = bytearray(200 << 20)\n'
                '    x[::4096] = b"1" * len(x[::4096])\n    time.sleep(30)\ntime.sleep(30)'),
  }[how]
  r = run(body + '\nprint("survived")', [{'input': '', 'output': 'survived'}], memory_mb=256, fsize_mb=2048,
          timeout_s=4)
  assert not r.passed and r.caps['memory_peak_mb'] <= 256 + 256 + 8, r


@needs_strict
def test_output_flood_and_infinite_loops(nothing_left):
  r = run('import os\nwhile True:\n  os.write(1, b"x" * 65536)', [{'input': '', 'output': 'x'}], timeout_s=2)
  assert not r.passed
  t0 = time.monotonic()
  r = run('while True:\n  pass', CHECK, entry_point='f', timeout_s=2)
  assert r.status == 'timeout' and time.monotonic() - t0 < 4


# ------------------------------------------------------------------ cleanup attacks (parent-side code)
def test_rmtree_deep_tree_symlinks_and_locked_dirs(tmp_path):
  outside = tmp_path / 'outside'
  outside.mkdir()
  (outside / 'keep').write_text('k')
  os.chmod(outside, 0o755)
  victim = tmp_path / 'work'
  victim.mkdir()
  fd = os.open(victim, os.O_RDONLY)
  for _ in range(1200):   # deeper than Python's recursion limit
    os.mkdir('d', dir_fd=fd)
    nfd = os.open('d', os.O_RDONLY, dir_fd=fd)
    os.close(fd)
    fd = nfd
  os.close(fd)
  os.symlink(outside, victim / 'link')
  os.symlink(outside / 'keep', victim / 'filelink')
  locked = victim / 'locked'
  locked.mkdir()
  (locked / 'f').write_text('x')
  os.chmod(locked, 0)
  assert rcode.rmtree(str(victim))
  assert not victim.exists()
  assert (outside / 'keep').read_text() == 'k' and stat.S_IMODE(os.stat(outside).st_mode) == 0o755
  assert rcode.rmtree(str(tmp_path / 'missing'))


def test_rmtree_immutable_file_returns_false(tmp_path):
  d = tmp_path / 'imm'
  d.mkdir()
  f = d / 'f'
  f.write_text('x')
  try:
    fd = os.open(f, os.O_RDONLY)
    fcntl.ioctl(fd, 0x40086602, (0x10).to_bytes(4, 'little'))   # FS_IOC_SETFLAGS: FS_IMMUTABLE_FL
    os.close(fd)
  except OSError as e:
    pytest.skip(f'cannot set the immutable flag here: {e}')
  try:
    assert rcode.rmtree(str(d)) is False   # never raises, reports that it could not
    assert f.exists()
  finally:
    fd = os.open(f, os.O_RDONLY)
    fcntl.ioctl(fd, 0x40086602, (0).to_bytes(4, 'little'))
    os.close(fd)


# ------------------------------------------------------------------ layers unavailable
@pytest.fixture
def without(monkeypatch):
  def apply(**changes):
    fake = dataclasses.replace(SUPPORT, **changes)
    monkeypatch.setattr(sbx, 'probe', lambda *a, **k: fake)
  return apply


@pytest.mark.parametrize('missing', ['bwrap', 'userns', 'cgroup', 'seccomp'])
def test_strict_mode_fails_closed(without, missing):
  without(**{'bwrap': {'bwrap': None}, 'userns': {'userns': False}, 'seccomp': {'seccomp': False},
             'cgroup': {'cgroup': None, 'reason': 'no writable cgroup'}}[missing])
  r = rcode.run_tests(WRONG.replace('0', 'x * x'), CHECK, entry_point='f')
  assert r.status == 'error' and not r.passed and 'sandbox unavailable' in r.error, r
  assert "sandbox='weak'" in r.error


@pytest.mark.skipif(not SUPPORT.root or bool(sbx.root_tools_missing()), reason='weak mode as root needs util-linux')
def test_weak_mode_without_bwrap_still_decides_outside(without, nothing_left):
  without(bwrap=None, userns=False)
  good = 'def f(x):\n  return x * x\n'
  r = rcode.run_tests(good, CHECK, entry_point='f', sandbox='weak')
  assert r.passed and r.caps['bwrap'] is False and r.caps['uid'] == sbx.NOBODY, r
  for name in ('print_verdict', 'eq_always_true', 'patch_harness', 'exit_zero', 'proc_fd_verdict', 'write_every_fd'):
    assert not rcode.run_tests(FORGERIES[name] + '\n' + WRONG, CHECK, entry_point='f', sandbox='weak').passed
  out = rcode.run_tests(ESCAPES, [{'input': '', 'output': 'x'}], sandbox='weak', timeout_s=10).output
  for name in ('chmod', 'chown', 'mknod', 'shmget', 'unix_socket', 'setsid', 'setuid', 'ptrace', 'mount',
               'unshare', 'sched_fifo', 'shadow'):
    assert f'{name} ALLOWED' not in out, out
  # The program's working directory is a host temporary directory here: a deep tree and links are cleaned up.
  mess = ('import os\nfd = os.open(".", os.O_RDONLY)\nfor _ in range(2000):\n  os.mkdir("d", dir_fd=fd)\n'
          '  fd = os.open("d", os.O_RDONLY, dir_fd=fd)\nos.symlink("/etc", "link")\nos.chmod(".", 0)\n'
          'def f(x):\n  return 0\n')
  r = rcode.run_tests(mess, CHECK, entry_point='f', sandbox='weak')
  assert not r.passed and r.caps['clean'], r


@pytest.mark.skipif(not SUPPORT.root, reason='about root')
def test_weak_mode_never_runs_a_program_as_root(without, monkeypatch):
  without(bwrap=None, userns=False)
  monkeypatch.setattr(sbx, 'root_tools_missing', lambda: ['setpriv'])
  r = rcode.run_tests('import os\ndef f(x):\n  return x * x if os.getuid() else 0\n', CHECK, entry_point='f',
                      sandbox='weak')
  assert r.status == 'error' and 'setpriv' in r.error


def test_unwritable_temp_dir_is_an_error_result(without, monkeypatch):
  without(bwrap=None, userns=False)

  def full(*a, **k):
    raise OSError(28, 'No space left on device')
  monkeypatch.setattr(tempfile, 'mkdtemp', full)
  r = rcode.run_tests('def f(x):\n  return x * x\n', CHECK, entry_point='f', sandbox='weak')
  assert r.status == 'error' and 'working directory' in r.error


def test_seccomp_filter_is_well_formed():
  for arch in ('x86_64', 'aarch64'):
    prog = sbx.seccomp_filter(arch)
    assert len(prog) % 8 == 0 and len(prog) // 8 < 4096
  with pytest.raises(ValueError):
    sbx.seccomp_filter('mips')


@needs_strict
def test_stale_cgroups_of_dead_processes_are_swept():
  dead = 2 ** 22 + 12345   # above pid_max's default range: no such process
  dirs = []
  for base in SUPPORT.cgroup.values():
    d = os.path.join(base, f'r1jax-{dead}-0-1')
    os.mkdir(d)
    dirs.append(d)
  assert sbx.sweep_stale(SUPPORT.cgroup) >= len(dirs)
  assert not any(os.path.exists(d) for d in dirs)
