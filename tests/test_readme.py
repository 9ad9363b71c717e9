"""The README's copy-paste commands and install extras: what `.ci/run` executes verbatim."""
import ast
import importlib.util
import pathlib
import shlex

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _ci_module():
  spec = importlib.util.spec_from_file_location("readme_commands", ROOT / ".ci" / "readme_commands.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_readme_opens_with_install_and_quickstart_then_install_and_tests():
  quick, tests = _ci_module().commands((ROOT / "README.md").read_text())
  install, run = (shlex.split(part) for part in quick.split("&&"))
  assert install[:3] == ["pip", "install", "-e"]
  assert run[:3] == ["python", "-m", "r1jax.main"]
  flags = dict(a.split("=", 1) for a in run[3:])
  assert (ROOT / flags["--config"].split(":")[0]).exists()
  assert not pathlib.Path(flags["--workdir"]).is_absolute()  # as a user types it
  assert flags["--workdir"] == "runs/quickstart"  # where .ci/run looks for the summary
  assert "pytest" in tests and '".[dev]"' in tests


def test_extractor_rejects_a_readme_whose_first_blocks_are_not_commands():
  ci = _ci_module()
  with pytest.raises(SystemExit):
    ci.commands("```bash\npip install -e .\necho two commands\n```\n```bash\npytest\n```\n")
  with pytest.raises(SystemExit):
    ci.commands("```python\nprint(1)\n```\n```bash\npytest\n```\n")
  assert ci.commands("```bash\na \\\n  b\n```\ntext\n```bash\nc\n```\n") == ["a    b", "c"]


def test_accelerator_extras_pin_the_same_jax_as_core():
  tree = ast.parse((ROOT / "setup.py").read_text())
  jax_pin = next(n.value.value for n in tree.body if isinstance(n, ast.Assign)
                 and getattr(n.targets[0], "id", "") == "JAX")
  spec = jax_pin[len("jax"):]
  env: dict = {}
  exec(compile(ast.Module([n for n in tree.body if isinstance(n, ast.Assign)], []), "setup", "exec"),
       env)
  assert jax_pin in env["CORE"]
  for extra, build in (("tpu", "jax[tpu]"), ("cuda12", "jax[cuda12]"), ("cuda13", "jax[cuda13]")):
    assert env["EXTRAS"][extra] == [build + spec]
