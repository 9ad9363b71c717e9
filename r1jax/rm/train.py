"""Stage `reward_model`: a Transformer with a scalar head trained on preference pairs (Bradley-Terry).

Data: JSONL rows `{prompt, chosen, rejected[, margin]}` (field names configurable). The loss per pair is
`-log sigmoid(r(prompt, chosen) - r(prompt, rejected) - margin)`; `margin` (InstructGPT / Llama 2 style) is the
row's margin field times `margin_scale`, 0 without one. The backbone is initialised from `init_from` (an r1jax
workdir or a Hugging Face directory, loaded by r1jax and sharded like the policy) or randomly from a preset; the
head starts at zero. Held-out pair accuracy (`eval_path`, else the last `eval_fraction` of the data) is measured at
`eval_every` and at the end, written to `metrics.jsonl` and `rm_eval.json`.

Workdir: `model_config.json`, `tokenizer/`, `checkpoints/` (TrainState with params {backbone, head}) and
`reward_model.json` (how texts are formed), which is what `r1jax.rm.scorer.RewardModelScorer` loads.
Resumable: the pair order is a pure function of (seed, step), so a restart continues from the last checkpoint.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from r1jax import experiment, paths, sharding
from r1jax.checkpoint import Checkpointer
from r1jax.data.rows import check_loader, read_rows
from r1jax.metrics import MetricsWriter
from r1jax.rm import model as rm_model
from r1jax.train_state import init_train_state, jit_train_step, make_optimizer, make_train_step, state_shardings

log = logging.getLogger(__name__)
RM_FILE, EVAL_FILE = 'reward_model.json', 'rm_eval.json'


@dataclasses.dataclass(frozen=True)
class RewardModelOptions:
  """Everything the stage needs besides the model (`init_from` / `model_preset`) and the mesh."""
  train_path: str = ''                # JSONL, Parquet or a local HF dataset (`loader`, r1jax/data/rows.py)
  eval_path: str = ''                 # '' : hold out the last `eval_fraction` of train_path
  loader: str = 'auto'                # auto | jsonl | parquet | hf
  train_split: str = 'train'          # loader 'hf': the split of a saved DatasetDict
  eval_split: str = 'test'
  eval_fraction: float = 0.1
  prompt_field: str = 'prompt'
  chosen_field: str = 'chosen'
  rejected_field: str = 'rejected'
  margin_field: str = ''              # '' : no margin
  margin_scale: float = 1.0
  template: str = ''                  # '' : the prompt text as is; else an r1jax template renders it
  max_len: int = 512
  batch_size: int = 32                # pairs per step (global)
  num_steps: int = 0                  # 0: num_epochs over the training pairs
  num_epochs: int = 1
  learning_rate: float = 1e-5
  warmup_steps: int = 10
  weight_decay: float = 0.0
  max_grad_norm: float = 1.0
  eval_every: int = 0                 # 0: at the end only
  checkpoint_every: int = 500
  log_every: int = 10
  seed: int = 0

  def __post_init__(self):
    if not self.train_path:
      raise ValueError('reward_model.train_path is empty (a JSONL of prompt/chosen/rejected rows)')
    check_loader(self.loader, 'reward_model.loader')
    if self.batch_size < 1 or self.max_len < 2:
      raise ValueError('batch_size must be >= 1 and max_len >= 2')
    if not 0.0 <= self.eval_fraction < 1.0:
      raise ValueError('eval_fraction must be in [0, 1)')


def load_pairs(path: str, opts: RewardModelOptions, split: str = 'train') -> list[dict]:
  """Rows as {prompt, chosen, rejected, margin}; rows missing a field or with chosen == rejected are dropped."""
  out = []
  for row in read_rows(path, opts.loader, split):
    p, c, r = row.get(opts.prompt_field), row.get(opts.chosen_field), row.get(opts.rejected_field)
    if not all(isinstance(x, str) for x in (p, c, r)) or c == r:
      continue
    margin = float(row.get(opts.margin_field) or 0.0) * opts.margin_scale if opts.margin_field else 0.0
    out.append({'prompt': p, 'chosen': c, 'rejected': r, 'margin': margin})
  if not out:
    raise ValueError(f'{path}: no usable preference pairs (fields {opts.prompt_field!r}, {opts.chosen_field!r}, '
                     f'{opts.rejected_field!r})')
  return out


def split_pairs(opts: RewardModelOptions) -> tuple[list[dict], list[dict]]:
  train = load_pairs(opts.train_path, opts, opts.train_split)
  if opts.eval_path:
    return train, load_pairs(opts.eval_path, opts, opts.eval_split)
  n_eval = int(round(len(train) * opts.eval_fraction))
  return (train[:len(train) - n_eval], train[len(train) - n_eval:]) if n_eval else (train, [])


def _batch_indices(n: int, batch_size: int, step: int, seed: int) -> list[int]:
  """Pairs of global step `step`: epoch e is a permutation seeded by (seed, e); wraps across epochs."""
  out = []
  pos = step * batch_size
  while len(out) < batch_size:
    epoch, offset = divmod(pos, n)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    take = min(batch_size - len(out), n - offset)
    out += perm[offset:offset + take].tolist()
    pos += take
  return out


def make_score_fn(graphdef, mesh, rules):
  """Jitted `score(params, ids_BT, mask_BT) -> float32 [B]`: the batch is sharded over the mesh, the B scores come
  back replicated (every process can read them, also in multi-host runs)."""
  del rules
  return jax.jit(lambda params, ids, mask: rm_model.scores(graphdef, params, ids, mask),
                 out_shardings=sharding.replicated(mesh))


def _process_rows(x: np.ndarray) -> np.ndarray:
  """This process's rows of a global host batch (rows [i*b, (i+1)*b) for process i, as `put_global_batch` wants)."""
  pc, pi = jax.process_count(), jax.process_index()
  if pc == 1:
    return x
  b = x.shape[0] // pc
  return x[pi * b:(pi + 1) * b]


def pair_accuracy(score_fn, params, pairs: list[dict], tokenizer, opts: RewardModelOptions, mesh, rules,
                  batch_size: Optional[int] = None) -> dict[str, float]:
  """Held-out pair accuracy (r_chosen > r_rejected) and mean margin, scored in fixed-shape batches on the mesh."""
  if not pairs:
    return {}
  bs = batch_size or opts.batch_size
  correct, margins = [], []
  for i in range(0, len(pairs), bs):
    chunk = pairs[i:i + bs]
    b = rm_model.pair_batch(chunk, tokenizer, opts.max_len, bs, opts.template or None)
    ids = np.concatenate([b['chosen_ids'], b['rejected_ids']])
    mask = np.concatenate([b['chosen_mask'], b['rejected_mask']])
    local = (_process_rows(ids), _process_rows(mask))   # every process built the whole (small) eval batch
    r = np.asarray(jax.device_get(score_fn(params, *sharding.put_global_batch(local, mesh, rules))))
    diff = (r[:bs] - r[bs:])[:len(chunk)]
    correct += (diff > 0).tolist()
    margins += diff.tolist()
  return {'eval_pair_accuracy': float(np.mean(correct)), 'eval_reward_margin': float(np.mean(margins)),
          'eval_pairs': float(len(pairs))}


def train(config, workdir: str | os.PathLike, opts: RewardModelOptions,
          on_step: Optional[Callable[[int, dict], None]] = None) -> dict[str, Any]:
  """Trains (or resumes) a reward model into `workdir`. `config` supplies the model (`init_from`, `model`), the
  tokenizer, the mesh and sharding rules, as for every stage. Returns the final metrics (+ `params`, `graphdef`).

  Multi-host: every process runs this with the same options; the pair order is a function of (seed, step), so each
  process tokenises only its own rows of every global batch (`batch_size` must be a multiple of the process count)
  and `put_global_batch` assembles them; process 0 writes the files, orbax checkpoints from all processes."""
  pc, pi = jax.process_count(), jax.process_index()
  if opts.batch_size % pc:
    raise ValueError(f'reward_model.batch_size={opts.batch_size} must be a multiple of the process count {pc}')
  local_bs = opts.batch_size // pc
  workdir = paths.as_str(workdir)
  paths.makedirs(workdir)
  train_pairs, eval_pairs = split_pairs(opts)
  mesh, rules = experiment.mesh_and_rules(config)
  corpus = lambda: [p['prompt'] + p[k] for p in train_pairs for k in ('chosen', 'rejected')]
  tokenizer = experiment.get_tokenizer(config, workdir, corpus=corpus)
  model_cfg, graphdef, backbone = experiment.init_model(config, mesh, rules, tokenizer, workdir)
  params = {'backbone': backbone, 'head': rm_model.init_head(model_cfg.embed_dim, mesh)}
  del backbone
  num_steps = opts.num_steps or -(-len(train_pairs) * opts.num_epochs // opts.batch_size)
  optimizer, schedule = make_optimizer(dict(learning_rate=opts.learning_rate, warmup_steps=opts.warmup_steps,
                                            weight_decay=opts.weight_decay, max_grad_norm=opts.max_grad_norm,
                                            schedule='cosine'), num_steps)
  state = init_train_state(params, optimizer, opts.seed)
  del params
  if jax.process_index() == 0:
    (epath.Path(workdir) / RM_FILE).write_text(json.dumps(
        {'template': opts.template, 'max_len': opts.max_len, 'embed_dim': model_cfg.embed_dim,
         'options': dataclasses.asdict(opts)}, indent=1))

  ckpt = Checkpointer(paths.join(workdir, 'checkpoints'), max_to_keep=2)
  restored = ckpt.restore_latest(state)
  if restored is not None:
    step0, state, _, _ = restored
    log.info('Resumed reward_model from step %d', step0)
  prepare = lambda b: {**b, 'num_pairs': jnp.sum(b['valid'])}
  step_fn = make_train_step(rm_model.make_loss_fn(graphdef), optimizer, schedule, prepare_batch=prepare)
  keys = ('chosen_ids', 'chosen_mask', 'rejected_ids', 'rejected_mask', 'margin', 'valid')
  batch_sh = {k: sharding.batch_sharding(mesh, rules, (opts.batch_size, opts.max_len) if 'ids' in k or 'mask' in k
                                         else (opts.batch_size,)) for k in keys}
  jitted = jit_train_step(step_fn, state_shardings(state, mesh), batch_sh, mesh)
  score_fn = make_score_fn(graphdef, mesh, rules)

  writer = MetricsWriter(workdir)
  guard = experiment.PreemptionGuard()
  start = int(jax.device_get(state.step))
  last: dict[str, float] = {}
  pending = []
  try:
    for step in range(start, num_steps):
      idx = _batch_indices(len(train_pairs), opts.batch_size, step, opts.seed)[pi * local_bs:(pi + 1) * local_bs]
      batch = rm_model.pair_batch([train_pairs[i] for i in idx], tokenizer, opts.max_len, local_bs,
                                  opts.template or None)
      state, metrics = jitted(state, sharding.put_global_batch(batch, mesh, rules))
      pending.append(metrics)
      done = step + 1
      if done % opts.log_every == 0 or done == num_steps:
        m = {k: float(np.mean([float(x[k]) for x in jax.device_get(pending)])) for k in pending[0]}
        pending = []
        if eval_pairs and ((opts.eval_every and done % opts.eval_every == 0) or done == num_steps):
          m.update(pair_accuracy(score_fn, state.params, eval_pairs, tokenizer, opts, mesh, rules))
        last = writer.write(done, m)
      if on_step is not None:
        on_step(done, last)
      if guard.end_of_step(done, num_steps, opts.checkpoint_every, lambda: ckpt.save(
          done, state, {'step': done}, {'stage': 'reward_model', 'options': dataclasses.asdict(opts)})):
        break
  finally:
    ckpt.close()
    writer.close()
    guard.restore()
  result = {k: v for k, v in last.items()}
  if eval_pairs and 'eval_pair_accuracy' not in result:
    result.update(pair_accuracy(score_fn, state.params, eval_pairs, tokenizer, opts, mesh, rules))
  if jax.process_index() == 0:
    (epath.Path(workdir) / EVAL_FILE).write_text(json.dumps(
        {'step': int(jax.device_get(state.step)), **{k: result[k] for k in result if k.startswith('eval_')},
         'train_pairs': len(train_pairs)}, indent=1))
  return {'step': int(jax.device_get(state.step)), **result, 'params': state.params, 'graphdef': graphdef,
          'tokenizer': tokenizer}


@paths.resolves_paths
def run(config, workdir: str | os.PathLike) -> dict[str, Any]:
  """Stage entry point: `config.reward_model` holds `RewardModelOptions` fields."""
  section = dict(experiment.to_dict(config.get('reward_model', None) if hasattr(config, 'get') else None) or {})
  fields = {f.name for f in dataclasses.fields(RewardModelOptions)}
  unknown = set(section) - fields
  if unknown:
    raise KeyError(f'unknown config.reward_model keys {sorted(unknown)}; known: {sorted(fields)}')
  out = train(config, workdir, RewardModelOptions(**section))
  return {k: v for k, v in out.items() if k not in ('params', 'graphdef', 'tokenizer')}
