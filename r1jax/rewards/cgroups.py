"""Cgroups for sandbox runs: one cgroup per run (pids.max, a memory limit that counts tmpfs/memfd/shared memory),
joined before bubblewrap starts and killed as a whole afterwards; v1 (pids + memory controllers) or delegated v2.
Used by `r1jax.rewards.sandbox` (which re-exports `Cgroup` and `sweep_stale`)."""
from __future__ import annotations

import itertools
import os
import signal
import time
from typing import Optional

_CG_ROOT = '/sys/fs/cgroup'
_counter = itertools.count()


def _read(path: str) -> str:
  try:
    with open(path) as f:
      return f.read()
  except OSError:
    return ''


def _write(path: str, value: str) -> bool:
  try:
    with open(path, 'w') as f:
      f.write(value)
    return True
  except OSError:
    return False


def _own_cgroup(controller: str) -> str:
  """This process's cgroup path in the v1 `controller` hierarchy ('' for the v2 one)."""
  for line in _read('/proc/self/cgroup').splitlines():
    _, ctrls, path = line.split(':', 2)
    if (controller == '' and ctrls == '') or controller in ctrls.split(','):
      return path
  return '/'


def _cgroup_layout() -> Optional[dict[str, str]]:
  """{'pids': dir, 'memory': dir} under which per-run cgroups are made (v1), or {'v2': dir}; None if unusable."""
  v1 = {}
  for ctrl in ('pids', 'memory'):
    mount = os.path.join(_CG_ROOT, ctrl)
    if os.path.exists(os.path.join(mount, 'cgroup.procs')) and not os.path.exists(
        os.path.join(mount, 'cgroup.controllers')):
      base = os.path.join(mount, _own_cgroup(ctrl).lstrip('/'))
      if os.access(base, os.W_OK):
        v1[ctrl] = base
  if len(v1) == 2:
    return v1
  if os.path.exists(os.path.join(_CG_ROOT, 'cgroup.controllers')):   # pure v2 (unified at the root)
    # v2 forbids processes in a cgroup whose children have controllers ("no internal processes"), so runs go under
    # a process-free parent: <root>/r1jax as root (the root cgroup is exempt), else a child of our own cgroup's
    # parent when that is delegated to us (systemd user slices).
    for parent in (_CG_ROOT, os.path.dirname(os.path.join(_CG_ROOT, _own_cgroup('').lstrip('/')))):
      if not ({'pids', 'memory'} <= set(_read(os.path.join(parent, 'cgroup.controllers')).split())
              and os.access(parent, os.W_OK)):
        continue
      if not {'pids', 'memory'} <= set(_read(os.path.join(parent, 'cgroup.subtree_control')).split()):
        _write(os.path.join(parent, 'cgroup.subtree_control'), '+pids +memory')
      base = os.path.join(parent, f'r1jax-{os.geteuid()}')
      try:
        os.makedirs(base, exist_ok=True)
      except OSError:
        continue
      if {'pids', 'memory'} <= set(_read(os.path.join(base, 'cgroup.controllers')).split()):
        return {'v2': base}
  return None


def sweep_stale(layout: Optional[dict[str, str]]) -> int:
  """Remove run cgroups left by processes that died mid-run (e.g. a pool worker killed at its deadline; its
  sandboxes died with it through --die-with-parent, the empty cgroups did not). Returns how many were removed."""
  removed = 0
  for base in (layout or {}).values():
    try:
      names = os.listdir(base)
    except OSError:
      continue
    for name in names:
      parts = name.split('-')
      if len(parts) < 3 or parts[0] != 'r1jax' or not parts[1].isdigit():
        continue
      if os.path.exists(f'/proc/{parts[1]}'):
        continue
      d = os.path.join(base, name)
      for pid in _read(os.path.join(d, 'cgroup.procs')).split():
        try:
          os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
          pass
      try:
        os.rmdir(d)
        removed += 1
      except OSError:
        pass
  return removed


class Cgroup:
  """One run's cgroup(s): pids.max and a memory limit (memsw too where swap is accounted)."""

  def __init__(self, layout: dict[str, str], pids_max: int, memory_bytes: int):
    name = f'r1jax-{os.getpid()}-{next(_counter)}-{time.monotonic_ns() % 10**9}'
    self.dirs: list[str] = []
    self.v2 = 'v2' in layout
    try:
      if self.v2:
        parent = layout['v2']
        sub = set(_read(os.path.join(parent, 'cgroup.subtree_control')).split())
        if not {'pids', 'memory'} <= sub:   # `parent` holds no processes, so this is allowed
          if not _write(os.path.join(parent, 'cgroup.subtree_control'), '+pids +memory'):
            raise OSError('cannot enable pids/memory controllers (cgroup v2 delegation needed)')
        d = os.path.join(parent, name)
        os.mkdir(d)
        self.dirs.append(d)
        ok = (_write(os.path.join(d, 'pids.max'), str(pids_max)) and
              _write(os.path.join(d, 'memory.max'), str(memory_bytes)))
        _write(os.path.join(d, 'memory.swap.max'), '0')
        _write(os.path.join(d, 'memory.oom.group'), '1')
      else:
        for ctrl in ('pids', 'memory'):
          d = os.path.join(layout[ctrl], name)
          os.mkdir(d)
          self.dirs.append(d)
        ok = (_write(os.path.join(self.dirs[0], 'pids.max'), str(pids_max)) and
              _write(os.path.join(self.dirs[1], 'memory.limit_in_bytes'), str(memory_bytes)))
        _write(os.path.join(self.dirs[1], 'memory.memsw.limit_in_bytes'), str(memory_bytes))
        _write(os.path.join(self.dirs[1], 'memory.swappiness'), '0')
      if not ok:
        raise OSError('cannot set cgroup limits')
    except OSError:
      self.remove()
      raise

  def attach(self, pid: int) -> bool:
    return all(_write(os.path.join(d, 'cgroup.procs'), str(pid)) for d in self.dirs)

  def pids(self) -> list[int]:
    out = set()
    for d in self.dirs:
      out.update(int(x) for x in _read(os.path.join(d, 'cgroup.procs')).split())
    return sorted(out)

  def memory_peak(self) -> int:
    name = 'memory.peak' if self.v2 else 'memory.max_usage_in_bytes'
    try:
      return int(_read(os.path.join(self.dirs[-1], name)).strip() or 0)
    except ValueError:
      return 0

  def kill(self, timeout_s: float = 2.0) -> bool:
    """SIGKILL every process in the cgroup until it is empty; True if it emptied. Never raises."""
    deadline = time.monotonic() + timeout_s
    if self.v2 and self.dirs:
      _write(os.path.join(self.dirs[0], 'cgroup.kill'), '1')
    while True:
      pids = self.pids()
      if not pids:
        return True
      for pid in pids:
        try:
          os.kill(pid, signal.SIGKILL)
        except OSError:
          pass
      if time.monotonic() > deadline:
        return False
      time.sleep(0.005)

  def remove(self) -> bool:
    ok = True
    for d in self.dirs:
      for _ in range(200):
        try:
          os.rmdir(d)
          break
        except FileNotFoundError:
          break
        except OSError:
          time.sleep(0.005)
      else:
        ok = False
    self.dirs = [] if ok else self.dirs
    return ok
