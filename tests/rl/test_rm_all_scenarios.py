"""All-scenario RL with a trained reward model as the scorer, on the mesh next to the policy.

The "annotator" of the synthetic preference task prefers the shorter of two responses to the same prompt. A reward
model trained on such pairs (cut from the arithmetic traces the tiny base was trained on) must learn it (> 90%
held-out accuracy), and GRPO from the tiny base, scored only by that reward model (`harmlessness` on the whole
response, applied to every row), must raise its mean score.
"""
import json
import pathlib
import sys

import numpy as np
import pytest

import grpo_testlib as lib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "rm"))
import rm_testlib  # noqa: E402
from r1jax.data import procedural
from r1jax.metrics import read_metrics
from r1jax.rl import trainer as rl_trainer
from r1jax.rm import train as rm_train


def length_pairs(n: int, seed: int) -> list[dict]:
  rng = np.random.default_rng(seed)
  out = []
  for r in procedural.make_sft_corpus('arithmetic', n, seed=seed, template='r1_zero_bare'):
    c = r['completion']
    a = int(rng.integers(4, max(6, len(c) // 2)))
    b = int(rng.integers(a + 8, len(c) + 1)) if a + 8 <= len(c) else len(c)
    out.append({'prompt': r['prompt'], 'chosen': c[:a], 'rejected': c[:b]})
  return out


def _write(path: pathlib.Path, rows) -> str:
  path.write_text('\n'.join(json.dumps(r) for r in rows) + '\n')
  return str(path)


@pytest.fixture(scope='module')
def length_rm(tmp_path_factory):
  d = tmp_path_factory.mktemp('length_rm')
  c = rm_testlib.rm_config()
  opts = rm_train.RewardModelOptions(
      train_path=_write(d / 'train.jsonl', length_pairs(480, 0)),
      eval_path=_write(d / 'eval.jsonl', length_pairs(96, 1)), max_len=64, batch_size=16, num_steps=150,
      learning_rate=3e-3, warmup_steps=10, log_every=50, checkpoint_every=1000)
  out = rm_train.train(c, d / 'work', opts)
  return d / 'work', out


def test_reward_model_learns_length_preference(length_rm):
  assert length_rm[1]['eval_pair_accuracy'] > 0.9


def test_all_scenario_rl_raises_the_reward_model_score(base_workdir, length_rm, tmp_path):
  c = lib.grpo_config(base_workdir, num_steps=10)
  c.rewards.weights = {'harmlessness': 1.0}
  c.rewards.kwargs = {'harmlessness': {'scorer': 'r1jax.rm.scorer:RewardModelScorer',
                                       'scorer_init': {'path': str(length_rm[0]), 'batch_size': 16},
                                       'apply_to': 'all', 'prompt_field': 'prompt_text'}}
  rl_trainer.train(c, tmp_path)
  scores = [m['reward/harmlessness'] for m in read_metrics(tmp_path) if 'reward/harmlessness' in m]
  assert len(scores) == 10
  assert np.mean(scores[-3:]) > np.mean(scores[:3]) + 0.05, scores
