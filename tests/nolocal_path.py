"""A path that behaves like a remote (gs://) one for r1jax code, backed by local files.

`NoLocalPath` has no local-only behaviour for the code under test: `os.fspath` raises and
`str()` is not a local file name, so `open(p)`, `open(str(p))`, `os.path.join(p, ...)`,
`np.memmap(p)` or `SentencePieceProcessor(model_file=str(p))` fail on it as on gs://, while
code that uses the `etils.epath` methods works. (epath and orbax keep access to the name:
they implement the remote backends.)
"""
import sys

from etils import epath


class NoLocalPath(epath.gpath.PosixGPath):

  @staticmethod
  def _backend_caller() -> bool:
    caller = sys._getframe(2).f_globals.get("__name__", "")
    return caller.split(".")[0] in ("etils", "orbax", "tensorstore", "pathlib")

  def __fspath__(self):
    if self._backend_caller():
      return self._path_str
    raise TypeError("NoLocalPath has no local file name")

  def __str__(self):
    return self._path_str if self._backend_caller() else "nolocal://" + self._path_str


epath.register_path_cls(NoLocalPath)
