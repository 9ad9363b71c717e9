"""TrainState, the optimiser from config, and the pure jitted train step.

`step(state, batch) -> (state, metrics)` is the only thing that changes
parameters in r1jax: SFT, pre-training, distillation and GRPO all build one with
their own loss. It is jitted once with explicit in/out shardings and the state
donated, so parameters and optimiser moments are updated in place.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from r1jax import runtime

Params = Any
Batch = Mapping[str, jax.Array]
LossFn = Callable[[Params, Batch], tuple[jax.Array, dict]]


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["step", "params", "opt_state", "rng"], meta_fields=[])
@dataclasses.dataclass
class TrainState:
  """step: int32 []; params: nested dict; opt_state: optax state; rng: uint32 key data [2]."""
  step: jax.Array
  params: Params
  opt_state: Any
  rng: jax.Array

  @property
  def key(self) -> jax.Array:
    return jax.random.wrap_key_data(self.rng)


def make_schedule(optim: Mapping[str, Any], total_steps: int) -> optax.Schedule:
  """Linear warmup then cosine / linear / constant. Learning rate per optimiser step."""
  lr = float(optim["learning_rate"])
  warmup = int(optim.get("warmup_steps", 0))
  kind = optim.get("schedule", "cosine")
  end = lr * float(optim.get("end_lr_factor", 0.1))
  decay_steps = max(int(total_steps) - warmup, 1)
  if kind == "constant":
    main = optax.constant_schedule(lr)
  elif kind == "cosine":
    main = optax.cosine_decay_schedule(lr, decay_steps, alpha=end / lr if lr else 0.0)
  elif kind == "linear":
    main = optax.linear_schedule(lr, end, decay_steps)
  else:
    raise ValueError(f"Unknown learning-rate schedule {kind!r}: use constant, cosine or linear")
  if warmup <= 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def _decay_mask(params):
  # No weight decay on norms and biases (vectors), as in most LLM recipes.
  return jax.tree.map(lambda x: x.ndim >= 2, params)


def make_optimizer(optim: Mapping[str, Any], total_steps: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """AdamW + global-norm clipping + schedule, from an `optim` config dict."""
  schedule = make_schedule(optim, total_steps)
  name = optim.get("name", "adamw")
  if name != "adamw":
    raise ValueError(f"Unknown optimizer {name!r} (supported: adamw)")
  parts = []
  if optim.get("max_grad_norm"):
    parts.append(optax.clip_by_global_norm(float(optim["max_grad_norm"])))
  parts.append(optax.adamw(schedule, b1=float(optim.get("b1", 0.9)), b2=float(optim.get("b2", 0.999)),
                           eps=float(optim.get("eps", 1e-8)),
                           weight_decay=float(optim.get("weight_decay", 0.0)), mask=_decay_mask))
  return optax.chain(*parts), schedule


def init_train_state(params: Params, optimizer: optax.GradientTransformation,
                     rng: jax.Array | int) -> TrainState:
  """A state whose optimiser moments are sharded exactly like their parameters.

  (A plain `jax.jit(optimizer.init)` would leave the zeros uncommitted on one
  device; `optax.tree_map_params` pairs each moment with its parameter instead.)
  """
  if isinstance(rng, int):
    rng = jax.random.key(rng)
  param_sh = jax.tree.map(lambda x: x.sharding, params)
  mesh = next((s.mesh for s in jax.tree.leaves(param_sh) if isinstance(s, NamedSharding)), None)
  if mesh is None:
    opt_state = jax.jit(optimizer.init)(params)
    rng_data, step = jax.random.key_data(rng), jnp.zeros((), jnp.int32)
  else:
    rep = NamedSharding(mesh, P())
    abstract = jax.eval_shape(optimizer.init, params)
    opt_sh = optax.tree_map_params(optimizer, lambda _, s: s, abstract, param_sh,
                                   transform_non_params=lambda _: rep)
    opt_state = jax.jit(optimizer.init, out_shardings=opt_sh)(params)
    rng_data = jax.device_put(jax.random.key_data(rng), rep)
    step = jax.device_put(jnp.zeros((), jnp.int32), rep)
  return TrainState(step=step, params=params, opt_state=opt_state, rng=rng_data)


def state_shardings(state: TrainState, mesh: Mesh) -> TrainState:
  """Shardings of a concrete state; scalars and keys replicated."""
  rep = NamedSharding(mesh, P())

  def get(x):
    s = getattr(x, "sharding", None)
    return s if isinstance(s, NamedSharding) else rep
  return jax.tree.map(get, state)


def _split_microbatches(batch: Batch, n: int, group_size: int = 1) -> Batch:
  """[R, ...] -> [n, R / n, ...]: microbatch i holds the groups (`group_size` consecutive rows)
  i, i + n, i + 2n, ... in order, so groups stay whole.

  Interleaved, not contiguous, because a batch sharded over data-parallel devices is split into
  contiguous blocks: with contiguous microbatches each one lives on one device, and XLA
  all-gathers the whole batch and computes every microbatch on every device (twice the FLOPs on
  two devices; tests/test_train_state.py). Interleaved, each device computes its own rows of
  every microbatch, as without accumulation."""
  def split(x):
    if x.ndim == 0:
      return jnp.broadcast_to(x, (n,))
    if x.shape[0] % (n * group_size):
      raise ValueError(f"Batch dim {x.shape[0]} not divisible by grad_accum_steps={n} x "
                       f"group_size={group_size}")
    per = x.shape[0] // (n * group_size)          # groups per microbatch
    y = x.reshape((per, n, group_size) + x.shape[1:])
    return jnp.swapaxes(y, 0, 1).reshape((n, per * group_size) + x.shape[1:])
  return jax.tree.map(split, batch)


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule | None = None, grad_accum_steps: int = 1,
                    prepare_batch: Callable[[Batch], Batch] | None = None,
                    skip_nonfinite: bool = True, group_size: int = 1
                    ) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
  """Builds the pure `step(state, batch) -> (state, metrics)`.

  `loss_fn(params, microbatch)` must already normalise by *global* batch
  quantities (e.g. the token count of the whole batch, which `prepare_batch`
  can compute), so the loss and gradient summed over `grad_accum_steps`
  microbatches equal those of the full batch. Microbatches are whole groups of
  `group_size` consecutive rows, interleaved (`_split_microbatches`).

  A non-finite loss or gradient norm skips the update (params, optimiser state
  unchanged), and `metrics["skipped"]` is 1.
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def step(state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
    if prepare_batch is not None:
      batch = prepare_batch(batch)
    if grad_accum_steps == 1:
      (loss, aux), grads = grad_fn(state.params, batch)
    else:
      micro = _split_microbatches(batch, grad_accum_steps, group_size)

      def body(carry, mb):
        (l, a), g = grad_fn(state.params, mb)
        acc_l, acc_g = carry
        return (acc_l + l, jax.tree.map(jnp.add, acc_g, g)), a

      zeros = jax.tree.map(jnp.zeros_like, state.params)
      (loss, grads), auxs = jax.lax.scan(body, (jnp.zeros((), jnp.float32), zeros), micro)
      aux = jax.tree.map(lambda x: jnp.mean(x, axis=0), auxs)
    grad_norm = optax.global_norm(grads)
    updates, new_opt = optimizer.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    if skip_nonfinite:
      keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
      new_params = keep(new_params, state.params)
      new_opt = keep(new_opt, state.opt_state)
    new_state = TrainState(step=state.step + 1, params=new_params, opt_state=new_opt,
                           rng=state.rng)
    metrics = {"loss": loss, "grad_norm": grad_norm, "skipped": 1 - ok.astype(jnp.int32),
               **{k: v for k, v in aux.items()}}
    if schedule is not None:
      metrics["learning_rate"] = schedule(state.step)
    return new_state, metrics

  return step


def jit_train_step(step_fn, state_sharding: TrainState, batch_sharding: Any, mesh: Mesh):
  """Jits once with explicit shardings; the state is donated (updated in place)."""
  rep = NamedSharding(mesh, P())
  return jax.jit(step_fn, in_shardings=(state_sharding, batch_sharding),
                 out_shardings=(state_sharding, rep), donate_argnums=(0,),
                 **runtime.train_jit_kwargs())


def next_token_loss(logits_BTV: jax.Array, targets_BT: jax.Array, weights_BT: jax.Array,
                    denominator: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Sum of weighted cross-entropies / denominator, and per-token accuracy sum."""
  logp = jax.nn.log_softmax(logits_BTV.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, targets_BT[..., None], axis=-1)[..., 0]
  w = weights_BT.astype(jnp.float32)
  loss = jnp.sum(nll * w) / jnp.maximum(denominator, 1.0)
  correct = jnp.sum((jnp.argmax(logits_BTV, -1) == targets_BT) * w)
  return loss, correct
