"""Next-token training stages: `pretrain`, `sft` (cold start, curated mix, distillation).

All three are the same loop over `r1jax.train_state.make_train_step`:
  * pretrain: the loss covers every real token of the text;
  * sft / distillation: the loss covers completion tokens only (`loss_mask`).
Data comes from `config.data.sources`, a list of sources mixed with weights:
  {"kind": "jsonl", "path": ..., "prompt_field": "prompt", "completion_field": "completion"}
  {"kind": "procedural", "task": "countdown"|"arithmetic", "num_examples": N, "error_rate": p}
  {"kind": "chat", "path": ..., "chat_template": ... | "chat_template_from": HF dir}  (r1jax/data/chat.py)
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from r1jax import experiment, paths, runtime, sharding, stage_config
from r1jax.checkpoint import Checkpointer
from r1jax.data import epochs, pipeline, procedural
from r1jax.data.rows import read_rows
from r1jax.metrics import MetricsWriter, Progress, plot_curves, read_metrics, truncate_metrics
from r1jax.models.factory import merge_params
from r1jax.rollout import buckets
from r1jax.train_state import (init_train_state, jit_train_step, make_optimizer, make_train_step,
                               next_token_loss, state_shardings)

log = logging.getLogger(__name__)


def load_sources(data: stage_config.DataConfig) -> tuple[list[list[dict]], list[float]]:
  """Rows ({prompt, completion, ...}) of every configured source, and their weights."""
  sources, weights = [], []
  for i, src in enumerate(data.sources):
    if src.kind == "jsonl":
      if not src.path:
        raise ValueError(f"config.data.sources[{i}] (jsonl) needs a path")
      rows = read_rows(src.path, src.loader, src.split)   # JSONL, Parquet or a local HF dataset
      pf, cf = src.prompt_field, src.completion_field
      rows = [{"prompt": r[pf], "completion": r[cf]} for r in rows if pf in r and cf in r]
      if not rows:
        raise ValueError(f"config.data.sources[{i}]: no rows with fields {pf!r}/{cf!r} in "
                         f"{src.path}")
    elif src.kind == "chat":   # `messages` conversations (JSONL / Parquet / HF), r1jax/data/chat.py
      from r1jax.data import chat  # pylint: disable=import-outside-toplevel
      rows = chat.load_chat_source(dict(path=src.path, messages_field=src.messages_field,
                                        turns=src.turns, template=src.chat_template,
                                        chat_template_from=src.chat_template_from,
                                        loader=src.loader, split=src.split))
    else:
      rows = procedural.make_sft_corpus(
          task=src.task, num_examples=src.num_examples, seed=src.seed, split=src.split,
          error_rate=src.error_rate, template=src.template, **src.options)
    sources.append(rows)
    weights.append(src.weight)
  if not sources:
    raise ValueError("config.data.sources is empty")
  return sources, weights


def make_loss_fn(graphdef, loss_on_prompt: bool):
  """Cross-entropy over targets, normalised by the target count of the *whole* batch."""

  def loss_fn(params, batch):
    model = merge_params(graphdef, params)
    ids, seg = batch["input_ids"], batch["segment_ids"]
    logits, _ = model(ids[:, :-1], batch["positions"][:, :-1], None,
                      segment_ids_BT=seg[:, :-1])
    weights = _target_weights(batch, loss_on_prompt)
    loss, correct = next_token_loss(logits, ids[:, 1:], weights, batch["num_targets"])
    return loss, {"token_accuracy": correct / jnp.maximum(batch["num_targets"], 1.0),
                  "num_targets": jnp.sum(weights)}

  return loss_fn


def _target_weights(batch, loss_on_prompt: bool):
  seg = batch["segment_ids"]
  same_segment = (seg[:, 1:] == seg[:, :-1]) & (seg[:, 1:] > 0)  # no target across packed rows
  w = same_segment.astype(jnp.float32)
  if not loss_on_prompt:
    w = w * batch["loss_mask"][:, 1:]
  return w


def batch_width(segment_ids_BT: np.ndarray, widths: tuple[int, ...]) -> tuple[int, int]:
  """(the smallest of `widths` that holds every row's last real token, the real token count) of a
  right-padded host batch (`segment_ids` 0 on padding). Across hosts the widest local batch
  decides, so that every process cuts the global batch to the same width."""
  seg = np.asarray(segment_ids_BT)
  real = seg > 0
  cols = np.flatnonzero(real.any(axis=0))
  longest = int(cols[-1]) + 1 if cols.size else 1
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils   # pylint: disable=import-outside-toplevel
    longest = int(np.max(multihost_utils.process_allgather(np.int32(longest))))
  return buckets.choose_bucket(longest, widths), int(real.sum())


@paths.resolves_paths
def train(config, workdir: str | os.PathLike,
          on_step: Callable[[int, dict], None] | None = None) -> dict[str, Any]:
  """Runs a pretrain/sft stage to `config.train.num_steps`, resuming from `workdir`.

  `on_step(step, metrics)` is called after every step (notebooks, tests).
  """
  workdir = paths.as_str(workdir)
  paths.makedirs(workdir)
  cfg = stage_config.sft_config(config)
  resolved = stage_config.announce(cfg, workdir)
  stage, tcfg, dcfg = cfg.stage, cfg.train, cfg.data
  mesh, rules = experiment.mesh_and_rules(cfg)
  sources, weights = load_sources(dcfg)
  corpus = lambda: [r["prompt"] + r["completion"] for src in sources for r in src]
  tokenizer = experiment.get_tokenizer(cfg, workdir, corpus=corpus)
  model_cfg, graphdef, params = experiment.init_model(cfg, mesh, rules, tokenizer, workdir)
  num_steps = tcfg.num_steps
  # train.num_epochs > 0: a finite epoch plan (r1jax/data/epochs.py) sets the number of steps.
  epoch_kw = dict(num_epochs=tcfg.num_epochs,
                  epoch_proportions=list(dcfg.epoch_proportions) or None,
                  epoch_size=dcfg.epoch_size)
  if tcfg.num_epochs:
    num_steps = epochs.num_batches([len(s) for s in sources], tcfg.num_epochs,
                                   tcfg.batch_size // jax.process_count(),
                                   epoch_kw["epoch_proportions"], dcfg.epoch_size,
                                   jax.process_count())
    log.info("%d epochs: %d steps", tcfg.num_epochs, num_steps)
  optimizer, schedule = make_optimizer(dataclasses.asdict(cfg.optim), num_steps)
  state = init_train_state(params, optimizer, cfg.seed)
  del params

  batch_size = tcfg.batch_size
  if batch_size % jax.process_count():
    raise ValueError(f"train.batch_size={batch_size} must divide over {jax.process_count()} hosts")
  data_iter = pipeline.make_sft_iterator(
      sources if len(sources) > 1 else sources[0], tokenizer,
      batch_size=batch_size // jax.process_count(), max_len=tcfg.seq_len,
      seed=cfg.seed, weights=weights if len(sources) > 1 else None,
      pack=dcfg.pack, overflow=dcfg.overflow, **epoch_kw)

  ckpt = Checkpointer(paths.join(workdir, "checkpoints"), max_to_keep=tcfg.max_to_keep)
  restored = ckpt.restore_latest(state)
  if restored is not None:
    step0, state, data_state, _ = restored
    if data_state:
      data_iter.set_state(data_state)
    truncate_metrics(paths.join(workdir, "metrics.jsonl"), step0)
    log.info("Resumed %s from step %d", stage, step0)

  loss_on_prompt = stage == "pretrain" or dcfg.loss_on_prompt
  prepare = lambda b: {**b, "num_targets": jnp.sum(_target_weights(b, loss_on_prompt))}
  accum = runtime.grad_accum_steps(cfg.optim.grad_accum_steps, model_cfg, batch_size,
                                   tcfg.seq_len, batch_shards=sharding.batch_shards(
                                       mesh, rules, batch_size))
  step_fn = make_train_step(make_loss_fn(graphdef, loss_on_prompt), optimizer, schedule,
                            grad_accum_steps=accum, prepare_batch=prepare)
  state_sh = state_shardings(state, mesh)
  keys = ("input_ids", "loss_mask", "positions", "segment_ids")
  global_shape = (batch_size, tcfg.seq_len)
  batch_sh = {k: sharding.batch_sharding(mesh, rules, global_shape) for k in keys}
  jitted = jit_train_step(step_fn, state_sh, batch_sh, mesh)

  writer = MetricsWriter(workdir, config=config)
  guard = experiment.PreemptionGuard()
  log_every, ckpt_every = tcfg.log_every, tcfg.checkpoint_every
  start = int(jax.device_get(state.step))
  bar = Progress(num_steps, start, desc=stage, keys=("loss", "token_accuracy"))
  # The step's width: `train.seq_buckets` widths up to seq_len (1 = always seq_len).
  widths = buckets.completion_widths(tcfg.seq_len, tcfg.seq_buckets)
  t0, tokens, last = time.time(), 0, {}
  rows = batch_size // jax.process_count()   # this host's rows of every batch
  pending, seen = [], []   # device metrics; host (width, real tokens) per step
  try:
    for step in range(start, num_steps):
      batch = next(data_iter)
      width, real = batch_width(batch["segment_ids"], widths)
      batch = sharding.put_global_batch({k: batch[k][:, :width] for k in keys}, mesh, rules)
      state, metrics = jitted(state, batch)
      tokens += batch_size * width
      pending.append(metrics)
      seen.append((width, real))
      done = step + 1
      if done % log_every == 0 or done == num_steps:
        fetched = jax.device_get(pending)   # waits for the steps: dispatch runs ahead of them
        dt = time.time() - t0
        m = {k: np.mean([float(x[k]) for x in fetched]) for k in pending[0]}
        m.update(tokens_per_s=tokens / max(dt, 1e-9), steps_per_s=len(pending) / max(dt, 1e-9),
                 seq_width=float(np.mean([w for w, _ in seen])),
                 # this host's rows: the share of the computed [rows, width] blocks that is padding
                 padding_fraction=1.0 - sum(r for _, r in seen) / max(
                     1, rows * sum(w for w, _ in seen)))
        last = writer.write(done, m)
        bar.update(len(pending), last)
        pending, seen, tokens, t0 = [], [], 0, time.time()
      if on_step is not None:
        on_step(done, last)
      if guard.end_of_step(done, num_steps, ckpt_every, lambda: ckpt.save(
          done, state, data_iter.get_state(),
          {"stage": stage, "config": resolved})):
        break
  finally:
    bar.close()
    ckpt.close()
    writer.close()
    guard.restore()
  plot_curves(read_metrics(workdir), ["loss", "token_accuracy", "learning_rate"],
              paths.join(workdir, "train_curves.png"), title=stage)
  return {"step": int(jax.device_get(state.step)), **last, "state": state,
          "graphdef": graphdef, "model_cfg": model_cfg, "tokenizer": tokenizer}
