"""Shared pieces of the GRPO end-to-end tests (and of `multihost_grpo_step.py`).

A tiny "base" model is pre-trained for a few steps on procedural arithmetic with
the bare R1-Zero template, then GRPO runs from it (`init_from`). The base model is
far too weak to answer correctly, so accuracy and format rewards are all 0 and
every group would have zero variance (no gradient at all, which would make the
resume and KL tests vacuous). The tests therefore add `test_length`, a reward
on the completion length, which always varies within a group.
"""
from __future__ import annotations

import importlib.util
import os
import pathlib
import time

import numpy as np

from r1jax import config as config_lib
from r1jax.rewards import registry

REPO = pathlib.Path(__file__).resolve().parents[2]


def length_reward(completions, completion_lengths=None, **_):
  """Shorter is better: 1 - len/32 (varies within every group; deterministic)."""
  lens = np.asarray(completion_lengths if completion_lengths is not None
                    else [len(c) for c in completions], np.float32)
  return 1.0 - lens / 32.0


def raising_reward(completions, **_):
  """Raises on every completion that contains an even digit (some items of a batch fail)."""
  if any(ch in c for c in completions for ch in "02468"):
    raise RuntimeError("reward function bug")
  return np.ones(len(completions), np.float32)


def hanging_reward(completions, marker: str = "", **_):
  """Pooled: the first item ever scored (across worker processes) hangs; the rest score 1."""
  try:
    os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    time.sleep(600)  # the pool's per-item timeout kills this worker long before
  except FileExistsError:
    pass
  return np.ones(len(completions), np.float32)


def register_test_rewards() -> None:
  registry.register("test_length", length_reward, overwrite=True)
  registry.register("test_raise", raising_reward, overwrite=True)
  registry.register("test_hang", hanging_reward, pooled=True, overwrite=True)


register_test_rewards()


def base_config(num_steps: int = 12):
  """A tiny pretrain stage (the SFT trainer) whose workdir is the GRPO `init_from`."""
  c = config_lib.base_config()
  c.stage = "pretrain"
  c.model.overrides.update(dict(num_layers=1, embed_dim=64, mlp_dim=128, num_heads=2,
                                num_kv_heads=1))
  c.tokenizer.vocab_size = 300
  c.mesh.shape = (2, 2, 2)
  c.optim.warmup_steps = 2
  c.train.update(num_steps=num_steps, batch_size=16, seq_len=64, log_every=1,
                 checkpoint_every=num_steps)
  c.data = dict(sources=(dict(kind="procedural", task="arithmetic", num_examples=400,
                              error_rate=0.2, template="r1_zero_bare"),))
  return c


def _r1_zero_module():
  spec = importlib.util.spec_from_file_location("r1_zero_config", REPO / "configs" / "r1_zero.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def grpo_config(base_workdir, num_steps: int = 4, beta: float = 0.0, mesh=(2, 2, 2), **rl):
  """The `tiny` R1-Zero preset shrunk to 4 prompts x 4 samples x 24 new tokens."""
  c = _r1_zero_module().get_config("tiny")
  c.init_from = os.fspath(base_workdir)
  c.template = "r1_zero_bare"
  c.mesh.shape = tuple(mesh)
  c.rl.update(dict(num_prompts=4, group_size=4, max_new_tokens=24, max_prompt_len=64,
                   sample_chunks=2, **rl))
  c.rl.loss.beta = float(beta)
  c.rewards.weights = {"accuracy": 1.0, "format": 1.0, "test_length": 1.0}
  c.rewards.num_workers = 0
  c.eval.every = 0
  c.optim.learning_rate = 1e-3
  c.train.num_steps = num_steps
  c.train.checkpoint_every = 100
  return c


# Metrics that depend on wall-clock time; every other logged value must reproduce exactly.
TIMING_KEYS = ("time", "tokens_per_s", "reward_overlap")


def deterministic(record: dict) -> dict:
  return {k: v for k, v in record.items()
          if not any(k == t or k.startswith(t + "/") for t in TIMING_KEYS)}


# The multi-host test's GRPO step (2 processes x 4 devices vs 1 process x 8): beta > 0
# (reference forward), two sample chunks and two minibatch updates.
MULTIHOST_KW = dict(num_steps=1, beta=0.05, minibatch_size=8)


def dump_process_results(out: dict, prefix: str, process_id: int) -> None:
  """A multi-host worker's results: its last metrics as `<prefix>.<id>.json`, and (process 0)
  the gathered params as `<prefix>.npz`."""
  import json
  import jax
  from jax.experimental import multihost_utils
  leaves = [np.asarray(multihost_utils.process_allgather(x, tiled=True))
            for x in jax.tree.leaves(out["state"].params)]
  with open(f"{prefix}.{process_id}.json", "w") as f:
    json.dump(deterministic(out["last"]), f)
  if process_id == 0:
    np.savez(f"{prefix}.npz", *leaves)


def assert_params_match(npz_path: str, params) -> None:
  """The params a multi-host run saved (`dump_process_results`) equal `params` to 1e-5."""
  import jax
  with np.load(npz_path) as z:
    multi = [z[f"arr_{i}"] for i in range(len(z.files))]
  ref = [np.asarray(x) for x in jax.tree.leaves(params)]
  assert len(multi) == len(ref)
  for a, b in zip(multi, ref):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
