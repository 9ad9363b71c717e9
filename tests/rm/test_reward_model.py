"""Reward model: Bradley-Terry loss, training on a synthetic preference task (> 90% held-out accuracy), scoring."""
import json

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
