"""Fixtures shared by the GRPO end-to-end tests (test_trainer.py, test_multihost.py)."""
import pytest

import grpo_testlib as lib
from r1jax.sft import trainer as sft_trainer


@pytest.fixture(scope="session")
def base_workdir(tmp_path_factory):
  """A tiny pre-trained "base" model workdir (the GRPO `init_from`), built once per session."""
  workdir = tmp_path_factory.mktemp("grpo_base")
  sft_trainer.train(lib.base_config(), workdir)
  return workdir
