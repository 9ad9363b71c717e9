"""The command line: config overrides, clear errors for bad fields and types."""
import os
import subprocess
import sys

import pytest

from r1jax import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args, timeout=600):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  return subprocess.run([sys.executable, "-m", "r1jax.main", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def test_unknown_field_is_a_clear_error(tmp_path):
  r = _main("--config=configs/sft.py:tiny", f"--workdir={tmp_path}", "--config.optim.learning_rat=1")
  assert r.returncode != 0
  assert "learning_rat" in r.stderr and "Traceback" not in r.stderr


def test_wrong_type_is_a_clear_error(tmp_path):
  r = _main("--config=configs/sft.py:tiny", f"--workdir={tmp_path}", "--config.train.num_steps=ten")
  assert r.returncode != 0
  assert "num_steps" in r.stderr and "Traceback" not in r.stderr


def test_unknown_preset_is_a_clear_error(tmp_path):
  r = _main("--config=configs/sft.py:huge", f"--workdir={tmp_path}")
  assert r.returncode != 0 and "Unknown preset" in r.stderr


def test_cli_trains_and_overrides_apply(tmp_path):
  r = _main("--config=configs/sft.py:tiny", f"--workdir={tmp_path}",
            "--config.train.num_steps=4", "--config.train.log_every=2",
            "--config.model.overrides.num_layers=1", "--config.train.seq_len=64",
            "--config.tokenizer.vocab_size=400")
  assert r.returncode == 0, r.stderr[-3000:]
  assert os.path.exists(tmp_path / "checkpoints" / "4")
  with open(tmp_path / "model_config.json") as f:
    assert '"num_layers": 1' in f.read()


def test_validate_catches_semantic_errors():
  c = config_lib.base_config()
  c.stage = "dance"
  with pytest.raises(ValueError, match="config.stage"):
    config_lib.validate(c)
  c = config_lib.base_config()
  c.train.batch_size, c.optim.grad_accum_steps = 10, 3
  with pytest.raises(ValueError, match="grad_accum_steps"):
    config_lib.validate(c)
