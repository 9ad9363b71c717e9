"""The GRPO loop (stage `grpo`): R1-Zero, reasoning RL and all-scenario RL.

One step, by default all on the same mesh and the same params (no weight sync):
  1. take B prompts and sample G completions each with the policy's own params (or, with
     `rl.async_staleness = k > 0`, take the rollouts launched k steps earlier with the
     params of then, possibly on a sampler sub-mesh: `r1jax.rl.async_rollout`);
  2. decode them on the host, cut each at its first stop string (mask, lengths and
     `truncated` follow the text) and score them (overlapping the next chunk's sampling);
  3. group advantages (GRPO / Dr. GRPO / RLOO), optional DAPO dynamic sampling;
  4. `num_iterations` (mu) passes of minibatch updates with pi_old = the sampler's
     log-probs, or the trainer's own when they would differ (`needs_recompute`), and,
     if beta > 0, a frozen reference model (KL in the loss or in the reward);
  5. log, evaluate and checkpoint on schedule.

The config is typed once (`r1jax.stage_config.grpo_config`), printed, written to
`workdir/resolved_config.json` and saved in every checkpoint's metadata.

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

from r1jax import experiment, paths, runtime, sharding, stage_config
from r1jax.checkpoint import Checkpointer
from r1jax.data import pipeline
from r1jax.data.templates import for_tokenizer
from r1jax.metrics import MetricsWriter, Progress, plot_curves, read_metrics, truncate_metrics
from r1jax.rewards import build_reward_system
from r1jax.rl import async_rollout, losses
from r1jax.rl import advantages as adv_lib
from r1jax.rl.experience import ExperienceMaker, cut_completions, select_groups
from r1jax.rl.experience import host_fetch as experience_host_fetch
from r1jax.rl.programs import LOGPROB_KEYS  # noqa: F401  (re-exported: the update's batch keys)
from r1jax.rl.programs import lp_batch as _lp_batch
from r1jax.rl.programs import logprob_gap as _logprob_gap
from r1jax.rl.programs import make_logprob_fn as _make_logprob_fn
from r1jax.rl.programs import make_update as _make_update
from r1jax.rl.programs import masked_mean as _masked_mean
from r1jax.rl.programs import seq_k1 as _seq_k1
from r1jax.rl.programs import shared_groups as _shared_groups
from r1jax.rl.tasks import load_rl_records
from r1jax.rollout import buckets
from r1jax.rollout.engine import make_sampler
from r1jax.rollout.sampler import Sampler, SamplerConfig
from r1jax.rollout.stops import stop_token_sequences
from r1jax.train_state import init_train_state, make_optimizer

log = logging.getLogger(__name__)

BATCH_KEYS = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages",
              "old_logprobs", "truncated")


def loss_config(rl) -> losses.LossConfig:
  """The LossConfig of `config.rl` (a ConfigDict section or an `RLConfig`): the preset's
  fields are the defaults and explicitly set fields override them."""
  if isinstance(rl, stage_config.RLConfig):
    return rl.loss
  return stage_config.build_rl(rl).loss


def sampler_config(rl: stage_config.RLConfig, tokenizer) -> SamplerConfig:
  """The sampler's settings for rollouts.

  Without configured `rl.prompt_len_buckets` there is one bucket, the prompt
  iterator's fixed width `rl.max_prompt_len`: the sampler otherwise trims the
  all-padding columns, so each step's longest prompt would give a new prompt
  width and recompile the sampler, the log-prob function and the update.
  """
  eos, stops = stop_token_sequences(tokenizer, rl.stop_strings)
  # rl.ignore_eos (as vLLM's SamplingParams.ignore_eos): fixed-length rollouts (benchmarks).
  eos_ids = () if rl.ignore_eos else tuple(dict.fromkeys(tuple(tokenizer.eos_ids) + eos))
  return SamplerConfig(
      num_samples=rl.group_size, max_new_tokens=rl.max_new_tokens,
      temperature=rl.temperature, top_p=rl.top_p, top_k=rl.top_k,
      top_p_candidates=rl.top_p_candidates,
      eos_ids=eos_ids,
      stop_sequences=stops, pad_id=int(tokenizer.pad_id), cache_dtype=rl.cache_dtype,
      prompt_len_buckets=rl.prompt_len_buckets or (rl.max_prompt_len,))


def needs_recompute(rl: stage_config.RLConfig, model_cfg) -> tuple[bool, str]:
  """(recompute pi_old with the trainer?, why) for `rl.recompute_old_logprobs=None` (auto).

  The sampler's log-probs are pi_old only up to numerics: its bf16 KV cache, its decode
  path and its kernels differ from the trainer's forward. That gap is harmless for a
  token-level ratio at mu = 1 with one minibatch (the ratio's value is then the gap
  itself, ~1e-3, far inside a 0.2 clip), but not when
    * the ratio is sequence-level (GSPO's clip is 3e-4: rows are clipped at step 0),
    * the cache dtype differs from the compute dtype (the gap grows),
    * pi_theta moves between updates on the same batch (mu > 1 or several minibatches),
    * an importance-sampling correction (TIS / MIS) needs both distributions.
  """
  if rl.recompute_old_logprobs is not None:
    return bool(rl.recompute_old_logprobs), "set by config.rl.recompute_old_logprobs"
  reasons = []
  if rl.loss.ratio_level == "sequence":
    reasons.append("sequence-level ratio")
  if jnp.dtype(rl.cache_dtype) != jnp.dtype(model_cfg.dtype):
    reasons.append(f"cache dtype {rl.cache_dtype} != compute dtype {model_cfg.dtype}")
  if rl.num_iterations > 1 or rl.num_minibatches > 1:
    reasons.append("several updates per batch")
  if rl.loss.is_correction != "none":
    reasons.append(f"importance-sampling correction {rl.loss.is_correction}")
  if rl.async_staleness > 0:
    reasons.append(f"stale rollouts (async_staleness={rl.async_staleness})")
  return bool(reasons), ", ".join(reasons) or "sampler log-probs match the trainer's path"


@dataclasses.dataclass
class GRPOSetup:
  """Everything `train` builds before the loop; reusable from notebooks."""
  cfg: stage_config.GRPOConfig
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
  recompute_old: bool = False
  # Where the sampler's params live (`async_rollout.placement`); None = the trainer's own.
  placement: Any = None


@paths.resolves_paths
def setup(config, workdir: str) -> GRPOSetup:
  """Builds the typed config once (printed and saved to workdir) and everything else."""
  cfg = stage_config.grpo_config(config)
  stage_config.announce(cfg, workdir)
  rl = cfg.rl
  mesh, rules = experiment.mesh_and_rules(cfg)
  sampler_mesh = None
  if rl.async_sampler_devices:  # disjoint sub-meshes: trainer first, sampler last
    mesh, sampler_mesh = async_rollout.split_mesh(cfg.mesh.shape, rl.async_sampler_devices)
  tokenizer = experiment.get_tokenizer(cfg, workdir)
  model_cfg, graphdef, params = experiment.init_model(cfg, mesh, rules, tokenizer, workdir)
  template = for_tokenizer(cfg.template, tokenizer)
  train_records, eval_records = load_rl_records(cfg.task, cfg.eval_task)
  optimizer, schedule = make_optimizer(
      dataclasses.asdict(cfg.optim), cfg.train.num_steps * rl.num_minibatches * rl.num_iterations)
  state = init_train_state(params, optimizer, cfg.seed)
  # beta = 0: no reference model at all (no memory, no forward pass).
  ref_params = jax.tree.map(jnp.copy, params) if rl.loss.beta > 0 else None
  scfg = sampler_config(rl, tokenizer)
  if rl.auto_prompt_buckets:  # a few prompt widths chosen from the data
    lengths = buckets.sample_prompt_lengths(train_records, tokenizer, template, seed=cfg.seed)
    scfg = dataclasses.replace(scfg, prompt_len_buckets=buckets.buckets_from_lengths(
        lengths, rl.max_prompt_len, rl.num_prompts))
    log.info("Prompt-width buckets from the data: %s", scfg.prompt_len_buckets)
  place = (async_rollout.placement(model_cfg, graphdef, params, mesh, rules, sampler_mesh)
           if async_rollout.enabled(rl) else None)
  sampler = make_sampler(place.graphdef if place else graphdef, model_cfg, scfg,
                         place.mesh if place else mesh, rules, section=rl)  # rl.engine
  oversample = rl.dynamic_sampling_factor if rl.dynamic_sampling else 1
  mixed = isinstance(train_records, list) and train_records and isinstance(train_records[0], list)
  prompt_iter = pipeline.make_prompt_iterator(
      train_records, tokenizer, template, batch_size=rl.num_prompts * oversample,
      max_prompt_len=rl.max_prompt_len, seed=cfg.seed, shard_by_process=False,
      weights=cfg.task.get("weights") if mixed else None)
  reward_system = build_reward_system(dataclasses.asdict(cfg.rewards))
  recompute, why = needs_recompute(rl, model_cfg)
  loss_cfg = async_rollout.loss_config(rl)
  if loss_cfg is not rl.loss:
    log.warning("async_staleness=%d: truncated importance sampling on (is_cap=%s)",
                rl.async_staleness, loss_cfg.is_cap)
  loss_cfg = losses.width_independent(loss_cfg, rl.max_new_tokens)
  log.warning("pi_old: %s (%s)", "recomputed by the trainer" if recompute
              else "the sampler's log-probs", why)
  if rl.top_p < 1.0 or rl.top_k > 0:
    log.warning("rl.top_p=%s / rl.top_k=%s: tokens are drawn from the truncated distribution "
                "but pi_old is the full softmax at temperature %s (logged: "
                "sampling/full_minus_truncated_logp; rl.loss.is_correction='tis' weighs "
                "tokens by pi_old / the truncated distribution)", rl.top_p, rl.top_k,
                rl.temperature)
  return GRPOSetup(cfg, mesh, rules, tokenizer, template, model_cfg, graphdef, state, ref_params,
                   sampler, scfg, loss_cfg, optimizer, schedule, prompt_iter, eval_records,
                   reward_system, recompute, place)


@paths.resolves_paths
def train(config, workdir: str | os.PathLike,
          on_step: Callable[[int, dict], None] | None = None) -> dict[str, Any]:
  """Runs GRPO to `config.train.num_steps` (resuming from `workdir`); returns a summary."""
  workdir = paths.as_str(workdir)
  paths.makedirs(workdir)
  s = setup(config, workdir)
  cfg = s.cfg
  rl, tcfg = cfg.rl, cfg.train
  g, b = rl.group_size, rl.num_prompts
  rows_total = rl.rows
  mb_size = rl.minibatch_size or rows_total
  mu = rl.num_iterations
  seed = cfg.seed
  resolved = stage_config.resolved_dict(cfg)

  ckpt = Checkpointer(paths.join(workdir, "checkpoints"), max_to_keep=tcfg.max_to_keep)
  state, ref_params = s.state, s.ref_params
  target = {"train": state, **({"ref": ref_params} if ref_params is not None else {})}
  inflight = versions = None
  if ckpt.latest_step() is not None:
    # In-flight params of an asynchronous run (their number is in the metadata); restored
    # (so the tree matches) even when this run does not use them.
    n = len(ckpt.restore_meta().get("async_inflight_versions", []))
    sh = ((s.placement and s.placement.shardings)
          or jax.tree.map(lambda x: x.sharding, state.params))
    like = jax.tree.map(lambda x, h: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=h),
                        state.params, sh)
    target.update({"inflight": [like] * n} if n else {})
  restored = ckpt.restore_latest(target)
  skipped_total = 0
  if restored is not None:
    step0, tree, data_state, meta = restored
    state, ref_params = tree["train"], tree.get("ref")
    if ("inflight" in tree and s.placement is not None
        and meta.get("async_staleness") == rl.async_staleness):
      inflight, versions = tree["inflight"], meta["async_inflight_versions"]
    # The running count of skipped (non-finite) updates is a logged metric: it is
    # checkpointed so that a resumed run logs the same values as an unbroken one.
    skipped_total = int(meta.get("skipped_updates_total", 0))
    if data_state:
      s.prompt_iter.set_state(data_state)
    truncate_metrics(paths.join(workdir, "metrics.jsonl"), step0)
    log.info("Resumed GRPO from step %d", step0)

  accum = runtime.grad_accum_steps(cfg.optim.grad_accum_steps, s.model_cfg, mb_size,
                                   rl.max_prompt_len + rl.max_new_tokens, g,
                                   sharding.batch_shards(s.mesh, s.rules, mb_size))
  g_update, g_lp = _shared_groups(rl, accum)
  update = _make_update(s.graphdef, s.loss_cfg, s.optimizer, s.schedule, s.mesh, s.rules, state,
                        accum, g_update)
  logprob_fn = _make_logprob_fn(s.graphdef, s.loss_cfg, s.mesh, s.rules, g_lp)
  extra = {"prompt_opens_think": True} if s.template.prompt_opens_think else {}
  maker = ExperienceMaker(s.sampler, s.sampler_cfg, s.tokenizer, s.reward_system, rl,
                          extra_fields=extra)
  evaluator = _make_evaluator(cfg, s)
  writer = MetricsWriter(workdir, config=config)
  guard = experiment.PreemptionGuard()
  num_steps = tcfg.num_steps
  num_updates = mu * rl.num_minibatches
  start = int(jax.device_get(state.step)) // max(1, num_updates)
  bar = Progress(num_steps, start, desc="grpo", keys=("reward/mean", "accuracy_rate", "kl"))
  base_key = jax.random.key(seed)
  widths = buckets.completion_widths(rl.max_new_tokens, rl.completion_buckets)
  lo_hi = jnp.asarray([1.0 - s.loss_cfg.clip_eps_low, 1.0 + s.loss_cfg.clip_eps_high], jnp.float32)
  last = {}
  source = None
  if s.placement is not None:
    source = async_rollout.AsyncRollouts(maker, s.prompt_iter, base_key, rl.async_staleness,
                                         num_steps, s.placement.push)
  # The evaluator samples with the sampler, on its devices.
  sampler_params = s.placement.push if s.placement is not None else (lambda p: p)
  try:
    if evaluator is not None and start == 0 and cfg.eval.at_start:
      _log_eval(writer, 0, evaluator(sampler_params(state.params)))
    if source is not None:
      source.start(start, state.params, inflight, versions)
    for step in range(start, num_steps):
      t_step = time.perf_counter()
      if source is None:
        exp = maker.make(state.params, next(s.prompt_iter), jax.random.fold_in(base_key, step))
        ro = exp.rollout
      else:
        t_wait = time.perf_counter()
        exp, version = source.get(step, state.params)
        t_wait = time.perf_counter() - t_wait
        ro = (exp.rollout if s.placement.shardings is None
              else async_rollout.to_mesh(exp.rollout, s.placement.mesh, s.mesh, s.rules))
      device_batch = {"prompt_ids": ro.prompt_ids, "prompt_mask": ro.prompt_mask,
                      "completion_ids": ro.completion_ids, "completion_mask": ro.completion_mask,
                      "old_logprobs": ro.logprobs,
                      **sharding.put_replicated_value(
                          {"advantages": exp.advantages,
                           "truncated": exp.truncated.astype(np.float32)}, s.mesh, s.rules)}
      truncated_sampling = rl.top_p < 1.0 or rl.top_k > 0
      if s.loss_cfg.is_correction != "none":
        # The behaviour policy: the distribution the tokens were drawn from (truncated
        # by top-k / top-p when those are on).
        device_batch["sampler_logprobs"] = (ro.sampling_logprobs if truncated_sampling
                                            else ro.logprobs)
      num_informative = None
      rewards_rows, lengths_rows = exp.rewards, exp.lengths
      if exp.advantages.shape[0] != rows_total:  # dynamic sampling: oversampled groups
        rows, num_informative = select_groups(exp.rewards, g, b, np.random.default_rng(
            [seed, step]))
        rewards_rows, lengths_rows = exp.rewards[rows], exp.lengths[rows]
        rows_dev = sharding.put_replicated_value(rows.astype(np.int32), s.mesh, s.rules,
                                                 batch_major=False)
        device_batch = {k: jnp.take(v, rows_dev, axis=0) for k, v in device_batch.items()}
      device_batch, width = cut_completions(device_batch, lengths_rows, widths)
      t_upd = time.perf_counter()
      gap = None
      if s.recompute_old:
        sampler_lp = device_batch["old_logprobs"]
        device_batch["old_logprobs"] = logprob_fn(state.params, _lp_batch(device_batch))
        gap = _logprob_gap(sampler_lp, device_batch["old_logprobs"],
                           device_batch["completion_mask"], lo_hi)
      kl_metrics = {}
      if ref_params is not None:
        device_batch["ref_logprobs"] = logprob_fn(ref_params, _lp_batch(device_batch))
        if s.loss_cfg.kl_in_reward:
          # KL in the reward: r_i - beta * sum_t (log pi_old - log pi_ref) (k1 summed over
          # the completion), then the group advantages of the penalised rewards.
          kl_seq = experience_host_fetch(_seq_k1(device_batch["old_logprobs"],
                                                 device_batch["ref_logprobs"],
                                                 device_batch["completion_mask"]))
          adv = adv_lib.compute_advantages(rewards_rows - s.loss_cfg.beta * kl_seq, g,
                                           rl.advantage, rl.adv_ddof, rl.adv_eps)
          device_batch["advantages"] = sharding.put_replicated_value(
              np.asarray(adv, np.float32), s.mesh, s.rules)
          kl_metrics = {"kl_in_reward/seq_mean": float(kl_seq.mean())}
        # Waiting here costs nothing (the update needs these first) and times the phase.
        jax.block_until_ready(device_batch["ref_logprobs"])
      t_ref = time.perf_counter()
      perm_rng = np.random.default_rng([seed, step, 1])
      upd_metrics = []
      for _ in range(mu):
        order = perm_rng.permutation(rows_total) if num_updates > 1 else np.arange(rows_total)
        for m in range(rows_total // mb_size):
          rows = sharding.put_replicated_value(order[m * mb_size:(m + 1) * mb_size].astype(np.int32),
                                               s.mesh, s.rules, batch_major=False)
          state, um = update(state, device_batch, rows)
          upd_metrics.append(um)
      upd_metrics = jax.device_get(upd_metrics)
      t_done = time.perf_counter()
      m = {k: float(np.mean([u[k] for u in upd_metrics])) for k in upd_metrics[0]
           if not k.startswith("pi_old/")}
      # The gap between the sampler's log-probs and the trainer's: measured directly when
      # pi_old is recomputed, else read off the first update (taken before any change).
      m.update({k: float(v) for k, v in (jax.device_get(gap) if gap is not None else {
          k: upd_metrics[0][k] for k in upd_metrics[0] if k.startswith("pi_old/")}).items()})
      skipped_total += int(sum(int(u["skipped"]) for u in upd_metrics))
      m.update(exp.metrics)
      m.update(kl_metrics)
      if truncated_sampling:
        # log(full softmax prob) - log(truncated prob) of the drawn tokens: 0 without
        # truncation; how far pi_old (full softmax) is from the sampling distribution.
        m["sampling/full_minus_truncated_logp"] = float(_masked_mean(
            ro.logprobs - ro.sampling_logprobs, ro.completion_mask))
      m.update({"time/update_s": t_done - t_upd, "time/reference_s": t_ref - t_upd,
                "time/step_s": t_done - t_step,
                "tokens_per_s": exp.metrics["sampled_tokens"] / max(t_done - t_step, 1e-9),
                "skipped_updates_total": skipped_total})
      m["completion_width"] = width
      if num_informative is not None:
        m["dynamic_sampling/informative_groups"] = num_informative
      if source is not None:
        m.update(async_rollout.staleness_metrics(step, np.full(len(rewards_rows), version),
                                                 rl.async_staleness))
        m.update({"time/async_get_s": t_wait, "time/async_push_s": source.push_s})
      done = step + 1
      if ref_params is not None and rl.ref_reset_every and done % rl.ref_reset_every == 0:
        ref_params = jax.tree.map(jnp.copy, state.params)
      elif ref_params is not None and rl.ref_ema > 0:
        ref_params = jax.tree.map(lambda r, p: (1 - rl.ref_ema) * r + rl.ref_ema * p,
                                  ref_params, state.params)
      last = writer.write(done, m)
      if evaluator is not None and (done % cfg.eval.every == 0 or done == num_steps):
        last.update(_log_eval(writer, done, evaluator(sampler_params(state.params))))
      bar.update(1, last)
      if on_step is not None:
        on_step(done, last)
      tree = {"train": state, **({"ref": ref_params} if ref_params is not None else {})}
      meta = {"stage": "grpo", "config": resolved, "skipped_updates_total": skipped_total}
      data_state = s.prompt_iter.get_state
      if source is not None:  # the in-flight steps' params, for an exact resume
        data_state = lambda: source.data_state(done)  # noqa: E731
        flight, flight_versions = source.inflight(done)
        tree.update({"inflight": flight} if flight else {})
        meta.update(async_staleness=rl.async_staleness, async_inflight_versions=flight_versions)
      if guard.end_of_step(done, num_steps, tcfg.checkpoint_every, lambda: ckpt.save(
          done, tree, data_state(), meta)):
        break
  finally:
    if source is not None:
      source.close()
    bar.close()
    ckpt.close()
    writer.close()
    guard.restore()
    s.reward_system.close()
  plot_curves(read_metrics(workdir), ["reward/mean", "accuracy_rate", "format_rate",
                                      "completion_len/mean", "kl", "eval/pass@1"],
              paths.join(workdir, "reward_curve.png"), title="GRPO", smooth=5)
  return {"state": state, "setup": s, "last": last}


def _log_eval(writer: MetricsWriter, step: int, res) -> dict[str, float]:
  """The summary as `eval/` scalars; the samples (question, completion, extracted answer,
  verdict, ...) as a W&B table `eval/samples` when W&B is on. Returns the logged scalars."""
  scalars = writer.write(step, res.summary, prefix="eval/")
  writer.log_table("eval/samples", res.samples, step=step)
  return scalars


def _make_evaluator(cfg: stage_config.GRPOConfig, s: GRPOSetup):
  """Periodic held-out evaluation (an `EvalResult`: pass@1 over k samples, cons@k), or None."""
  if not s.eval_records or not cfg.eval.every:
    return None
  from r1jax.evals.evaluator import evaluate
  ecfg = cfg.eval

  def run(params):
    res = evaluate(sampler=s.sampler, params=params, tokenizer=s.tokenizer, template=s.template,
                   records=s.eval_records, num_samples=ecfg.num_samples,
                   temperature=ecfg.temperature, top_p=ecfg.top_p,
                   max_new_tokens=ecfg.max_new_tokens or s.sampler_cfg.max_new_tokens,
                   batch_size=ecfg.batch_size, max_prompt_len=cfg.rl.max_prompt_len,
                   seed=ecfg.seed,
                   # The same answer-extraction rules as the training reward.
                   rewards=s.reward_system)
    return res
  return run
