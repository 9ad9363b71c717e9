"""The notebooks run top to bottom on CPU, so they cannot rot (executed with nbclient).

The kernel is this interpreter (a kernelspec written to a temporary JUPYTER_PATH), so CI's fresh
virtualenv needs no `ipykernel install` step and the notebooks see the r1jax under test.
"""
from __future__ import annotations

import json
import os
import pathlib
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "r1jax-test-python"


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
  spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
  spec_dir.mkdir(parents=True)
  (spec_dir / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": "r1jax test kernel", "language": "python"}))
  monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("MPLBACKEND", "Agg")
  monkeypatch.delenv("R1JAX_CHECKPOINT", raising=False)
  monkeypatch.chdir(tmp_path)
  return tmp_path


@pytest.mark.slow  # minutes each on 2 cores: `pytest -m slow` (README, Tests)
@pytest.mark.parametrize("name", ["quickstart.ipynb", "evaluation.ipynb"])
def test_notebook_runs_top_to_bottom(name, kernel_env):
  nb = nbformat.read(NOTEBOOKS / name, as_version=4)
  assert nb.metadata.kernelspec.name == "python3"   # what users' Jupyter/Colab will run
  client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=300,
                                   resources={"metadata": {"path": str(kernel_env)}})
  t0 = time.time()
  client.execute()    # raises CellExecutionError with the failing cell's traceback
  elapsed = time.time() - t0
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.get("outputs", []))
  assert "backend: cpu" in outputs
  if name == "quickstart.ipynb":
    assert "(gold " in outputs and "r1_zero" in outputs
  else:
    assert "pass@1" in outputs and "samples are wrong" in outputs
  print(f"{name}: {elapsed:.0f}s")
