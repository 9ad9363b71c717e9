"""A synthetic preference task: the chosen response contains the word 'kind', the rejected one 'rude', at a random
position among the same filler words (so the model must look at the whole response, not the last token)."""
import json

import numpy as np

from r1jax import config as config_lib

FILLERS = ('the', 'cat', 'dog', 'sun', 'tree', 'blue', 'red', 'runs', 'sits', 'big', 'small', 'sky')


def make_pairs(n: int, seed: int) -> list[dict]:
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    words = list(rng.choice(FILLERS, size=int(rng.integers(3, 7))))
    pos = int(rng.integers(0, len(words) + 1))
    good, bad = words[:pos] + ['kind'] + words[pos:], words[:pos] + ['rude'] + words[pos:]
    out.append({'prompt': f'Say something about the {rng.choice(FILLERS)}.\n', 'chosen': ' '.join(good),
                'rejected': ' '.join(bad), 'gap': 1.0})
  return out


def write_pairs(path, n: int, seed: int) -> str:
  with open(path, 'w') as f:
    for p in make_pairs(n, seed):
      f.write(json.dumps(p) + '\n')
  return str(path)


def rm_config():
  c = config_lib.base_config()
  c.stage = 'reward_model'
  c.model.preset = 'tiny'
  c.model.overrides.update(dict(num_layers=2, embed_dim=64, mlp_dim=128, num_heads=4, num_kv_heads=2))
  c.tokenizer.vocab_size = 320
  c.mesh.shape = (8, 1, 1)
  return c


def multihost_setup(data_dir):
  """(config, RewardModelOptions) of the multi-host test: the same in the 2-process run and its 1-process reference.
  `data_dir` holds train.jsonl, eval.jsonl and a SentencePiece tokenizer (tokenizer.model), written by the test."""
  import os
  from r1jax.rm import train as rm_train
  c = rm_config()
  c.tokenizer.path = os.path.join(data_dir, 'tokenizer.model')
  c.model.overrides.update(dict(num_layers=1, embed_dim=32, mlp_dim=64, num_heads=2, num_kv_heads=1, head_dim=16))
  opts = rm_train.RewardModelOptions(
      train_path=os.path.join(data_dir, 'train.jsonl'), eval_path=os.path.join(data_dir, 'eval.jsonl'),
      max_len=32, batch_size=8, num_steps=4, learning_rate=3e-3, warmup_steps=1, log_every=2, eval_every=4,
      checkpoint_every=4)
  return c, opts
