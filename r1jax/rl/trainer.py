"""The GRPO loop (stage `grpo`): R1-Zero, reasoning RL and all-scenario RL.

One step, all on the same mesh and the same params (no weight sync):
  1. take B prompts and sample G completions each with the policy's own params;
  2. decode and score them on the host (overlapping the next chunk's sampling);
  3. group advantages (GRPO / Dr. GRPO / RLOO), optional DAPO dynamic sampling;
  4. `num_iterations` (mu) passes of minibatch updates with the sampler's
     log-probs as pi_old and, if beta > 0, a frozen reference model;
  5. log, evaluate and checkpoint on schedule.

Exact resume: the step's rng is fold_in(seed, step), the prompt iterator's state
and the reference params are in the checkpoint, and metrics logged after the
restored step are dropped and recomputed.
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

from r1jax import experiment, sharding
from r1jax.checkpoint import Checkpointer
from r1jax.data import pipeline
from r1jax.data.templates import get_template
from r1jax.experiment import cfg_get, to_dict
from r1jax.metrics import MetricsWriter, Progress, plot_curves, read_metrics, truncate_metrics
from r1jax.rewards import build_reward_system
from r1jax.rl import losses
from r1jax.rl.experience import ExperienceMaker, select_groups
from r1jax.rl.logprobs import completion_logprobs
from r1jax.rl.tasks import load_rl_records
from r1jax.rollout import buckets
from r1jax.rollout.sampler import Sampler, SamplerConfig
from r1jax.train_state import (init_train_state, make_optimizer, make_train_step,
                               state_shardings)

log = logging.getLogger(__name__)

BATCH_KEYS = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages",
              "old_logprobs", "truncated")


def loss_config(rl) -> losses.LossConfig:
  lc = dict(to_dict(cfg_get(rl, "loss", {})) or {})
  preset = lc.pop("preset", None)
  base = losses.PRESETS[preset] if preset else losses.LossConfig()
  return base.replace(temperature=float(cfg_get(rl, "temperature", 1.0)), **lc)


def sampler_config(rl, tokenizer, stop_strings) -> SamplerConfig:
  """The sampler's settings for rollouts.

  Without configured `rl.prompt_len_buckets` there is one bucket, the prompt
  iterator's fixed width `rl.max_prompt_len`: the sampler otherwise trims the
  all-padding columns, so each step's longest prompt would give a new prompt
  width and recompile the sampler, the log-prob function and the update.
  """
  stops = []
  # rl.ignore_eos (as vLLM's SamplingParams.ignore_eos): fixed-length rollouts for benchmarks.
  eos = [] if cfg_get(rl, "ignore_eos", False) else list(tokenizer.eos_ids)
  for s in stop_strings:
    ids = tokenizer.encode(s)
    if len(ids) == 1:
      eos.append(ids[0])
    elif ids:
      stops.append(tuple(ids))
  return SamplerConfig(
      num_samples=int(rl.group_size), max_new_tokens=int(rl.max_new_tokens),
      temperature=float(cfg_get(rl, "temperature", 1.0)), top_p=float(cfg_get(rl, "top_p", 1.0)),
      top_k=int(cfg_get(rl, "top_k", 0)), eos_ids=tuple(dict.fromkeys(eos)),
      stop_sequences=tuple(stops), pad_id=int(tokenizer.pad_id),
      cache_dtype=cfg_get(rl, "cache_dtype", "float32"),
      prompt_len_buckets=(() if cfg_get(rl, "prompt_len_buckets", ()) == "auto"
                          else tuple(cfg_get(rl, "prompt_len_buckets", ())))
      or (int(rl.max_prompt_len),))


def _make_update(graphdef, loss_cfg, optimizer, schedule, mesh, rules, state, grad_accum: int):
  """Jitted `update(state, batch [R,...], rows [M]) -> (state, metrics)`; state donated.

  The minibatch is gathered on device from the step's full batch, so neither the
  host nor the compiler sees a new shape from one minibatch to the next.
  """
  loss_fn = losses.make_grpo_loss(graphdef, loss_cfg)
  prepare = lambda b: {**b, **losses.global_counts(b, loss_cfg)}
  step = make_train_step(loss_fn, optimizer, schedule, grad_accum_steps=grad_accum,
                         prepare_batch=prepare)
  state_sh = state_shardings(state, mesh)
  rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

  def update(state, batch, rows):
    mb = {k: jax.lax.with_sharding_constraint(
        jnp.take(v, rows, axis=0), sharding.batch_sharding(mesh, rules, (rows.shape[0],) + v.shape[1:]))
        for k, v in batch.items()}
    return step(state, mb)

  return jax.jit(update, out_shardings=(state_sh, rep), donate_argnums=(0,))


def _make_logprob_fn(graphdef, loss_cfg, mesh, rules):
  """Jitted completion log-probs of any params (reference model, or recomputed pi_old)."""
  def fn(params, batch):
    lp, _ = completion_logprobs((graphdef, params), batch["prompt_ids"], batch["prompt_mask"],
                                batch["completion_ids"], batch["completion_mask"],
                                loss_cfg.temperature, loss_cfg.vocab_chunk)
    return jax.lax.stop_gradient(lp)
  return jax.jit(fn)


@dataclasses.dataclass
class GRPOSetup:
  """Everything `train` builds before the loop; reusable from notebooks."""
  mesh: Any
  rules: Any
  tokenizer: Any
  template: Any
  model_cfg: Any
  graphdef: Any
  state: Any
  ref_params: Any
  sampler: Sampler
  sampler_cfg: SamplerConfig
  loss_cfg: losses.LossConfig
  optimizer: Any
  schedule: Any
  prompt_iter: Any
  eval_records: list
  reward_system: Any


def setup(config, workdir: str) -> GRPOSetup:
  rl = config.rl
  mesh, rules = experiment.mesh_and_rules(config)
  tokenizer = experiment.get_tokenizer(config, workdir)
  model_cfg, graphdef, params = experiment.init_model(config, mesh, rules, tokenizer, workdir)
  template = get_template(cfg_get(config, "template", "r1_zero"))
  train_records, eval_records = load_rl_records(config)
  loss_cfg = loss_config(rl)
  num_steps = int(config.train.num_steps)
  num_mb = max(1, int(rl.num_prompts) * int(rl.group_size) // int(cfg_get(rl, "minibatch_size", 0)
                                                                  or int(rl.num_prompts) * int(rl.group_size)))
  optimizer, schedule = make_optimizer(to_dict(config.optim),
                                       num_steps * num_mb * int(cfg_get(rl, "num_iterations", 1)))
  state = init_train_state(params, optimizer, int(cfg_get(config, "seed", 0)))
  # beta = 0: no reference model at all (no memory, no forward pass).
  ref_params = jax.tree.map(jnp.copy, params) if loss_cfg.beta > 0 else None
  stop_strings = tuple(cfg_get(rl, "stop_strings", ("</answer>",)))
  scfg = sampler_config(rl, tokenizer, stop_strings)
  if cfg_get(rl, "prompt_len_buckets", ()) == "auto":  # a few widths from the data
    lengths = buckets.sample_prompt_lengths(train_records, tokenizer, template,
                                            seed=int(cfg_get(config, "seed", 0)))
    scfg = dataclasses.replace(scfg, prompt_len_buckets=buckets.buckets_from_lengths(
        lengths, int(rl.max_prompt_len), int(rl.num_prompts)))
    log.info("Prompt-width buckets from the data: %s", scfg.prompt_len_buckets)
  sampler = Sampler(graphdef, model_cfg, scfg, mesh, rules)
  oversample = int(cfg_get(rl, "dynamic_sampling_factor", 1)) if cfg_get(rl, "dynamic_sampling") else 1
  prompt_iter = pipeline.make_prompt_iterator(
      train_records, tokenizer, template, batch_size=int(rl.num_prompts) * oversample,
      max_prompt_len=int(rl.max_prompt_len), seed=int(cfg_get(config, "seed", 0)),
      shard_by_process=False, weights=cfg_get(config.task, "weights", None)
      if isinstance(train_records, list) and train_records and isinstance(train_records[0], list)
      else None)
  reward_system = build_reward_system(config.rewards)
  return GRPOSetup(mesh, rules, tokenizer, template, model_cfg, graphdef, state, ref_params,
                   sampler, scfg, loss_cfg, optimizer, schedule, prompt_iter, eval_records,
                   reward_system)


def train(config, workdir: str | os.PathLike,
          on_step: Callable[[int, dict], None] | None = None) -> dict[str, Any]:
  """Runs GRPO to `config.train.num_steps` (resuming from `workdir`); returns a summary."""
  workdir = os.fspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  s = setup(config, workdir)
  rl, tcfg = config.rl, config.train
  g, b = int(rl.group_size), int(rl.num_prompts)
  rows_total = g * b
  mb_size = int(cfg_get(rl, "minibatch_size", 0)) or rows_total
  if rows_total % mb_size:
    raise ValueError(f"rl.minibatch_size={mb_size} must divide num_prompts*group_size={rows_total}")
  mu = int(cfg_get(rl, "num_iterations", 1))
  seed = int(cfg_get(config, "seed", 0))

  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"),
                      max_to_keep=int(cfg_get(tcfg, "max_to_keep", 3)))
  state, ref_params = s.state, s.ref_params
  target = {"train": state, **({"ref": ref_params} if ref_params is not None else {})}
  restored = ckpt.restore_latest(target)
  skipped_total = 0
  if restored is not None:
    step0, tree, data_state, meta = restored
    state, ref_params = tree["train"], tree.get("ref")
    # The running count of skipped (non-finite) updates is a logged metric: it is
    # checkpointed so that a resumed run logs the same values as an unbroken one.
    skipped_total = int(meta.get("skipped_updates_total", 0))
    if data_state:
      s.prompt_iter.set_state(data_state)
    truncate_metrics(os.path.join(workdir, "metrics.jsonl"), step0)
    log.info("Resumed GRPO from step %d", step0)

  update = _make_update(s.graphdef, s.loss_cfg, s.optimizer, s.schedule, s.mesh, s.rules, state,
                        int(cfg_get(config.optim, "grad_accum_steps", 1)))
  logprob_fn = _make_logprob_fn(s.graphdef, s.loss_cfg, s.mesh, s.rules)
  extra = {"prompt_opens_think": True} if s.template.prompt_opens_think else {}
  maker = ExperienceMaker(s.sampler, s.sampler_cfg, s.tokenizer, s.reward_system,
                          advantage=cfg_get(rl, "advantage", "grpo"),
                          adv_ddof=int(cfg_get(rl, "adv_ddof", 0)),
                          adv_eps=float(cfg_get(rl, "adv_eps", 1e-4)),
                          num_chunks=int(cfg_get(rl, "sample_chunks", 1)),
                          stop_strings=tuple(cfg_get(rl, "stop_strings", ("</answer>",))),
                          extra_fields=extra)
  evaluator = _make_evaluator(config, s)
  writer = MetricsWriter(workdir)
  guard = experiment.PreemptionGuard()
  num_steps = int(tcfg.num_steps)
  start = int(jax.device_get(state.step)) // max(1, mu * (rows_total // mb_size))
  bar = Progress(num_steps, start, desc="grpo", keys=("reward/mean", "accuracy_rate", "kl"))
  ckpt_every = int(cfg_get(tcfg, "checkpoint_every", 50))
  eval_every = int(cfg_get(config.eval, "every", 0)) if "eval" in config else 0
  ref_reset = int(cfg_get(rl, "ref_reset_every", 0))
  ref_ema = float(cfg_get(rl, "ref_ema", 0.0))
  base_key = jax.random.key(seed)
  last = {}
  try:
    if evaluator is not None and start == 0 and cfg_get(config.eval, "at_start", True):
      writer.write(0, evaluator(state.params), prefix="eval/")
    for step in range(start, num_steps):
      t_step = time.perf_counter()
      step_key = jax.random.fold_in(base_key, step)
      batch = next(s.prompt_iter)
      exp = maker.make(state.params, batch, step_key)
      ro = exp.rollout
      device_batch = {"prompt_ids": ro.prompt_ids, "prompt_mask": ro.prompt_mask,
                      "completion_ids": ro.completion_ids, "completion_mask": ro.completion_mask,
                      "old_logprobs": ro.logprobs,
                      **sharding.put_replicated_value(
                          {"advantages": exp.advantages,
                           "truncated": exp.truncated.astype(np.float32)}, s.mesh, s.rules)}
      num_informative = None
      if exp.advantages.shape[0] != rows_total:  # dynamic sampling: oversampled groups
        rows, num_informative = select_groups(exp.rewards, g, b, np.random.default_rng(
            [seed, step]))
        rows_dev = sharding.put_replicated_value(rows.astype(np.int32), s.mesh, s.rules,
                                                 batch_major=False)
        device_batch = {k: jnp.take(v, rows_dev, axis=0) for k, v in device_batch.items()}
      t_upd = time.perf_counter()
      if cfg_get(rl, "recompute_old_logprobs", False):
        device_batch["old_logprobs"] = logprob_fn(state.params, device_batch)
      if ref_params is not None:
        device_batch["ref_logprobs"] = logprob_fn(ref_params, device_batch)
        # Waiting here costs nothing (the update needs these first) and times the phase.
        jax.block_until_ready(device_batch["ref_logprobs"])
      t_ref = time.perf_counter()
      perm_rng = np.random.default_rng([seed, step, 1])
      upd_metrics = []
      for _ in range(mu):
        order = perm_rng.permutation(rows_total) if mu * (rows_total // mb_size) > 1 \
            else np.arange(rows_total)
        for m in range(rows_total // mb_size):
          rows = sharding.put_replicated_value(order[m * mb_size:(m + 1) * mb_size].astype(np.int32),
                                               s.mesh, s.rules, batch_major=False)
          state, um = update(state, device_batch, rows)
          upd_metrics.append(um)
      upd_metrics = jax.device_get(upd_metrics)
      t_done = time.perf_counter()
      m = {k: float(np.mean([u[k] for u in upd_metrics])) for k in upd_metrics[0]}
      skipped_total += int(sum(int(u["skipped"]) for u in upd_metrics))
      m.update(exp.metrics)
      m.update({"time/update_s": t_done - t_upd, "time/reference_s": t_ref - t_upd,
                "time/step_s": t_done - t_step,
                "tokens_per_s": exp.metrics["sampled_tokens"] / max(t_done - t_step, 1e-9),
                "skipped_updates_total": skipped_total})
      if num_informative is not None:
        m["dynamic_sampling/informative_groups"] = num_informative
      done = step + 1
      if ref_params is not None and ref_reset and done % ref_reset == 0:
        ref_params = jax.tree.map(jnp.copy, state.params)
      elif ref_params is not None and ref_ema > 0:
        ref_params = jax.tree.map(lambda r, p: (1 - ref_ema) * r + ref_ema * p, ref_params,
                                  state.params)
      last = writer.write(done, m)
      if evaluator is not None and eval_every and (done % eval_every == 0 or done == num_steps):
        last.update(writer.write(done, evaluator(state.params), prefix="eval/"))
      bar.update(1, last)
      if on_step is not None:
        on_step(done, last)
      tree = {"train": state, **({"ref": ref_params} if ref_params is not None else {})}
      if guard.end_of_step(done, num_steps, ckpt_every, lambda: ckpt.save(
          done, tree, s.prompt_iter.get_state(),
          {"stage": "grpo", "config": to_dict(config), "skipped_updates_total": skipped_total})):
        break
  finally:
    bar.close()
    ckpt.close()
    writer.close()
    guard.restore()
    s.reward_system.close()
  plot_curves(read_metrics(workdir), ["reward/mean", "accuracy_rate", "format_rate",
                                      "completion_len/mean", "kl", "eval/pass@1"],
              os.path.join(workdir, "reward_curve.png"), title="GRPO", smooth=5)
  return {"state": state, "setup": s, "last": last}


def _make_evaluator(config, s: GRPOSetup):
  """Periodic held-out evaluation (pass@1 over k samples, cons@k), or None."""
  if "eval" not in config or not s.eval_records or not cfg_get(config.eval, "every", 0):
    return None
  from r1jax.evals.evaluator import evaluate
  ecfg = config.eval

  def run(params):
    res = evaluate(sampler=s.sampler, params=params, tokenizer=s.tokenizer, template=s.template,
                   records=s.eval_records, num_samples=int(cfg_get(ecfg, "num_samples", 4)),
                   temperature=float(cfg_get(ecfg, "temperature", 0.6)),
                   top_p=float(cfg_get(ecfg, "top_p", 0.95)),
                   max_new_tokens=int(cfg_get(ecfg, "max_new_tokens", s.sampler_cfg.max_new_tokens)),
                   batch_size=int(cfg_get(ecfg, "batch_size", 32)),
                   max_prompt_len=int(config.rl.max_prompt_len),
                   seed=int(cfg_get(ecfg, "seed", 1234)),
                   # The same answer-extraction rules as the training reward.
                   rewards=s.reward_system)
    return res.summary
  return run
