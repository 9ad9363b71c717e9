"""Per-step GRPO text statistics (`mixing_rate`, `reflection_rate`, `summary_rate`): computed on the host from the
decoded completions by `ExperienceMaker`, with the evaluator's rules (r1jax/evals/curation.py)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import stage_config as sc
from r1jax.rewards import build_reward_system
from r1jax.rl.experience import ExperienceMaker
from r1jax.rollout.sampler import FINISH_STOP, Rollout, SamplerConfig
from r1jax.tokenizer import load_tokenizer, train_sentencepiece

TEXTS = ["<think> 4 times 2 is 8, then 3 plus 8 is 11. </think> 3 + 4 * 2 = 11. <answer> 11 </answer>",
         "<think> 4 times 2 is 8, 然后 3 加 8 得 11. </think> <answer> 11 </answer>",
         "<think> 4 times 2 is 9, wait, let me check, 4 times 2 is 8, then 3 plus 8 is 11. </think>"
         " <answer> 11 </answer>",
         "<think> 4 * 2 = 8. 然后 3 加 8 得 11. </think> <answer> 11 </answer>"]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  corpus = TEXTS * 20 + [f"<think> {a} plus {b} is {a + b}. </think>" for a in range(20) for b in range(9)]
  return load_tokenizer(train_sentencepiece(corpus, tmp_path_factory.mktemp("tok") / "m", 320))


class _CannedSampler:
  """Returns fixed completions, stopped."""

  def __init__(self, rows, pad):
    self.rows, self.pad = rows, pad

  def generate(self, params, prompt_ids, prompt_mask, rng, cfg):
    del params, rng
    n, length = len(self.rows), max(len(r) for r in self.rows)
    ids = np.full((n, length), self.pad, np.int32)
    mask = np.zeros((n, length), np.int32)
    for i, r in enumerate(self.rows):
      ids[i, :len(r)], mask[i, :len(r)] = r, 1
    lp = np.where(mask > 0, -1.0, 0.0).astype(np.float32)
    return Rollout(prompt_ids=jnp.asarray(np.repeat(prompt_ids, cfg.num_samples, 0)),
                   prompt_mask=jnp.asarray(np.repeat(prompt_mask, cfg.num_samples, 0)),
                   completion_ids=jnp.asarray(ids), completion_mask=jnp.asarray(mask),
                   lengths=jnp.asarray(mask.sum(1).astype(np.int32)),
                   finish_reason=jnp.full((n,), FINISH_STOP, jnp.int32),
                   logprobs=jnp.asarray(lp), sampling_logprobs=jnp.asarray(lp),
                   num_steps=jnp.int32(length))


def _make(tok, **rl_fields):
  rl = dataclasses.replace(sc.RLConfig(), group_size=4, num_prompts=1, sample_chunks=1,
                           **rl_fields)
  rewards = build_reward_system({"weights": {"accuracy": 1.0}, "num_workers": 0})
  maker = ExperienceMaker(_CannedSampler([tok.encode(t) for t in TEXTS], int(tok.pad_id or 0)),
                          SamplerConfig(num_samples=4, max_new_tokens=64), tok, rewards, rl)
  batch = {"prompt_ids": np.ones((1, 3), np.int32), "prompt_mask": np.ones((1, 3), np.int32),
           "question": ["Compute 3 + 4 * 2."], "answer": ["11"], "task": ["arithmetic"]}
  try:
    return maker.make(None, batch, jax.random.key(0))
  finally:
    rewards.close()


def test_step_metrics_mixing_and_reflection(tok):
  exp = _make(tok)
  assert exp.texts == TEXTS
  # Two of four CoTs are not all English; one reflects ("wait, let me check").
  assert exp.metrics["mixing_rate"] == pytest.approx(0.5)
  assert exp.metrics["reflection_rate"] == pytest.approx(0.25)
  # One has a readable summary between </think> and <answer> (R1's cold-start format).
  assert exp.metrics["summary_rate"] == pytest.approx(0.25)
  assert exp.metrics["accuracy_rate"] == pytest.approx(1.0)
  assert exp.metrics["completion_len/mean"] == pytest.approx(np.mean([len(tok.encode(t)) for t in TEXTS]))
  # The phrase list is configurable; () turns the reflection count off; cot_metrics=False logs neither.
  assert _make(tok, reflection_phrases=("then",)).metrics["reflection_rate"] == pytest.approx(0.5)
  assert _make(tok, reflection_phrases=()).metrics["reflection_rate"] == 0.0
  off = _make(tok, cot_metrics=False).metrics
  assert "mixing_rate" not in off and "reflection_rate" not in off and "summary_rate" not in off


def test_rl_config_defaults_are_the_corpus_phrases():
  from r1jax.data.procedural import REFLECTION, REFLECTION_PHRASES
  assert sc.RLConfig().reflection_phrases == REFLECTION_PHRASES
  assert all(p in REFLECTION for p in REFLECTION_PHRASES) and sc.RLConfig().cot_metrics
