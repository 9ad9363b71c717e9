"""A reward model: the policy's Transformer with a scalar head, scored at the last real token.

Params are `{'backbone': <Transformer params>, 'head': {'w': [D], 'b': []}}`. The backbone keeps its logical axis
names, so it is sharded exactly like the policy (same mesh, same rules); the head is D + 1 floats, replicated. The
backbone's unembedding is not used (it stays in the tree so that any r1jax / Hugging Face checkpoint loads as is).

Text of a pair: `pair_text(prompt, response, template)`, the prompt rendered with `template` (or as is) followed by
the response; training and scoring use the same function, so a scorer sees what the model was trained on.
Sequences are right padded: ids int32 [B, T], mask int32 [B, T]; the score is read at position `sum(mask) - 1`.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from r1jax.data.templates import get_template
from r1jax.models.factory import merge_params
from r1jax.tokenizer import Tokenizer, truncate

Params = dict[str, Any]


def init_head(embed_dim: int, mesh=None) -> Params:
  """Zero head: every response starts at score 0 (the Bradley-Terry loss is log 2)."""
  head = {'w': jnp.zeros((embed_dim,), jnp.float32), 'b': jnp.zeros((), jnp.float32)}
  if mesh is not None:
    from r1jax.sharding import replicated  # pylint: disable=import-outside-toplevel
    head = jax.device_put(head, replicated(mesh))
  return head


def scores(graphdef, params: Params, ids_BT: jax.Array, mask_BT: jax.Array) -> jax.Array:
  """Scalar reward per row, float32 [B]: the head applied to the final hidden state of the last real token."""
  model = merge_params(graphdef, params['backbone'])
  h_BTD, _ = model(ids_BT, None, mask_BT, return_hidden=True)
  last_B = jnp.maximum(jnp.sum(mask_BT, axis=1) - 1, 0)
  h_BD = jnp.take_along_axis(h_BTD, last_B[:, None, None], axis=1)[:, 0].astype(jnp.float32)
  # The bias gets no signal from the Bradley-Terry loss (it cancels in r_chosen - r_rejected), so its gradient is
  # float noise around 0, which Adam would turn into steps of ~learning_rate (a random drift, different on every
  # device layout). It is held at its initial 0; a checkpoint's value is still applied.
  return h_BD @ params['head']['w'] + jax.lax.stop_gradient(params['head']['b'])


def bradley_terry_loss(chosen_B: jax.Array, rejected_B: jax.Array, margin_B: jax.Array, valid_B: jax.Array,
                       denominator: jax.Array) -> tuple[jax.Array, dict]:
  """-log sigmoid(r_chosen - r_rejected - margin), summed over valid pairs / denominator (the global pair count)."""
  diff_B = chosen_B - rejected_B
  nll_B = -jax.nn.log_sigmoid(diff_B - margin_B)
  loss = jnp.sum(nll_B * valid_B) / jnp.maximum(denominator, 1.0)
  n = jnp.maximum(jnp.sum(valid_B), 1.0)
  return loss, {'pair_accuracy': jnp.sum((diff_B > 0) * valid_B) / n,
                'reward_margin': jnp.sum(diff_B * valid_B) / n,
                'reward_chosen': jnp.sum(chosen_B * valid_B) / n}


def make_loss_fn(graphdef):
  """loss_fn(params, batch) for `make_train_step`: one forward over chosen and rejected rows together."""

  def loss_fn(params, batch):
    b = batch['chosen_ids'].shape[0]
    ids = jnp.concatenate([batch['chosen_ids'], batch['rejected_ids']], axis=0)
    mask = jnp.concatenate([batch['chosen_mask'], batch['rejected_mask']], axis=0)
    r = scores(graphdef, params, ids, mask)
    return bradley_terry_loss(r[:b], r[b:], batch['margin'], batch['valid'], batch['num_pairs'])

  return loss_fn


def pair_text(prompt: str, response: str, template: Optional[str] = None) -> str:
  """The text the reward model reads: the rendered (or raw) prompt, then the response."""
  if template:
    return get_template(template).render_prompt(prompt) + response
  return prompt + response


def encode_texts(texts: Sequence[str], tokenizer: Tokenizer, max_len: int, add_bos: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Right-padded ids int32 [N, max_len] and mask int32 [N, max_len]; long texts keep their *end* (the response
  the score is about)."""
  ids = np.full((len(texts), max_len), tokenizer.pad_id, np.int32)
  mask = np.zeros((len(texts), max_len), np.int32)
  bos = add_bos and tokenizer.bos_id is not None
  for i, t in enumerate(texts):
    toks = tokenizer.encode(t if isinstance(t, str) else '', add_bos=bos) or [tokenizer.pad_id]
    toks, _ = truncate(toks, max_len, 'left', keep_first=int(bos), what='reward-model text')
    ids[i, :len(toks)] = toks
    mask[i, :len(toks)] = 1
  return ids, mask


def pair_batch(pairs: Sequence[dict], tokenizer: Tokenizer, max_len: int, batch_size: int,
               template: Optional[str] = None) -> dict[str, np.ndarray]:
  """A host batch of B pairs ({prompt, chosen, rejected, margin?}); short batches are padded with masked pairs."""
  pairs = list(pairs)
  valid = np.zeros((batch_size,), np.float32)
  valid[:len(pairs)] = 1.0
  pairs = pairs + [pairs[0]] * (batch_size - len(pairs))
  c_ids, c_mask = encode_texts([pair_text(p['prompt'], p['chosen'], template) for p in pairs], tokenizer, max_len)
  r_ids, r_mask = encode_texts([pair_text(p['prompt'], p['rejected'], template) for p in pairs], tokenizer,
                               max_len)
  margin = np.asarray([float(p.get('margin') or 0.0) for p in pairs], np.float32)
  return {'chosen_ids': c_ids, 'chosen_mask': c_mask, 'rejected_ids': r_ids, 'rejected_mask': r_mask,
          'margin': margin, 'valid': valid}
