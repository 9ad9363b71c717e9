"""What every stage sets up the same way: mesh, tokenizer, model, preemption.

A stage's workdir is also the hand-off to the next stage (`init_from=<workdir>`):

  workdir/model_config.json   the ModelConfig the params belong to
  workdir/tokenizer/          the tokenizer files (copied, so the workdir is self-contained)
  workdir/checkpoints/<step>  orbax checkpoints (state, data iterator, meta)
  workdir/metrics.jsonl       one JSON record per logged step

`init_from` may also name a Hugging Face directory (config.json + safetensors),
which is loaded straight onto the mesh by `r1jax.models.hf.load_pretrained`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
from typing import Any, Callable, Iterable

import jax
import numpy as np
from etils import epath
from jax.sharding import Mesh

from r1jax import paths, sharding
from r1jax.models import config as model_config_lib
from r1jax.models.config import ModelConfig, RopeScaling
from r1jax.models.factory import abstract_model, create_model, param_shardings, split_params
from r1jax.stage_config import common_config
from r1jax.tokenizer import Tokenizer, copy_tokenizer_files, load_tokenizer, train_sentencepiece

log = logging.getLogger(__name__)

MODEL_CONFIG_FILE = "model_config.json"
TOKENIZER_DIR = "tokenizer"


def to_dict(cfg: Any) -> Any:
  return cfg.to_dict() if hasattr(cfg, "to_dict") else cfg


# ---------------------------------------------------------------------------- mesh


def mesh_and_rules(config) -> tuple[Mesh, sharding.ShardingRules]:
  """The mesh and sharding rules of a stage (its typed config or ConfigDict)."""
  c = common_config(config)
  mesh = sharding.make_mesh(tuple(c.mesh.shape))
  rules = sharding.ShardingRules.from_dict(dict(c.sharding_rules))
  return mesh, rules


# ---------------------------------------------------------------------------- workdir hand-off


def is_r1jax_workdir(path: str | os.PathLike) -> bool:
  return (epath.Path(path) / MODEL_CONFIG_FILE).exists()


def is_hf_dir(path: str | os.PathLike) -> bool:
  p = epath.Path(path)
  return (p / "config.json").exists() and any(p.glob("*.safetensors"))


def save_model_config(cfg: ModelConfig, workdir: str | os.PathLike) -> None:
  if jax.process_index() != 0:
    return
  (paths.makedirs(workdir) / MODEL_CONFIG_FILE).write_text(
      json.dumps(dataclasses.asdict(cfg), indent=1))


def load_model_config(workdir: str | os.PathLike) -> ModelConfig:
  path = epath.Path(workdir) / MODEL_CONFIG_FILE
  try:
    d = json.loads(path.read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"Cannot read the model config of {workdir}: {e}") from e
  if d.get("rope_scaling"):
    d["rope_scaling"] = RopeScaling(**d["rope_scaling"])
  return ModelConfig(**d)


# ---------------------------------------------------------------------------- tokenizer


def tokenizer_dir(workdir: str | os.PathLike) -> epath.Path:
  return epath.Path(workdir) / TOKENIZER_DIR


def _copy_tokenizer(src: str | os.PathLike, workdir: str | os.PathLike) -> None:
  if jax.process_index() != 0:
    return
  src, dst = epath.Path(src), tokenizer_dir(workdir)
  if dst.exists() and src.resolve() == dst.resolve():
    return
  dst.mkdir(parents=True, exist_ok=True)
  if src.is_dir():  # every file: chat_template.jinja, vocab.json, merges.txt, ...
    copy_tokenizer_files(src, dst)
  elif src.suffix == ".model":
    (dst / "tokenizer.model").write_bytes(src.read_bytes())
  else:
    (dst / src.name).write_bytes(src.read_bytes())


def get_tokenizer(config, workdir: str | os.PathLike,
                  corpus: Callable[[], Iterable[str]] | None = None) -> Tokenizer:
  """The tokenizer of this stage, in order of precedence:

  1. `config.tokenizer.path` (a .model / tokenizer.json / HF dir);
  2. the tokenizer of `config.init_from` (a previous stage or a HF dir);
  3. this workdir's own copy (a resumed run of a stage that trained its own);
  4. a SentencePiece model trained on `corpus()` (tiny models trained from scratch).
  The result is copied into `workdir/tokenizer/` so later stages can chain from it.
  """
  cc = common_config(config)
  init_from = cc.init_from
  # What the config names wins over this workdir's copy, so a reused workdir can't
  # silently pair new weights with a stale tokenizer.
  candidates = [cc.tokenizer.path]
  if init_from:
    candidates += [tokenizer_dir(init_from), init_from]
  candidates.append(tokenizer_dir(workdir))
  for c in candidates:
    if c and epath.Path(c).exists():
      try:
        tok = load_tokenizer(c)
      except (FileNotFoundError, ValueError):
        continue
      _copy_tokenizer(c, workdir)
      return tok
  if corpus is None:
    raise ValueError("No tokenizer found: set config.tokenizer.path or config.init_from, "
                     "or use a stage that trains one from its corpus.")
  vocab = cc.tokenizer.vocab_size
  out = tokenizer_dir(workdir)
  if jax.process_index() == 0:
    log.info("Training a %d-piece SentencePiece tokenizer into %s", vocab, out)
    train_sentencepiece(list(corpus()), out / "tokenizer", vocab_size=vocab)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("tokenizer_trained")
  return load_tokenizer(out / "tokenizer.model")


# ---------------------------------------------------------------------------- model


def model_config_from(config, tokenizer: Tokenizer | None = None) -> ModelConfig:
  """ModelConfig from `config.model` (preset + overrides), or from `init_from`."""
  c = common_config(config)
  mcfg, init_from = c.model, c.init_from
  overrides = {k: v for k, v in mcfg.overrides.items() if v is not None}
  for key in ("dtype", "param_dtype", "remat"):
    overrides[key] = getattr(mcfg, key)
  preset = mcfg.preset
  if init_from and is_r1jax_workdir(init_from) and not preset:
    return load_model_config(init_from).replace(**overrides)
  if init_from and is_hf_dir(init_from) and not preset:
    from r1jax.models import hf
    return hf.config_from_hf(json.loads((epath.Path(init_from) / "config.json").read_text()),
                             **overrides)
  if not preset:
    raise ValueError("Set config.model.preset (e.g. 'tiny') or config.init_from.")
  cfg = model_config_lib.get_model_config(preset, **overrides)
  if tokenizer is not None and preset.startswith("tiny") and "vocab_size" not in overrides:
    # Tiny models are trained from scratch: size the vocabulary to the tokenizer.
    cfg = cfg.replace(vocab_size=int(tokenizer.vocab_size))
  if tokenizer is not None and tokenizer.vocab_size > cfg.vocab_size:
    raise ValueError(f"Tokenizer has {tokenizer.vocab_size} ids but the model only "
                     f"{cfg.vocab_size} embeddings")
  return cfg


def init_model(config, mesh: Mesh, rules: sharding.ShardingRules,
               tokenizer: Tokenizer | None = None, workdir: str | os.PathLike | None = None):
  """(model_cfg, graphdef, params): from `init_from` if given, else random (sharded)."""
  model_cfg = model_config_from(config, tokenizer)
  c = common_config(config)
  init_from, seed = c.init_from, c.seed
  if init_from and is_r1jax_workdir(init_from):
    from r1jax.checkpoint import restore_params
    abstract = abstract_model(model_cfg, mesh, rules)
    graphdef, abs_params = split_params(abstract)
    shard = param_shardings(abstract, mesh, rules)
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abs_params, shard)
    params, _ = restore_params(init_from, target)
    log.info("Initialised params from %s", init_from)
  elif init_from and is_hf_dir(init_from):
    from r1jax.models import hf
    model = hf.load_pretrained(init_from, mesh=mesh, rules=rules,
                               param_dtype=model_cfg.param_dtype, compute_dtype=model_cfg.dtype)
    graphdef, params = split_params(model)
    model_cfg = model.cfg
  elif init_from:
    raise ValueError(f"init_from={init_from!r} is neither an r1jax workdir (no "
                     f"{MODEL_CONFIG_FILE}) nor a Hugging Face directory")
  else:
    graphdef, params = split_params(create_model(model_cfg, seed, mesh, rules))
  if workdir is not None:
    save_model_config(model_cfg, workdir)
  return model_cfg, graphdef, params


# ---------------------------------------------------------------------------- preemption


# Set when a training loop stopped on a termination signal before its last step, so that a
# caller running several stages in one process (`r1jax.pipeline.run`) does not take the stage
# for finished. Cleared by `clear_stopped_early()`.
_stopped_early = False


def stopped_early() -> bool:
  """Whether a training loop stopped on a termination signal before its last step since the
  last `clear_stopped_early()`."""
  return _stopped_early


def clear_stopped_early() -> None:
  global _stopped_early
  _stopped_early = False


class PreemptionGuard:
  """Turns SIGTERM (TPU preemption, Slurm) into a flag the training loop checks.

  The loop saves a checkpoint and exits cleanly when `should_stop()` says so. In
  multi-host runs every process must agree, so the flag is all-reduced.
  """

  def __init__(self, signals=(signal.SIGTERM,)):
    self._flag = False
    self._old = {}
    for s in signals:
      try:
        self._old[s] = signal.signal(s, self._handler)
      except ValueError:  # not in the main thread (e.g. some notebook runners)
        pass

  def _handler(self, signum, frame):
    log.warning("Received signal %d: will checkpoint and stop after this step.", signum)
    self._flag = True

  def request_stop(self):
    self._flag = True

  def should_stop(self) -> bool:
    if jax.process_count() == 1:
      return self._flag
    from jax.experimental import multihost_utils
    flags = multihost_utils.process_allgather(np.asarray([self._flag], np.int32))
    return bool(np.any(flags))

  def restore(self):
    for s, h in self._old.items():
      signal.signal(s, h)

  def end_of_step(self, done: int, num_steps: int, checkpoint_every: int,
                  save: Callable[[], Any]) -> bool:
    """Checkpoints when due, at the last step, or when a stop was requested (then saving
    first). Returns True when the loop must stop now."""
    stop = self.should_stop()
    if done % checkpoint_every == 0 or done == num_steps or stop:
      save()
    if stop:
      log.warning("Stopping at step %d after a termination signal (checkpoint saved).", done)
      if done < num_steps:
        global _stopped_early
        _stopped_early = True
    return stop
