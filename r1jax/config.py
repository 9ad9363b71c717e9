"""Shared pieces of the stage configs (`configs/*.py`) and config validation.

Each stage config starts from `base_config()` and sets what differs; its sections are
generated from the typed dataclasses of `r1jax.stage_config`, the one place their
defaults are written. The command line can then override any field
(`--config.optim.learning_rate=1e-5`); `config_flags` rejects unknown fields and wrong
types before anything runs, and `validate` builds the stage's typed config, which
catches the rest (unknown stage, conflicting fields, impossible batch split).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os

import ml_collections
from ml_collections import config_dict

# Each stage's library entry point `fn(config, workdir)`, imported only when that stage runs
# (`r1jax.run.run` dispatches through this table; the stage names are its keys).
STAGE_ENTRY = {
    "pretrain": "r1jax.sft.trainer:train",
    "sft": "r1jax.sft.trainer:train",
    "grpo": "r1jax.rl.trainer:train",
    "eval": "r1jax.evals.runner:run",
    "rejection_sampling": "r1jax.evals.rejection_sampling:run",
    "generate_responses": "r1jax.evals.generate_responses:run",
    "reward_model": "r1jax.rm.train:run",
    "export": "r1jax.export:run",
    "quickstart": "r1jax.pipeline:run",
    "pipeline": "r1jax.pipeline:run",
}
STAGES = tuple(STAGE_ENTRY)


def sibling_config(caller_file: str, name: str):
  """The module `configs/<name>.py` next to `caller_file`, for configs built from others.

  Config files are loaded by path (they are not a package), so one config reuses another's
  `get_config` or helpers through this instead of an import.
  """
  path = os.path.join(os.path.dirname(os.path.abspath(caller_file)), name + ".py")
  spec = importlib.util.spec_from_file_location(f"r1jax_configs_{name}", path)
  if spec is None or not os.path.exists(path):
    raise ValueError(f"No config file {path}")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def model_overrides_placeholder() -> ml_collections.ConfigDict:
  """One typed, unset field per scalar ModelConfig field, so the command line can set any."""
  from r1jax.models.config import ModelConfig
  types = {"int": int, "float": float, "bool": bool, "str": str}
  out = ml_collections.ConfigDict()
  for f in dataclasses.fields(ModelConfig):
    t = types.get(f.type if isinstance(f.type, str) else getattr(f.type, "__name__", ""))
    if t is not None:
      out[f.name] = config_dict.placeholder(t)
  return out


def base_config() -> ml_collections.ConfigDict:
  """The sections every stage shares, generated from the typed dataclasses of
  `r1jax.stage_config` (the one place their defaults are written)."""
  from r1jax import stage_config as sc
  c = ml_collections.ConfigDict()
  c.stage = "sft"
  common = sc.configdict_of(sc.CommonConfig)
  for k in common.keys():
    c[k] = common[k]
  c.optim = sc.configdict_of(sc.OptimConfig)
  c.train = sc.configdict_of(sc.TrainConfig)
  return c


def validate(config) -> None:
  """Builds the stage's typed config (`r1jax.stage_config.typed_config`): unknown fields,
  wrong types, conflicting fields and impossible settings raise with the field's name."""
  if config.stage not in STAGES:
    raise ValueError(f"config.stage={config.stage!r} is not one of {STAGES}")
  from r1jax import stage_config
  stage_config.typed_config(config)
