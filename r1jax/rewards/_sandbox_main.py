"""Code that runs INSIDE the code sandbox (stdlib only; `code.py` passes it with `python -I -B -c`).

Roles (argv[1]):
- `server`: loads the candidate program and answers remote calls on two pipes (requests in, replies out). Every
  reply is plain data (see `_enc`) or an opaque handle; nothing the candidate makes ever runs in the tester.
- `tester`: runs the dataset's tests in its own interpreter and sandbox. Names the program defines are proxies
  (`Ref`) whose calls go to the server; the values that come back are rebuilt from data here, so `__eq__` tricks,
  patched builtins or patched harness functions in the candidate cannot change an assertion. The verdict goes to
  this process's stdout, which only the parent can read.
- `main`: runs the program as `__main__` (stdin/stdout cases; the parent compares the output).
- `seccomp`: the weak (no bubblewrap) mode's prelude: installs the seccomp program given as hex on argv[2] and
  sets no_new_privs, then continues as the role in argv[3].
"""
import builtins
import json
import os
import signal
import struct
import sys

MAX_MSG = 8 << 20
MAX_NODES = 1_000_000
_EXC_OK = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, Exception)}


class CaseTimeout(BaseException):
  pass


def _on_alarm(signum, frame):
  raise CaseTimeout()


def _write_all(fd, data):
  view = memoryview(data)
  while view:
    n = os.write(fd, view)
    view = view[n:]


def _read_exact(fd, n):
  chunks, got = [], 0
  while got < n:
    b = os.read(fd, min(n - got, 1 << 20))
    if not b:
      raise EOFError('channel closed')
    chunks.append(b)
    got += len(b)
  return b''.join(chunks)


def send(fd, obj):
  data = json.dumps(obj, separators=(',', ':')).encode('utf-8', 'surrogatepass')
  if len(data) > MAX_MSG:
    raise ValueError('message too large')
  _write_all(fd, struct.pack('>I', len(data)) + data)


def recv(fd):
  (n,) = struct.unpack('>I', _read_exact(fd, 4))
  if n > MAX_MSG:
    raise ValueError('message too large')
  return json.loads(_read_exact(fd, n).decode('utf-8', 'surrogatepass'))


# ---- data encoding (both directions). Tagged lists; everything else is a JSON scalar.
def _enc(x, ref, budget):
  budget[0] -= 1
  if budget[0] < 0:
    raise ValueError('value too large')
  t = type(x)
  if x is None or t is bool or t is str:
    return x
  if t is int:
    return x
  if t is float:
    return ['f', repr(x)]
  if t in (list, tuple, set, frozenset):
    return [{list: 'l', tuple: 't', set: 's', frozenset: 'fs'}[t], [_enc(v, ref, budget) for v in x]]
  if t is dict:
    return ['d', [[_enc(k, ref, budget), _enc(v, ref, budget)] for k, v in x.items()]]
  if t is complex:
    return ['c', repr(x.real), repr(x.imag)]
  if t in (bytes, bytearray):
    return ['b' if t is bytes else 'ba', bytes(x).hex()]
  mod = getattr(t, '__module__', '') or ''
  if mod == 'fractions' and t.__name__ == 'Fraction':
    return ['F', int(x.numerator), int(x.denominator)]
  if mod == 'decimal' and t.__name__ == 'Decimal':
    return ['D', str(x)]
  if mod.split('.')[0] == 'numpy' and hasattr(x, 'tolist'):
    return _enc(x.tolist(), ref, budget)
  if isinstance(x, bool):
    return bool(x)
  if isinstance(x, int):
    return int(x)
  if isinstance(x, float):
    return ['f', repr(float(x))]
  if isinstance(x, str):
    return str(x)
  return ref(x)


def _dec(x, deref, depth=0):
  if depth > 500:
    raise ValueError('value too deep')
  if x is None or isinstance(x, (bool, int, str)):
    return x
  if not isinstance(x, list) or not x or not isinstance(x[0], str):
    raise ValueError('malformed value')
  tag = x[0]
  if tag == 'f':
    return float(x[1])
  if tag in ('l', 't', 's', 'fs'):
    items = [_dec(v, deref, depth + 1) for v in x[1]]
    return {'l': list, 't': tuple, 's': set, 'fs': frozenset}[tag](items)
  if tag == 'd':
    return {_dec(k, deref, depth + 1): _dec(v, deref, depth + 1) for k, v in x[1]}
  if tag == 'c':
    return complex(float(x[1]), float(x[2]))
  if tag in ('b', 'ba'):
    return (bytes if tag == 'b' else bytearray)(bytes.fromhex(x[1]))
  if tag == 'F':
    import fractions
    return fractions.Fraction(int(x[1]), int(x[2]))
  if tag == 'D':
    import decimal
    return decimal.Decimal(x[1])
  if tag == 'r':
    return deref(x)
  raise ValueError(f'unknown tag {tag!r}')


# ---------------------------------------------------------------- server (candidate side)
def server(spec):
  req_r, rep_w, case_s = spec['req_r'], spec['rep_w'], float(spec['case_s'])
  objects = {}

  def ref(x):
    objects[id(x)] = x
    return ['r', id(x), type(x).__name__[:50], bool(callable(x))]

  def enc(x):
    return _enc(x, ref, [MAX_NODES])

  def deref(x):
    return objects[x[1]]

  signal.signal(signal.SIGALRM, _on_alarm)
  g = {'__name__': '__candidate__', '__builtins__': builtins}
  error = None
  signal.setitimer(signal.ITIMER_REAL, case_s)
  try:
    exec(compile(spec['program'], '<candidate>', 'exec'), g)
  except BaseException as e:  # noqa: BLE001 - SystemExit too: leaving before the tests is a failure
    error = f'{type(e).__name__}: {e}'[:300]
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
  names = {}
  if error is None:
    for k, v in list(g.items()):
      if k.startswith('__'):
        continue
      try:
        if type(v).__name__ == 'module':
          names[k] = ['mod', str(v.__name__)]
        else:   # small data is copied; anything else (or big tables) stays a handle
          names[k] = ['val', _enc(v, ref, [10_000])]
      except BaseException:  # noqa: BLE001
        names[k] = ['val', ref(v)]
  send(rep_w, {'error': error, 'names': names})
  while True:
    try:
      msg = recv(req_r)
    except BaseException:  # noqa: BLE001 - the tester is gone
      os._exit(0)
    seq, op = msg[0], msg[1]
    signal.setitimer(signal.ITIMER_REAL, case_s)
    try:
      obj = objects[msg[2]]
      if op == 'call':
        args = _dec(msg[3], deref)
        kwargs = _dec(msg[4], deref)
        value = obj(*args, **kwargs)
      elif op == 'getattr':
        value = getattr(obj, str(msg[3]))
      elif op == 'iter':
        import itertools
        value = list(itertools.islice(iter(obj), 100_000))
      elif op == 'len':
        value = int(len(obj))
      elif op == 'getitem':
        value = obj[_dec(msg[3], deref)]
      else:
        raise ValueError(f'unknown op {op!r}')
      reply = [seq, 'ok', enc(value)]
    except CaseTimeout:
      reply = [seq, 'exc', 'TimeoutError', 'call timed out']
    except BaseException as e:  # noqa: BLE001
      try:
        reply = [seq, 'exc', type(e).__name__[:50], str(e)[:300]]
      except BaseException:  # noqa: BLE001
        reply = [seq, 'exc', 'Exception', 'error']
    finally:
      signal.setitimer(signal.ITIMER_REAL, 0)
    try:
      send(rep_w, reply)
    except BaseException:  # noqa: BLE001 - e.g. too large
      send(rep_w, [seq, 'exc', 'ValueError', 'result too large'])


# ---------------------------------------------------------------- tester (trusted side)
class RemoteError(Exception):
  pass


class _Channel:
  def __init__(self, req_w, rep_r):
    self.req_w, self.rep_r, self.seq = req_w, rep_r, 0

  def call(self, *msg):
    self.seq += 1
    send(self.req_w, [self.seq, *msg])
    while True:
      reply = recv(self.rep_r)
      if isinstance(reply, list) and reply and reply[0] == self.seq:
        break
    if reply[1] == 'ok':
      return _dec(reply[2], self.deref)
    name, text = str(reply[2]), str(reply[3])
    exc = getattr(builtins, name, None) if name in _EXC_OK else None
    raise (exc(text) if exc is not None else RemoteError(f'{name}: {text}'))

  def deref(self, x):
    return Ref(self, int(x[1]), str(x[2]), bool(x[3]))


class Ref:
  """A program object that is not plain data. It can be called, its attributes, items and length read, or iterated
  (all remotely, each answer rebuilt from data); any other use (==, bool, hash, arithmetic) raises, so a non-data
  value can never satisfy an assertion by itself."""
  __slots__ = ('_ch', '_id', '_type', '_callable')

  def __init__(self, ch, oid, tname, is_callable):
    object.__setattr__(self, '_ch', ch)
    object.__setattr__(self, '_id', oid)
    object.__setattr__(self, '_type', tname)
    object.__setattr__(self, '_callable', is_callable)

  def __call__(self, *args, **kwargs):
    return self._ch.call('call', self._id, _enc_local(list(args)), _enc_local(dict(kwargs)))

  def __getattr__(self, name):
    if name.startswith('__'):
      raise AttributeError(name)
    return self._ch.call('getattr', self._id, name)

  def __iter__(self):
    return iter(self._ch.call('iter', self._id))

  def __len__(self):
    return self._ch.call('len', self._id)

  def __getitem__(self, key):
    return self._ch.call('getitem', self._id, _enc_local(key))

  def _refuse(self, *a):
    raise TypeError(f'the program returned a {self._type} object, not plain data')

  __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = __bool__ = _refuse
  __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __contains__ = _refuse

  def __repr__(self):
    return f'<remote {self._type}>'


def _enc_local(x):
  def ref(v):
    if isinstance(v, Ref):
      return ['r', v._id]
    raise TypeError(f'cannot pass a {type(v).__name__} to the program')
  return _enc(x, ref, [MAX_NODES])


class _LazyModule:
  def __init__(self, name):
    self._name = name

  def __getattr__(self, attr):
    import importlib
    return getattr(importlib.import_module(self._name), attr)


_NO_IMPORT = {'antigravity', 'this', 'turtle', 'tkinter', 'idlelib', 'webbrowser', 'pydoc', 'pdb'}


def tester(spec):
  ch = _Channel(spec['req_w'], spec['rep_r'])
  out = sys.stdout.buffer
  case_s = float(spec['case_s'])
  n = spec['n_cases']

  def emit(i, ok, msg=''):
    out.write(f'case {i} {int(ok)} {str(msg)[:300]}'.replace('\n', ' ').encode('utf-8', 'replace') + b'\n')
    out.flush()

  signal.signal(signal.SIGALRM, _on_alarm)

  def timed(fn, extra=0.0):
    signal.setitimer(signal.ITIMER_REAL, case_s + 0.5 + extra)
    try:
      fn()
      return None
    except CaseTimeout:
      return 'timeout'
    except BaseException as e:  # noqa: BLE001
      return f'{type(e).__name__}: {e}'[:300]
    finally:
      signal.setitimer(signal.ITIMER_REAL, 0)

  ready = {}

  def wait_ready():
    ready.update(recv(ch.rep_r))
  err = timed(wait_ready, extra=case_s)
  if err is None and ready.get('error'):
    err = str(ready['error'])
  if err is not None:
    for i in range(n):
      emit(i, False, err)
    return
  g = {'__name__': '__tests__', '__builtins__': builtins}
  if spec.get('trusted'):   # the dataset's prompt: its helpers run here, never the program's versions of them
    timed(lambda: exec(compile(spec['trusted'], '<prompt>', 'exec'), g))
    g.pop(spec['entry_point'], None)
  for name, (kind, payload) in ready['names'].items():
    # A program name never shadows a builtin or a trusted helper: `def sorted(x): ...` would otherwise decide
    # what the tests compare against.
    if name in g or (hasattr(builtins, name) and name != spec.get('entry_point')):
      continue
    if kind == 'mod':
      root = str(payload).split('.')[0]
      if root in _NO_IMPORT or not (root in sys.stdlib_module_names or root == 'numpy'):
        continue
      g[name] = _LazyModule(str(payload))
    else:
      try:
        g[name] = _dec(payload, ch.deref)
      except (ValueError, TypeError, KeyError, RecursionError):
        continue
  mode, tests = spec['mode'], spec['tests']
  if mode in ('check', 'script'):
    src = tests + ('\n\ncheck(' + spec['entry_point'] + ')\n' if mode == 'check' else '\n')
    err = timed(lambda: exec(compile(src, '<tests>', 'exec'), g))
    emit(0, err is None, err or '')
  elif mode == 'asserts':
    for i, t in enumerate(tests):
      err = timed(lambda t=t: exec(compile(t, '<test>', 'exec'), g))
      emit(i, err is None, err or '')
  out.write(b'done\n')
  out.flush()


def run_main(spec):
  """stdin/stdout mode: the program is __main__; fd 0/1 are the case's input and the captured output."""
  src = os.pread(spec['prog_fd'], MAX_MSG, 0)   # pread: the descriptor's offset is shared by every case
  os.close(spec['prog_fd'])
  sys.argv = ['main.py']
  g = {'__name__': '__main__', '__builtins__': builtins, '__file__': 'main.py'}
  exec(compile(src, 'main.py', 'exec'), g)


def install_seccomp(hex_prog):
  import ctypes
  prog = bytes.fromhex(hex_prog)
  libc = ctypes.CDLL(None, use_errno=True)
  buf = ctypes.create_string_buffer(prog)

  class FProg(ctypes.Structure):
    _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]
  fprog = FProg(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
  if libc.prctl(38, 1, 0, 0, 0) != 0:   # PR_SET_NO_NEW_PRIVS
    raise OSError(ctypes.get_errno(), 'no_new_privs')
  if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:   # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
    raise OSError(ctypes.get_errno(), 'seccomp')


def main():
  args = sys.argv[1:]
  if args[0] == 'seccomp':
    install_seccomp(args[1])
    args = args[2:]
  role = args[0]
  sys.path.extend(json.loads(args[1]))   # site-packages, without running their .pth files
  if role == 'main':
    run_main({'prog_fd': int(args[2])})
    return
  spec = json.loads(sys.stdin.buffer.read().decode('utf-8', 'surrogatepass'))
  if role == 'server':
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
      os.dup2(devnull, fd)
    server(spec)
  elif role == 'tester':
    try:   # non-dumpable: a same-uid process cannot open /proc/<tester>/fd (weak mode without root)
      import ctypes
      ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)   # PR_SET_DUMPABLE
    except Exception:  # noqa: BLE001
      pass
    tester(spec)


if __name__ == '__main__':
  main()
