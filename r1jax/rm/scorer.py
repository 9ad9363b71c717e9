"""A trained reward model as an all-scenario RL scorer: batched, jitted scoring on the mesh.

  scorer = RewardModelScorer('/runs/rm')                       # a `reward_model` stage workdir
  scorer(prompts, responses) -> list[float]                    # the `r1jax.rewards.general` scorer interface

In a config (the scorer is built once per process, on the trainer's devices, next to the policy):
  c.rewards.kwargs.helpfulness = {'scorer': 'r1jax.rm.scorer:RewardModelScorer',
                                  'scorer_init': {'path': '/runs/rm_helpful'}}
One call scores the whole batch: texts are tokenised on the host, padded to a fixed [rows, T] shape (rows a
multiple of `batch_size`, T the smallest power-of-two bucket that fits, up to the model's `max_len`), and scored by
one jitted function per bucket with the batch sharded over the mesh. `output='sigmoid'` (default) maps the
Bradley-Terry score to (0, 1), the scale of the rule-based rewards; `'raw'` returns it as is.
"""
from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import jax
import numpy as np
from etils import epath

from r1jax import experiment, sharding
from r1jax.checkpoint import restore_params
from r1jax.models.factory import abstract_model, param_shardings, split_params
from r1jax.rm import model as rm_model
from r1jax.rm.train import RM_FILE
from r1jax.tokenizer import load_tokenizer


def load_reward_model(path: str | os.PathLike, mesh_shape: Sequence[int] = (-1, 1, 1), sharding_rules=None):
  """(graphdef, params {backbone, head}, tokenizer, info, mesh, rules) of a `reward_model` workdir."""
  path = epath.Path(path)
  if not (path / RM_FILE).exists():
    raise ValueError(f'{path} is not a reward_model workdir (no {RM_FILE})')
  info = json.loads((path / RM_FILE).read_text())
  mesh = sharding.make_mesh(tuple(mesh_shape))
  rules = sharding.ShardingRules.from_dict(dict(sharding_rules or {}))
  model_cfg = experiment.load_model_config(path)
  abstract = abstract_model(model_cfg, mesh, rules)
  graphdef, abs_params = split_params(abstract)
  shard = param_shardings(abstract, mesh, rules)
  rep = sharding.replicated(mesh)
  target = {'backbone': jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abs_params,
                                     shard),
            'head': {'w': jax.ShapeDtypeStruct((model_cfg.embed_dim,), np.float32, sharding=rep),
                     'b': jax.ShapeDtypeStruct((), np.float32, sharding=rep)}}
  params, _ = restore_params(path, target)
  tokenizer = load_tokenizer(experiment.tokenizer_dir(path))
  return graphdef, params, tokenizer, info, mesh, rules


class RewardModelScorer:
  """`scorer(prompts, responses) -> list[float]` backed by a reward model on the mesh."""

  def __init__(self, path: str, batch_size: int = 32, max_len: Optional[int] = None, output: str = 'sigmoid',
               mesh_shape: Sequence[int] = (-1, 1, 1), template: Optional[str] = None):
    if output not in ('sigmoid', 'raw'):
      raise ValueError(f"output must be 'sigmoid' or 'raw', got {output!r}")
    self.graphdef, self.params, self.tokenizer, info, self.mesh, self.rules = load_reward_model(path, mesh_shape)
    self.template = info.get('template') or None if template is None else template
    self.max_len = int(max_len or info.get('max_len', 512))
    self.batch_size = int(batch_size)
    self.output = output
    self._score = jax.jit(lambda params, ids, mask: rm_model.scores(self.graphdef, params, ids, mask))

  def bucket(self, n_tokens: int) -> int:
    t = 32
    while t < n_tokens and t < self.max_len:
      t *= 2
    return min(t, self.max_len)

  def score_texts(self, texts: Sequence[str]) -> np.ndarray:
    """Raw scores float32 [N] of full texts (prompt and response already joined)."""
    n = len(texts)
    if n == 0:
      return np.zeros((0,), np.float32)
    longest = max(len(self.tokenizer.encode(t, add_bos=self.tokenizer.bos_id is not None)) for t in texts)
    t = self.bucket(longest)
    rows = -(-n // self.batch_size) * self.batch_size
    ids, mask = rm_model.encode_texts(list(texts) + [''] * (rows - n), self.tokenizer, t)
    out = []
    for i in range(0, rows, self.batch_size):
      ids_b, mask_b = sharding.put_global_batch((ids[i:i + self.batch_size], mask[i:i + self.batch_size]),
                                                self.mesh, self.rules)
      out.append(np.asarray(jax.device_get(self._score(self.params, ids_b, mask_b))))
    return np.concatenate(out)[:n].astype(np.float32)

  def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    texts = [rm_model.pair_text(p or '', r or '', self.template) for p, r in zip(prompts, responses)]
    raw = self.score_texts(texts)
    values = 1.0 / (1.0 + np.exp(-raw)) if self.output == 'sigmoid' else raw
    return [float(v) for v in values]
