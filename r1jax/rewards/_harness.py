"""Sandbox harness: runs ONE candidate program against its tests, inside the child process started by `code.py`.

Run as `python -I -B _harness.py` with a JSON spec on stdin. It is stdlib-only and self-contained on purpose: it must
not import r1jax (the sandboxed interpreter is isolated) and it runs trusted set-up code before any candidate code:

1. read the spec, keep the inherited stdout as the private result channel, point fds 0/1/2 at /dev/null;
2. resource limits (CPU, address space, file size, open files, processes, no core dumps), parent-death signal;
3. namespaces where the kernel allows them: a new network namespace (no interfaces but a down loopback) and a new
   PID namespace (the candidate runs as PID 1 of it, so killing it kills every process it made);
4. Landlock, where available: writes only beneath the working directory, no TCP bind/connect, no signals or abstract
   Unix sockets outside the sandbox;
5. a PEP 578 audit hook: no fork/exec/subprocess/ctypes/sockets/kill, no writes outside the working directory, no
   frame or gc introspection (the cheap ways to find the result channel's nonce).
Each layer is best effort and reported back as `caps`; docs/rewards.md describes what remains possible.
"""
import ctypes
import ctypes.util
import io
import json
import os
import resource
import signal
import sys

CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446


class CaseTimeout(BaseException):
  pass


def main():
  spec = json.loads(sys.stdin.buffer.read().decode('utf-8', 'replace'))
  nonce = spec.pop('nonce')
  res_fd = os.dup(1)
  devnull = os.open(os.devnull, os.O_RDWR)
  for fd in (0, 1, 2):
    os.dup2(devnull, fd)

  def emit(*fields):
    line = ' '.join(str(f).replace('\n', ' ')[:300] for f in fields)
    try:
      os.write(res_fd, (nonce + ' ' + line + '\n').encode('utf-8', 'replace'))
    except OSError:
      pass

  libc = ctypes.CDLL(ctypes.util.find_library('c') or None, use_errno=True)
  caps = {}
  libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
  if os.getppid() != spec['parent_pid']:
    os._exit(3)
  caps['rlimits'] = set_limits(spec)
  caps['netns'] = caps['pidns'] = False
  flags = CLONE_NEWNET | CLONE_NEWPID
  if os.geteuid() != 0:
    flags |= CLONE_NEWUSER
  if libc.unshare(flags) == 0:
    caps['netns'] = caps['pidns'] = True
  elif libc.unshare(CLONE_NEWNET | (CLONE_NEWUSER if os.geteuid() != 0 else 0)) == 0:
    caps['netns'] = True
  if caps['pidns']:
    supervise()  # returns only in the child, which is PID 1 of the new namespace
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
  try:  # after the supervisor's fork; as root this limit is not enforced by the kernel
    resource.setrlimit(resource.RLIMIT_NPROC, (spec['nproc'], spec['nproc']))
  except (ValueError, OSError):
    caps['rlimits'] = False
  caps['landlock'] = landlock(libc, spec['workdir'])
  del libc
  for name in [m for m in sys.modules if m.split('.')[0] in _BLOCKED_IMPORTS]:
    del sys.modules[name]
  install_audit_hook(spec['workdir'])
  caps['audit_hook'] = True
  emit('caps', json.dumps(caps, separators=(',', ':')))
  run_cases(spec, emit)
  os._exit(0)


def set_limits(spec):
  mem = spec['memory_mb'] * 1024 * 1024
  cpu = spec['cpu_s']
  limits = [(resource.RLIMIT_CPU, (cpu, cpu + 1)), (resource.RLIMIT_AS, (mem, mem)),
            (resource.RLIMIT_FSIZE, (spec['fsize_mb'] * 1024 * 1024,) * 2),
            (resource.RLIMIT_NOFILE, (64, 64)), (resource.RLIMIT_CORE, (0, 0))]
  ok = True
  for which, lim in limits:
    try:
      resource.setrlimit(which, lim)
    except (ValueError, OSError):
      ok = False
  return ok


def supervise():
  """Fork the candidate as PID 1 of the new namespace and wait for it; its death kills the whole namespace."""
  pid = os.fork()
  if pid == 0:
    return
  while True:
    try:
      _, status = os.waitpid(pid, 0)
      break
    except InterruptedError:
      continue
  os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def landlock(libc, workdir):
  """Writes only beneath workdir (and /dev/null); no TCP; signals and abstract sockets scoped (newer ABIs)."""
  try:
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    abi = syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
      return False
    write_fs = 0
    for bit in (1, 4, 5, 6, 7, 8, 9, 10, 11, 12):   # WRITE_FILE, REMOVE_*, MAKE_*
      write_fs |= 1 << bit
    if abi >= 2:
      write_fs |= 1 << 13   # REFER
    if abi >= 3:
      write_fs |= 1 << 14   # TRUNCATE
    net = 0b11 if abi >= 4 else 0          # BIND_TCP | CONNECT_TCP, with no rule allowing any port
    scoped = 0b11 if abi >= 6 else 0       # ABSTRACT_UNIX_SOCKET | SIGNAL
    attr = (ctypes.c_uint64 * 3)(write_fs, net, scoped)
    size = 24 if abi >= 6 else (16 if abi >= 4 else 8)
    rfd = syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if rfd < 0:
      return False

    class PathBeneath(ctypes.Structure):
      _pack_ = 1
      _fields_ = [('allowed_access', ctypes.c_uint64), ('parent_fd', ctypes.c_int32)]

    for path, access in ((workdir, write_fs), (os.devnull, 1 << 1)):
      fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
      rule = PathBeneath(access if os.path.isdir(path) else access & ((1 << 1) | (1 << 14)), fd)
      if syscall(SYS_LANDLOCK_ADD_RULE, ctypes.c_int(rfd), ctypes.c_int(1), ctypes.byref(rule),
                 ctypes.c_uint32(0)) != 0:
        return False
      os.close(fd)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
      return False
    ok = syscall(SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(rfd), ctypes.c_uint32(0)) == 0
    os.close(rfd)
    return ok
  except Exception:  # noqa: BLE001 - best effort, reported through caps
    return False


_BLOCKED = ('os.fork', 'os.forkpty', 'os.posix_spawn', 'os.spawn', 'os.exec', 'os.system', 'os.kill', 'os.killpg',
            'os.setuid', 'subprocess.Popen', 'pty.spawn', 'signal.pthread_kill', 'resource.setrlimit',
            'resource.prlimit', 'os.chroot', 'os.putenv', 'os.unsetenv')
_BLOCKED_PREFIXES = ('ctypes.', 'socket.', 'mmap.', 'winreg', 'webbrowser')
_BLOCKED_IMPORTS = ('ctypes', '_ctypes', '_posixsubprocess', 'multiprocessing', '_multiprocessing', 'pty')
_INTROSPECTION = ('sys._getframe', 'sys._current_frames', 'gc.get_objects', 'gc.get_referrers',
                  'gc.get_referents', 'object.__getattr__', 'sys.settrace', 'sys.setprofile')


def install_audit_hook(workdir):
  workdir = os.path.realpath(workdir)
  write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC

  def hook(event, args):
    if event in _BLOCKED or event.startswith(_BLOCKED_PREFIXES):
      raise PermissionError(f'sandbox: {event} is not allowed')
    if event in _INTROSPECTION:
      if event == 'object.__getattr__' and args[1] not in ('tb_frame', 'f_back', 'gi_frame', 'cr_frame'):
        return
      raise ValueError(f'sandbox: {event} is not allowed')   # stdlib callers (typing, enum) catch ValueError
    if event == 'import' and args[0].split('.')[0] in _BLOCKED_IMPORTS:
      raise ImportError(f'sandbox: import of {args[0]} is not allowed')
    if event == 'open' and args[0] is not None and not isinstance(args[0], int):
      mode, flags = args[1], args[2]
      writing = (isinstance(mode, str) and any(c in mode for c in 'wax+')) or bool(flags & write_flags)
      if writing:
        path = os.path.realpath(os.fsdecode(args[0]))
        if path != os.devnull and not (path == workdir or path.startswith(workdir + os.sep)):
          raise PermissionError(f'sandbox: writing {path} is not allowed')

  sys.addaudithook(hook)


def _normalise_output(text):
  lines = [line.rstrip() for line in text.strip().splitlines()]
  return '\n'.join(lines)


def _on_alarm(signum, frame):
  raise CaseTimeout()


def run_cases(spec, emit):
  import builtins
  mode, program = spec['mode'], spec['program']
  case_s = spec['case_s']
  signal.signal(signal.SIGALRM, _on_alarm)

  def fresh_globals():
    return {'__name__': '__candidate__', '__builtins__': builtins}

  def run(fn, exit_ok=False):
    """Run fn() with a per-case wall-clock alarm; returns None or an error string.

    SystemExit(0) ends a stdin/stdout program normally (exit_ok) but, before tests have run, is a failure: it
    would otherwise let `sys.exit()` at the top of a program skip the tests.
    """
    signal.setitimer(signal.ITIMER_REAL, case_s)
    try:
      fn()
      return None
    except CaseTimeout:
      return 'timeout'
    except SystemExit as e:
      return None if exit_ok and e.code in (None, 0) else f'SystemExit({e.code!r})'
    except BaseException as e:  # noqa: BLE001 - candidate code may raise anything
      try:
        return f'{type(e).__name__}: {e}'
      except BaseException:  # noqa: BLE001
        return 'error'
    finally:
      signal.setitimer(signal.ITIMER_REAL, 0)

  try:
    code = compile(program, '<candidate>', 'exec')
  except BaseException as e:  # noqa: BLE001
    emit('compile', f'{type(e).__name__}: {e}')
    return
  sink = io.StringIO()
  if mode in ('check', 'script'):
    g = fresh_globals()
    source = spec['tests'] + ('\n\ncheck(' + spec['entry_point'] + ')\n' if mode == 'check' else '\n')

    def body():
      sys.stdout = sys.stderr = sink
      exec(code, g)
      exec(compile(source, '<tests>', 'exec'), g)
    err = run(body)
    emit('case', 0, int(err is None), err or '')
  elif mode == 'asserts':
    g = fresh_globals()

    def load():
      sys.stdout = sys.stderr = sink
      exec(code, g)
    err = run(load)
    for i, test in enumerate(spec['tests']):
      if err is not None:
        emit('case', i, 0, err)
        continue
      e = run(lambda t=test: exec(compile(t, '<test>', 'exec'), g))
      emit('case', i, int(e is None), e or '')
  elif mode == 'stdio':
    for i, case in enumerate(spec['tests']):
      stdin = io.TextIOWrapper(io.BytesIO(case['input'].encode('utf-8', 'replace')), encoding='utf-8')
      stdout = io.TextIOWrapper(io.BytesIO(), encoding='utf-8')

      def body(stdin=stdin, stdout=stdout):
        sys.stdin, sys.stdout, sys.stderr = stdin, stdout, sink
        exec(code, fresh_globals())
      e = run(body, exit_ok=True)
      sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__
      if e is None:
        try:
          stdout.flush()
          got = stdout.buffer.getvalue().decode('utf-8', 'replace')
        except BaseException:  # noqa: BLE001
          got = None
        ok = got is not None and _normalise_output(got) == _normalise_output(case['output'])
        e = None if ok else 'wrong output'
      emit('case', i, int(e is None), e or '')


if __name__ == '__main__':
  main()
