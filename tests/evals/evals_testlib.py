"""Test helpers for r1jax.evals: a scripted sampler and R1-format text.

The scripted sampler stands in for a trained model: it decodes each prompt, asks a `responder`
for the text of sample s, and returns token ids like `Sampler.generate` (eos appended when it
fits, truncated at max_new_tokens with finish reason 1), so verdicts are known in advance while
decoding, verification and bookkeeping run for real.
"""
import re
import types

import numpy as np

from r1jax.rollout import SamplerConfig


_Q_RE = re.compile(r'Using the numbers \[([\d, ]+)\], create an equation that equals (\d+)')


def question_of(prompt: str) -> tuple[list[int], int]:
  m = _Q_RE.search(prompt)
  assert m, prompt
  return [int(x) for x in m.group(1).split(',')], int(m.group(2))


class ScriptedSampler:
  """`Sampler.generate` look-alike driven by `responder(prompt_text, sample_index) -> text`."""

  def __init__(self, tokenizer, responder, config=None):
    self.tok = tokenizer
    self.responder = responder
    self.config = config or SamplerConfig(max_new_tokens=64, eos_ids=tokenizer.eos_ids,
                                          pad_id=tokenizer.pad_id)
    self.prompts_seen = []   # every real prompt passed to generate, in order
    self.configs = []

  def generate(self, params, prompt_ids, prompt_mask, rng, config=None):
    del params, rng
    cfg = config or self.config
    self.configs.append(cfg)
    g, length = cfg.num_samples, cfg.max_new_tokens
    rows = []
    for b in range(prompt_ids.shape[0]):
      prompt = self.tok.decode(prompt_ids[b][prompt_mask[b] == 1], skip_special_tokens=True)
      self.prompts_seen.append(prompt)
      for s in range(g):
        ids = self.tok.encode(self.responder(prompt, s))
        finish = 1 if len(ids) >= length else 0
        ids = (ids + [cfg.eos_ids[0]])[:length] if finish == 0 else ids[:length]
        rows.append((ids, finish))
    r = len(rows)
    out_ids = np.full((r, length), cfg.pad_id, np.int32)
    mask = np.zeros((r, length), np.int32)
    for i, (ids, _) in enumerate(rows):
      out_ids[i, :len(ids)] = ids
      mask[i, :len(ids)] = 1
    return types.SimpleNamespace(
        completion_ids=out_ids, completion_mask=mask, lengths=mask.sum(1).astype(np.int32),
        finish_reason=np.asarray([f for _, f in rows], np.int32))


def r1(reasoning: str, answer: str) -> str:
  return f'<think> {reasoning} </think> <answer> {answer} </answer>'


def load_config(name: str, preset: str):
  """`configs/<name>.py:<preset>`, loaded by path (as `--config=` does)."""
  import importlib.util
  import pathlib
  path = pathlib.Path(__file__).resolve().parents[2] / 'configs' / f'{name}.py'
  spec = importlib.util.spec_from_file_location(f'_r1jax_config_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset)


def save_tiny_workdir(path, model_cfg, params, tokenizer):
  """A minimal r1jax workdir (what a training stage leaves): config, tokenizer, params checkpoint."""
  from r1jax import experiment
  from r1jax.checkpoint import Checkpointer
  experiment.save_model_config(model_cfg, path)
  experiment._copy_tokenizer(tokenizer.path, path)  # pylint: disable=protected-access
  with Checkpointer(path / 'checkpoints', async_save=False) as ckpt:
    ckpt.save(1, {'params': params, 'step': np.int32(1)}, force=True)
  return path
