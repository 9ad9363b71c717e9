"""Shared pieces of the stage configs (`configs/*.py`) and config validation.

Each stage config starts from `base_config()` and sets what differs. The
command line can then override any field (`--config.optim.learning_rate=1e-5`);
`config_flags` rejects unknown fields and wrong types before anything runs, and
`validate` catches the semantic mistakes (unknown stage, impossible batch split).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os

import ml_collections
from ml_collections import config_dict

STAGES = ("pretrain", "sft", "grpo", "eval", "rejection_sampling", "generate_responses", "reward_model", "quickstart", "pipeline")


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
  c = ml_collections.ConfigDict()
  c.stage = "sft"
  c.seed = 0
  # '' (random init), an r1jax workdir of a previous stage, or a Hugging Face directory.
  c.init_from = ""

  c.model = ml_collections.ConfigDict()
  c.model.preset = "tiny"
  # Any ModelConfig field, e.g. --config.model.overrides.num_layers=2 (None = the preset's).
  c.model.overrides = model_overrides_placeholder()
  c.model.dtype = "float32"        # compute dtype
  c.model.param_dtype = "float32"
  c.model.remat = False

  c.tokenizer = ml_collections.ConfigDict()
  c.tokenizer.path = ""            # .model / tokenizer.json / HF dir; '' = from init_from or trained
  c.tokenizer.vocab_size = 512     # when a SentencePiece model is trained from the corpus

  c.mesh = ml_collections.ConfigDict()
  c.mesh.shape = (-1, 1, 1)        # (data, fsdp, tensor); one -1 takes the remaining devices
  c.sharding_rules = ml_collections.ConfigDict()  # logical axis -> mesh axes overrides

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "adamw"
  c.optim.learning_rate = 1e-3
  c.optim.schedule = "cosine"      # constant | cosine | linear (after linear warmup)
  c.optim.warmup_steps = 20
  c.optim.end_lr_factor = 0.1
  c.optim.b1 = 0.9
  c.optim.b2 = 0.95
  c.optim.eps = 1e-8
  c.optim.weight_decay = 0.0
  c.optim.max_grad_norm = 1.0
  c.optim.grad_accum_steps = 1

  c.train = ml_collections.ConfigDict()
  c.train.num_steps = 200
  c.train.batch_size = 32
  c.train.seq_len = 128
  c.train.log_every = 20
  c.train.checkpoint_every = 500
  c.train.max_to_keep = 3
  return c


def validate(config) -> None:
  """Semantic checks with messages that say which field to change."""
  if config.stage not in STAGES:
    raise ValueError(f"config.stage={config.stage!r} is not one of {STAGES}")
  train = config.get("train")
  if train is not None:
    if int(train.get("num_steps", 1)) < 0:
      raise ValueError("config.train.num_steps must be >= 0")
    accum = int(config.get("optim", {}).get("grad_accum_steps", 1))
    bs = int(train.get("batch_size", 1))
    if accum < 1 or bs % accum:
      raise ValueError(f"config.train.batch_size={bs} must be a multiple of "
                       f"config.optim.grad_accum_steps={accum}")
  mesh = config.get("mesh")
  if mesh is not None and len(tuple(mesh.shape)) != 3:
    raise ValueError(f"config.mesh.shape must have 3 entries (data, fsdp, tensor), got {mesh.shape}")
