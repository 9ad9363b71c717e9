"""The GRPO step's jitted programs (built once per run by `r1jax.rl.trainer.train`): the donated
minibatch update, the completion log-probs of any params (reference, recomputed pi_old), the
group size each may share the prompt forward over, and the small metric reductions the loop
logs. Device code only: ids and floats in, floats out.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from r1jax import runtime, sharding
from r1jax.rl import losses
from r1jax.rl.logprobs import completion_logprobs
from r1jax.train_state import make_train_step, state_shardings


def make_update(graphdef, loss_cfg, optimizer, schedule, mesh, rules, state, grad_accum: int,
                group_size: int = 1):
  """Jitted `update(state, batch [R,...], rows [M]) -> (state, metrics)`; state donated.

  The minibatch is gathered on device from the step's full batch, so neither the
  host nor the compiler sees a new shape from one minibatch to the next. group_size > 1:
  every (micro)batch the loss sees is whole groups in order (see `shared_groups`).
  """
  loss_fn = losses.make_grpo_loss(graphdef, loss_cfg, group_size)
  prepare = lambda b: {**b, **losses.global_counts(b, loss_cfg)}
  step = make_train_step(loss_fn, optimizer, schedule, grad_accum_steps=grad_accum,
                         prepare_batch=prepare, group_size=group_size)
  state_sh = state_shardings(state, mesh)
  rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

  def update(state, batch, rows):
    mb = {k: jax.lax.with_sharding_constraint(
        jnp.take(v, rows, axis=0), sharding.batch_sharding(mesh, rules, (rows.shape[0],) + v.shape[1:]))
        for k, v in batch.items()}
    return step(state, mb)

  return jax.jit(update, out_shardings=(state_sh, rep), donate_argnums=(0,),
                 **runtime.train_jit_kwargs())


LOGPROB_KEYS = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask")
def make_logprob_fn(graphdef, loss_cfg, mesh, rules, group_size: int = 1):
  """Jitted completion log-probs of any params (reference model, or recomputed pi_old).

  Callers pass only `LOGPROB_KEYS` of the batch (`lp_batch`), so one program serves both
  uses. The batch is the step's, whole groups in order, so group_size may be G."""
  def fn(params, batch):
    lp, _ = completion_logprobs((graphdef, params), batch["prompt_ids"], batch["prompt_mask"],
                                batch["completion_ids"], batch["completion_mask"],
                                loss_cfg.temperature, loss_cfg.vocab_chunk, group_size)
    return jax.lax.stop_gradient(lp)
  return jax.jit(fn, **runtime.train_jit_kwargs())


def shared_groups(rl, grad_accum: int) -> tuple[int, int]:
  """(group size for the update's loss, for the reference / pi_old passes): G where the
  prompt forward can run once per group (`rl.share_prompt_forward`), else 1.

  The step's batch is always whole groups in order (row b*G + g; dynamic sampling keeps
  whole groups). The update's rows are too with one update per step (rows in order) and
  microbatches of whole groups; with several updates the rows are shuffled."""
  g = rl.group_size
  if not rl.share_prompt_forward or g < 2:
    return 1, 1
  whole = (rl.num_iterations * rl.num_minibatches == 1
           and (rl.rows // max(1, grad_accum)) % g == 0)
  return (g if whole else 1), g


def lp_batch(batch):
  return {k: batch[k] for k in LOGPROB_KEYS}


@jax.jit
def masked_mean(x, mask):
  return jnp.where(mask > 0, x, 0.0).sum() / jnp.maximum((mask > 0).sum(), 1)


@jax.jit
def seq_k1(old_lp, ref_lp, mask):
  """Per-row sum of log pi_old - log pi_ref over the completion (k1 of the sequence)."""
  return jnp.where(mask > 0, old_lp - ref_lp, 0.0).sum(axis=1)


@jax.jit
def logprob_gap(sampler_lp, trainer_lp, mask, lo_hi):
  """Sampler-trainer gap: max / mean |Δ log p| over valid tokens and the share of rows
  whose sequence ratio exp(mean_t (trainer - sampler)) lies outside [lo, hi]."""
  valid = mask > 0
  d = jnp.where(valid, trainer_lp - sampler_lp, 0.0)
  n = jnp.maximum(valid.sum(), 1)
  log_s = d.sum(axis=1) / jnp.maximum(valid.sum(axis=1), 1)
  s = jnp.exp(log_s)
  has = valid.any(axis=1)
  out = has & ((s < lo_hi[0]) | (s > lo_hi[1]))
  return {"pi_old/gap_max": jnp.abs(d).max(), "pi_old/gap_mean": jnp.abs(d).sum() / n,
          "pi_old/seq_ratio_out_of_clip": out.sum() / jnp.maximum(has.sum(), 1)}
