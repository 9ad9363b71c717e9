"""Fixtures for the r1jax.evals tests: a tiny SentencePiece tokenizer, procedural records, and a
factory of scripted samplers (see evals_testlib.py)."""
import dataclasses

import pytest

from evals_testlib import ScriptedSampler
from r1jax.data import procedural
from r1jax.models import get_model_config
from r1jax.models.factory import create_model, split_params
from r1jax.rollout import SamplerConfig
from r1jax.sharding import ShardingRules, make_mesh
from r1jax.tokenizer import load_tokenizer, train_sentencepiece


@pytest.fixture(scope='session')
def tok(tmp_path_factory):
  corpus = [r['text'] for r in procedural.make_sft_corpus('countdown', 300, template='r1_zero')]
  corpus += ['这是中文的推理过程 и русский текст', 'The answer is 0.5 or 1/2 or \\frac{1}{2}.']
  path = train_sentencepiece(corpus, tmp_path_factory.mktemp('tok') / 'tok', vocab_size=400)
  return load_tokenizer(path)


@pytest.fixture(scope='session')
def countdown_records():
  return procedural.countdown_dataset('test', 10, seed=0)


@pytest.fixture
def scripted(tok):
  return lambda responder, **cfg: ScriptedSampler(
      tok, responder, dataclasses.replace(
          SamplerConfig(max_new_tokens=64, eos_ids=tok.eos_ids, pad_id=tok.pad_id), **cfg))


@pytest.fixture(scope='session')
def tiny_policy(tok):
  """A random 1-layer tiny model on the 8-device mesh: (cfg, graphdef, params, mesh, rules)."""
  mesh, rules = make_mesh((8, 1, 1)), ShardingRules()
  cfg = get_model_config('tiny', num_layers=1, vocab_size=tok.vocab_size)
  graphdef, params = split_params(create_model(cfg, 0, mesh, rules))
  return cfg, graphdef, params, mesh, rules
