"""Length and repetition shaping terms, added to the accuracy reward with their own weights.

- DAPO soft overlong punishment (2503.14476), in tokens: 0 up to L_max - L_cache, then a linear ramp to -1 at L_max,
  -1 beyond.
- Cosine length-scaled reward ("Demystifying Long CoT Reasoning", 2502.03373): a cosine from r_0 at length 0 to r_L at
  L_max, with separate (r_0, r_L) for correct and wrong answers, and r_exceed past L_max. Defaults here are bounded
  like open-r1's (correct 1.0 -> 0.5, wrong -1.0 -> -0.5, exceed -1.0); the paper used correct 2 -> 1,
  wrong -10 -> 0, exceed -10.
- N-gram repetition penalty: -(1 - distinct n-grams / n-grams) * max_penalty, over whitespace words.
Lengths come from the `completion_lengths` field (token counts from the sampler); text never decides token length.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np


def _lengths(completions: list[str], completion_lengths: Optional[Sequence[Any]]) -> np.ndarray:
  if completion_lengths is None:
    raise KeyError("this reward needs the 'completion_lengths' field (token counts)")
  lengths = np.asarray(completion_lengths, dtype=np.float64).reshape(-1)
  if lengths.shape[0] != len(completions):
    raise ValueError(f'{lengths.shape[0]} completion_lengths for {len(completions)} completions')
  return lengths


def overlong_penalty(lengths: np.ndarray | Sequence[float], max_tokens: int, cache_tokens: int) -> np.ndarray:
  """DAPO soft overlong punishment for token lengths |o|."""
  if cache_tokens <= 0 or cache_tokens > max_tokens:
    raise ValueError(f'need 0 < cache_tokens <= max_tokens, got {cache_tokens}, {max_tokens}')
  lengths = np.asarray(lengths, dtype=np.float64)
  start = max_tokens - cache_tokens
  ramp = (start - lengths) / cache_tokens
  out = np.where(lengths <= start, 0.0, np.where(lengths <= max_tokens, ramp, -1.0))
  return out.astype(np.float32)


def overlong_reward(completions: list[str], completion_lengths: Optional[Sequence[Any]] = None,
                    max_tokens: int = 4096, cache_tokens: int = 512, **kwargs) -> np.ndarray:
  del kwargs
  return overlong_penalty(_lengths(completions, completion_lengths), max_tokens, cache_tokens)


def cosine_scaled(length: float, correct: bool, max_tokens: int, r0_correct: float = 1.0, rL_correct: float = 0.5,
                  r0_wrong: float = -1.0, rL_wrong: float = -0.5, r_exceed: float = -1.0) -> float:
  """r(t) = r_L + (r_0 - r_L)(1 + cos(pi t / L_max)) / 2: short correct answers earn most, short wrong ones lose most."""
  if length >= max_tokens:
    return r_exceed
  r0, rl = (r0_correct, rL_correct) if correct else (r0_wrong, rL_wrong)
  return rl + 0.5 * (r0 - rl) * (1.0 + math.cos(math.pi * max(length, 0.0) / max_tokens))


def cosine_reward(completions: list[str], completion_lengths: Optional[Sequence[Any]] = None,
                  max_tokens: int = 4096, correct: Optional[Sequence[Any]] = None, r0_correct: float = 1.0,
                  rL_correct: float = 0.5, r0_wrong: float = -1.0, rL_wrong: float = -0.5, r_exceed: float = -1.0,
                  _components: Optional[dict[str, np.ndarray]] = None, **kwargs) -> np.ndarray:
  """Cosine length-scaled reward. Correctness: a `correct` field, else the already computed 'accuracy' component
  (the reward system computes it first), else the math verifier on the `answer` field."""
  lengths = _lengths(completions, completion_lengths)
  if correct is None and _components is not None and 'accuracy' in _components:
    correct = _components['accuracy'] > 0.5
  if correct is None:
    from r1jax.rewards.math import math_reward
    correct = math_reward(completions, **kwargs) > 0.5
  return np.asarray([cosine_scaled(l, bool(c), max_tokens, r0_correct, rL_correct, r0_wrong, rL_wrong, r_exceed)
                     for l, c in zip(lengths, correct)], dtype=np.float32)


def repetition_fraction(text: str, ngram_size: int = 3, max_words: int = 100_000) -> float:
  """1 - distinct/total over word n-grams (first `max_words` words); 0 for texts shorter than n words."""
  if not isinstance(text, str):
    return 0.0
  words = text.lower().split()[:max_words]
  if len(words) < ngram_size:
    return 0.0
  ngrams = list(zip(*[words[i:] for i in range(ngram_size)]))
  return 1.0 - len(set(ngrams)) / len(ngrams)


def repetition_reward(completions: list[str], ngram_size: int = 3, max_penalty: float = -1.0,
                      **kwargs) -> np.ndarray:
  """N-gram repetition penalty in [max_penalty, 0]."""
  del kwargs
  if max_penalty > 0:
    raise ValueError('max_penalty must be <= 0')
  return np.asarray([max_penalty * repetition_fraction(c, ngram_size) for c in completions], dtype=np.float32)
