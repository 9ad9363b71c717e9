"""Reward model: Bradley-Terry loss, training on a synthetic preference task (> 90% held-out accuracy), scoring."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rm_testlib import make_pairs, rm_config, write_pairs
from r1jax.rm import model as rm_model
from r1jax.rm import train as rm_train
from r1jax.rm.scorer import RewardModelScorer


def test_bradley_terry_loss_and_margin():
  c, r = jnp.array([2.0, 0.0, 1.0]), jnp.array([0.0, 1.0, 1.0])
  valid = jnp.array([1.0, 1.0, 0.0])
  loss, m = rm_model.bradley_terry_loss(c, r, jnp.zeros(3), valid, jnp.float32(2))
  expect = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(1.0))) / 2
  assert float(loss) == pytest.approx(expect, rel=1e-5)
  assert float(m['pair_accuracy']) == 0.5           # the masked third pair does not count
  loss_m, _ = rm_model.bradley_terry_loss(c, r, jnp.full(3, 1.0), valid, jnp.float32(2))
  assert float(loss_m) > float(loss)                # a margin asks for a larger gap


def test_options_are_checked():
  with pytest.raises(ValueError, match='train_path'):
    rm_train.RewardModelOptions()
  with pytest.raises(KeyError, match='unknown'):
    rm_train.run({'reward_model': {'train_path': 'x', 'lr': 1}}, '/tmp/none')


@pytest.fixture(scope='module')
def trained_rm(tmp_path_factory):
  d = tmp_path_factory.mktemp('rm')
  opts = rm_train.RewardModelOptions(
      train_path=write_pairs(d / 'train.jsonl', 480, 0), eval_path=write_pairs(d / 'eval.jsonl', 96, 1),
      margin_field='gap', margin_scale=0.5, max_len=32, batch_size=16, num_steps=150, learning_rate=3e-3,
      warmup_steps=10, log_every=50, eval_every=150, checkpoint_every=150)
  out = rm_train.train(rm_config(), d / 'work', opts)
  return d / 'work', out


def test_reward_model_learns_the_synthetic_preference(trained_rm):
  workdir, out = trained_rm
  assert out['step'] == 150
  assert out['eval_pair_accuracy'] > 0.9
  saved = json.loads((workdir / rm_train.EVAL_FILE).read_text())
  assert saved['eval_pair_accuracy'] == out['eval_pair_accuracy'] and saved['eval_pairs'] == 96
  metrics = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert metrics[-1]['loss'] < metrics[0]['loss']


def test_scorer_scores_on_the_mesh_in_batches(trained_rm):
  workdir, _ = trained_rm
  scorer = RewardModelScorer(str(workdir), batch_size=8)
  pairs = make_pairs(40, seed=7)
  good = scorer([p['prompt'] for p in pairs], [p['chosen'] for p in pairs])
  bad = scorer([p['prompt'] for p in pairs], [p['rejected'] for p in pairs])
  assert len(good) == 40 and all(0.0 < x < 1.0 for x in good + bad)
  assert np.mean(np.array(good) > np.array(bad)) > 0.9
  # batch composition does not change a row's score (fixed shapes, masked padding)
  one = scorer([pairs[0]['prompt']], [pairs[0]['chosen']])
  assert one[0] == pytest.approx(good[0], abs=1e-5)
  assert scorer([], []) == []


def test_stage_runs_from_the_config_file(tmp_path):
  import importlib.util
  from r1jax import run as run_lib
  spec = importlib.util.spec_from_file_location('rmcfg', 'configs/reward_model.py')
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  c = mod.get_config(f"tiny,train={write_pairs(tmp_path / 'p.jsonl', 40, 0)}")
  c.model.overrides.update(dict(num_layers=1, embed_dim=32, mlp_dim=64, num_heads=2, num_kv_heads=1))
  c.mesh.shape = (8, 1, 1)
  c.reward_model.update(num_steps=2, batch_size=8, max_len=32)
  out = run_lib.run(c, tmp_path / 'w')
  assert out['step'] == 2 and 0.0 <= out['eval_pair_accuracy'] <= 1.0
  assert json.loads((tmp_path / 'w' / rm_train.EVAL_FILE).read_text())['train_pairs'] == 36


# ---- initialised from a Hugging Face checkpoint ----
@pytest.fixture(scope='module')
def hf_checkpoint(tmp_path_factory):
  """A tiny random Qwen2-style Hugging Face directory (config.json, safetensors, a byte-level BPE tokenizer)."""
  import dataclasses
  from hf_tokenizers import write_hf_tokenizer
  from r1jax.models.config import PRESETS
  from r1jax.models.factory import create_model
  from r1jax.models.hf import save_pretrained
  from r1jax.tokenizer import load_tokenizer
  d = tmp_path_factory.mktemp('hf_rm') / 'qwen_tiny'
  corpus = [p['prompt'] + p[k] for p in make_pairs(200, 5) for k in ('chosen', 'rejected')]
  tok = load_tokenizer(write_hf_tokenizer(d, 'qwen', corpus))
  cfg = dataclasses.replace(PRESETS['tiny'], vocab_size=tok.vocab_size, num_layers=2, embed_dim=64, mlp_dim=128,
                            num_heads=4, num_kv_heads=2, head_dim=16, param_dtype='float32', dtype='float32')
  save_pretrained(create_model(cfg, 0), d, eos_token_id=tok.eos_id)
  return d


def _hf_rm_config(hf_dir):
  c = rm_config()
  c.init_from = str(hf_dir)
  c.model.preset = ''          # the architecture comes from the checkpoint's config.json
  return c


def test_reward_model_starts_from_the_hf_weights(hf_checkpoint, tmp_path):
  from r1jax.models.hf import load_pretrained
  from r1jax.models.factory import split_params
  opts = rm_train.RewardModelOptions(train_path=write_pairs(tmp_path / 'p.jsonl', 32, 0), max_len=32,
                                     batch_size=8, num_steps=1, learning_rate=0.0, warmup_steps=0)
  out = rm_train.train(_hf_rm_config(hf_checkpoint), tmp_path / 'w', opts)
  _, want = split_params(load_pretrained(str(hf_checkpoint)))
  got = out['params']['backbone']
  np.testing.assert_array_equal(np.asarray(got['embedding']), np.asarray(want['embedding']))
  flat_got, flat_want = jax.tree.leaves(got), jax.tree.leaves(want)
  assert len(flat_got) == len(flat_want)
  for a, b in zip(flat_got, flat_want):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_reward_model_stage_from_an_hf_checkpoint_trains_and_scores(hf_checkpoint, tmp_path):
  """The `reward_model` stage with `init_from` a HF directory: its tokenizer and architecture are the checkpoint's,
  a few steps train it, and `RewardModelScorer` loads the workdir and scores on the mesh."""
  from r1jax import run as run_lib
  from r1jax.tokenizer import load_tokenizer
  c = _hf_rm_config(hf_checkpoint)
  c.reward_model = dict(train_path=write_pairs(tmp_path / 'train.jsonl', 320, 0),
                        eval_path=write_pairs(tmp_path / 'eval.jsonl', 64, 1), max_len=32, batch_size=16,
                        num_steps=60, learning_rate=3e-3, warmup_steps=5, log_every=20, checkpoint_every=60)
  out = run_lib.run(c, tmp_path / 'w')
  assert out['step'] == 60
  hf_tok = load_tokenizer(hf_checkpoint)
  scorer = RewardModelScorer(str(tmp_path / 'w'), batch_size=8)
  assert scorer.tokenizer.encode('Say something kind.') == hf_tok.encode('Say something kind.')
  metrics = [json.loads(l) for l in (tmp_path / 'w' / 'metrics.jsonl').read_text().splitlines()]
  assert metrics[-1]['loss'] < metrics[0]['loss']
  pairs = make_pairs(32, seed=9)
  good = scorer([p['prompt'] for p in pairs], [p['chosen'] for p in pairs])
  bad = scorer([p['prompt'] for p in pairs], [p['rejected'] for p in pairs])
  acc = np.mean(np.array(good) > np.array(bad))
  assert acc > 0.9 and out['eval_pair_accuracy'] > 0.9, (acc, out)   # 1.0 and 1.0 when written
