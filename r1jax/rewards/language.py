"""Language consistency (R1 stage 2): the share of chain-of-thought words written in the target language.

R1-Zero mixed languages inside its reasoning; R1 adds this share to the reasoning reward so the CoT stays readable.
We identify languages by script, which is what mixing looks like in practice (English with Chinese, and so on):
words are runs of letters of one script; Han, Hiragana/Katakana and Thai have no spaces, so each character counts as
one word there. LaTeX commands (`\\frac`), numbers and punctuation are not words. All counting is done by C-level
regexes, linear in the text.

An empty chain of thought scores 0, so that dropping the reasoning cannot earn this reward.
"""
from __future__ import annotations

import re

import numpy as np

from r1jax.rewards.format import think_text

# Per-script patterns: word-like runs, or single characters for scripts written without spaces.
_SCRIPTS = {
    'latin': re.compile(r'[A-Za-z\u00C0-\u024F\u1E00-\u1EFF]+'),
    'han': re.compile(r'[\u3400-\u4DBF\u4E00-\u9FFF\uF900-\uFAFF\U00020000-\U0002FA1F]'),
    'kana': re.compile(r'[\u3040-\u309F\u30A0-\u30FF\u31F0-\u31FF]'),
    'hangul': re.compile(r'[\uAC00-\uD7AF\u1100-\u11FF\u3130-\u318F]+'),
    'cyrillic': re.compile(r'[\u0400-\u04FF\u0500-\u052F]+'),
    'arabic': re.compile(r'[\u0600-\u06FF\u0750-\u077F\u08A0-\u08FF]+'),
    'greek': re.compile(r'[\u0370-\u03FF\u1F00-\u1FFF]+'),
    'hebrew': re.compile(r'[\u0590-\u05FF]+'),
    'devanagari': re.compile(r'[\u0900-\u097F]+'),
    'thai': re.compile(r'[\u0E00-\u0E7F]'),
}

# Target language -> scripts that count as "in the language".
LANGUAGE_SCRIPTS = {
    'en': ('latin',), 'latin': ('latin',), 'fr': ('latin',), 'de': ('latin',), 'es': ('latin',),
    'zh': ('han',), 'ja': ('han', 'kana'), 'ko': ('hangul',), 'ru': ('cyrillic',), 'uk': ('cyrillic',),
    'ar': ('arabic',), 'el': ('greek',), 'he': ('hebrew',), 'hi': ('devanagari',), 'th': ('thai',),
}

_LATEX_CMD_RE = re.compile(r'\\[A-Za-z]+|</?(?:think|answer)>')


def script_word_counts(text: str) -> dict[str, int]:
  """Number of words per script in `text` (LaTeX commands removed first)."""
  if not isinstance(text, str):
    return {k: 0 for k in _SCRIPTS}
  text = _LATEX_CMD_RE.sub(' ', text)
  return {name: sum(1 for _ in pat.finditer(text)) for name, pat in _SCRIPTS.items()}


def language_share(text: str, target: str = 'en') -> float:
  """Share of words of `text` written in the script(s) of `target`; 0 when there are no words."""
  scripts = LANGUAGE_SCRIPTS.get(target, (target,))
  unknown = [s for s in scripts if s not in _SCRIPTS]
  if unknown:
    raise ValueError(f'unknown language/script {target!r}; known: {sorted(LANGUAGE_SCRIPTS)}')
  counts = script_word_counts(text)
  total = sum(counts.values())
  return sum(counts[s] for s in scripts) / total if total else 0.0


def language_reward(completions: list[str], target_language: str | list[str] = 'en',
                    prompt_opens_think: bool = False, scope: str = 'think', **kwargs) -> np.ndarray:
  """Language consistency of the chain of thought (`scope='think'`) or of the whole completion (`'all'`).

  `target_language` may be a per-example field (a list) or one language for the whole batch (config kwargs).
  """
  del kwargs
  n = len(completions)
  targets = target_language if isinstance(target_language, (list, tuple)) else [target_language] * n
  out = np.zeros(n, dtype=np.float32)
  for i, (c, t) in enumerate(zip(completions, targets)):
    text = think_text(c, prompt_opens_think) if scope == 'think' else c
    out[i] = language_share(text, t or 'en')
  return out
