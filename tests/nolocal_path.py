"""A path that behaves like a remote (gs://) one for r1jax code, backed by local files.

`NoLocalPath` has no local-only behaviour for the code under test: `os.fspath` raises and
`str()` is not a local file name, so `open(p)`, `open(str(p))`, `os.path.join(p, ...)`,
`np.memmap(p)` or `SentencePieceProcessor(model_file=str(p))` fail on it as on gs://, while
code that uses the `etils.epath` methods works. (epath and orbax keep access to the name:
they implement the remote backends.)

It is also a URL scheme: `epath.Path("nolocal:///tmp/x/run")` is the NoLocalPath of the local
directory /tmp/x/run, and `str()` of one gives that URL back. So a workdir *string*
`nolocal:///tmp/x/run` travels through configs, `paths.resolve` and `os.path.join` exactly as
`gs://bucket/run` does.

`forbid_local_io(monkeypatch)` makes any leftover local I/O on such a URL fail loudly: the os,
io and shutil functions that r1jax (or pathlib) could call on a path raise AssertionError when
the path names the `nolocal:` scheme. epath's local backend, underneath, sees the plain local
names and is not affected.
"""
import builtins
import io
import os
import shutil
import sys

from etils import epath

SCHEME = "nolocal://"


class NoLocalPath(epath.gpath.PosixGPath):

  def __new__(cls, *parts):
    parts = tuple(p[len(SCHEME):] if isinstance(p, str) and p.startswith(SCHEME) else p
                  for p in parts)
    return super().__new__(cls, *parts)

  @staticmethod
  def _backend_caller() -> bool:
    caller = sys._getframe(2).f_globals.get("__name__", "")
    return caller.split(".")[0] in ("etils", "orbax", "tensorstore", "pathlib")

  def __fspath__(self):
    if self._backend_caller():
      return self._path_str
    raise TypeError("NoLocalPath has no local file name")

  def __str__(self):
    return self._path_str if self._backend_caller() else SCHEME + self._path_str


epath.register_path_cls(SCHEME)(NoLocalPath)


def url(local_dir) -> str:
  """The `nolocal://` URL of a local directory (an absolute path)."""
  return SCHEME + os.path.abspath(os.fspath(local_dir))


_GUARDED = {
    builtins: ("open",), io: ("open",),
    os: ("open", "makedirs", "mkdir", "replace", "rename", "remove", "unlink", "listdir",
         "scandir", "stat", "lstat", "rmdir", "truncate", "walk"),
    os.path: ("exists", "isdir", "isfile", "getsize", "lexists"),
    shutil: ("copy", "copy2", "copyfile", "copytree", "rmtree", "move"),
}


def _names_scheme(arg) -> bool:
  try:
    s = os.fspath(arg)
  except TypeError:
    return False
  if isinstance(s, bytes):
    s = s.decode(errors="replace")
  # pathlib and os.path.normpath fold "nolocal:///x" into "nolocal:/x"
  return s.startswith("nolocal:")


def forbid_local_io(monkeypatch) -> None:
  """Local file functions called on a `nolocal:` path raise AssertionError (see module doc)."""
  for module, names in _GUARDED.items():
    for name in names:
      real = getattr(module, name)

      def guarded(*args, _real=real, _name=f"{module.__name__}.{name}", **kwargs):
        for a in args[:2]:
          if _names_scheme(a):
            raise AssertionError(f"local I/O on a remote path: {_name}({a!r})")
        return _real(*args, **kwargs)

      monkeypatch.setattr(module, name, guarded)
