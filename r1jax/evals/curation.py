"""The readability filters of R1's rejection sampling, and the choice among correct samples.

DeepSeek-R1 (sec. 2.3.3): "we have filtered out chain-of-thought with mixed languages, long paragraphs, and code
blocks". Each filter here is a function of the chain of thought alone; `cot_rejection` applies them in a fixed order
and names the first that fails, so per-filter counts add up to the number of rejected samples:

  language     fewer than `min_language_share` of the CoT's words are in the target language
               (`r1jax.rewards.language`: script per word, py3langid within a script); a CoT without words passes
  paragraph    some paragraph (text between blank lines) has more than `max_paragraph_words` words
               (words as in the language reward: numbers and LaTeX commands are not words); 0 turns it off
  code_blocks  the CoT has more than `max_code_blocks` ``` fenced blocks (R1: none; -1 turns it off), or more
               than `max_code_fraction` of its characters inside fences

The paper does not say which correct sample is kept per prompt. `choose` makes it explicit: `random` (the default:
no bias towards short or early samples), `shortest` (fewest tokens; biases towards short CoTs), `first` (lowest
sample index) or `all` (every candidate).
"""
from __future__ import annotations

import dataclasses
import functools
import re
from typing import Optional, Sequence

import numpy as np

from r1jax.data.procedural import REFLECTION_PHRASES
from r1jax.rewards import format as rformat
from r1jax.rewards import language as rlanguage

SELECT_RULES = ('random', 'shortest', 'first', 'all')
FILTERS = ('language', 'paragraph', 'code_blocks')
_FENCE_RE = re.compile(r'```.*?(?:```|$)', re.S)
_PARAGRAPH_RE = re.compile(r'\n[ \t]*\n')


@dataclasses.dataclass(frozen=True)
class CurationFilters:
  """Readability filters on the chain of thought (R1 sec. 2.3.3). Defaults are the paper's rules."""
  target_language: str = 'auto'     # 'auto': the language of the question (or the record's `target_language`)
  min_language_share: float = 0.95
  max_paragraph_words: int = 0      # 0: off (the paper gives no number; the R1 presets set one)
  max_code_blocks: int = 0          # -1: no bound
  max_code_fraction: float = 1.0    # share of CoT characters inside ``` fences; 1.0: no bound

  def __post_init__(self):
    if not 0.0 <= self.min_language_share <= 1.0:
      raise ValueError(f'min_language_share must be in [0, 1], got {self.min_language_share}')
    if self.max_paragraph_words < 0 or self.max_code_blocks < -1:
      raise ValueError('max_paragraph_words must be >= 0 and max_code_blocks >= -1')


def code_stats(text: str) -> tuple[int, float]:
  """(number of ``` fenced blocks, share of characters inside them); an unclosed fence runs to the end."""
  if not text:
    return 0, 0.0
  blocks = _FENCE_RE.findall(text)
  return len(blocks), sum(len(b) for b in blocks) / len(text)


def paragraph_words(text: str) -> list[int]:
  """Words per paragraph (paragraphs are separated by blank lines)."""
  return [sum(rlanguage.script_word_counts(p).values()) for p in _PARAGRAPH_RE.split(text or '')]


def target_for(record: dict, filters: CurationFilters = CurationFilters()) -> str:
  """The CoT's target language for a record: the record's `target_language`, the filters', or the question's."""
  explicit = record.get('target_language') or filters.target_language
  return rlanguage.resolve_targets(1, explicit, [record.get('question')])[0]


def cot_rejection(cot: str, filters: CurationFilters, target: str) -> Optional[str]:
  """The first readability filter the chain of thought fails ('language', 'paragraph', 'code_blocks'), or None."""
  if target in rlanguage.LANGUAGE_SCRIPTS and rlanguage.is_mixed(cot, target, filters.min_language_share):
    return 'language'
  if filters.max_paragraph_words and max(paragraph_words(cot), default=0) > filters.max_paragraph_words:
    return 'paragraph'
  blocks, fraction = code_stats(cot)
  if 0 <= filters.max_code_blocks < blocks or fraction > filters.max_code_fraction:
    return 'code_blocks'
  return None


def choose(candidates: Sequence[int], lengths: Sequence[int], rule: str = 'random', k: int = 1,
           rng: Optional[np.random.Generator] = None) -> list[int]:
  """Which of the correct, filtered samples (indices into `lengths`) to keep, at most `k` (`all`: every one).

  `random` draws without replacement from `rng` (seed it per prompt, e.g. `prompt_rng(seed, id)`, so that the
  choice does not depend on what else ran); `shortest` breaks ties by sample index.
  """
  if rule not in SELECT_RULES:
    raise ValueError(f'select must be one of {SELECT_RULES}, got {rule!r}')
  cands = list(candidates)
  if rule == 'all':
    return cands
  if rule == 'shortest':
    cands.sort(key=lambda s: (lengths[s], s))
  elif rule == 'random' and cands:
    rng = rng if rng is not None else np.random.default_rng(0)
    cands = [cands[i] for i in rng.permutation(len(cands))]
  return cands[:k]


def prompt_rng(seed: int, prompt_id) -> np.random.Generator:
  """A generator that depends only on (seed, prompt id): resumed runs choose the same samples."""
  import hashlib  # pylint: disable=import-outside-toplevel
  digest = hashlib.sha256(f'{seed}\0{prompt_id}'.encode()).digest()
  return np.random.default_rng(int.from_bytes(digest[:8], 'little'))


def language_mixing_rate(cots: Sequence[str], questions: Sequence[Optional[str]],
                         targets: Optional[Sequence[Optional[str]]] = None, min_share: float = 0.95) -> float:
  """Share of chains of thought that mix languages: the evaluator's `language_mixing_rate`.

  The target of row i is `targets[i]` when set, else the language of `questions[i]`.
  """
  flags = mixed_flags(cots, questions, targets, min_share)
  return float(flags.mean()) if flags.size else 0.0


def mixed_flags(cots: Sequence[str], questions: Sequence[Optional[str]],
                targets: Optional[Sequence[Optional[str]]] = None, min_share: float = 0.95) -> np.ndarray:
  """Per chain of thought, whether it mixes languages (`language_mixing_rate` is their mean): fewer than
  `min_share` of its words in the target (row i: `targets[i]` when set, else the language of `questions[i]`).
  A CoT without words, or with an unknown target, is not mixed."""
  resolved = rlanguage.resolve_targets(len(cots), list(targets) if targets is not None else None,
                                       list(questions))
  return rlanguage.mixed_flags(list(cots), resolved, min_share)


@functools.lru_cache(maxsize=16)
def _phrase_re(phrases: tuple[str, ...]) -> Optional[re.Pattern]:
  words = [re.escape(p.strip()).replace(r'\ ', r'\s+') for p in phrases if p and p.strip()]
  return re.compile(r'(?<!\w)(?:' + '|'.join(words) + r')(?!\w)', re.I) if words else None


def reflection_flags(texts: Sequence[str], phrases: Sequence[str] = REFLECTION_PHRASES) -> np.ndarray:
  """Per text, whether it contains one of the reflection `phrases` (whole words, any case, any spacing;
  default: the procedural corpus's "wait" / "let me check"). No phrases: all False."""
  pattern = _phrase_re(tuple(phrases))
  return np.asarray([bool(pattern and isinstance(t, str) and pattern.search(t)) for t in texts], bool)


def reflection_rate(texts: Sequence[str], phrases: Sequence[str] = REFLECTION_PHRASES) -> float:
  """Share of `texts` with a reflection phrase (`reflection_flags`); 0 for no texts."""
  flags = reflection_flags(texts, phrases)
  return float(flags.mean()) if flags.size else 0.0


def summary_flags(completions: Sequence[str], prompt_opens_think: bool = False) -> np.ndarray:
  """Per completion, whether it has a readable summary after its reasoning besides the answer
  (`rformat.summary_text(keep_answer=False)` non-empty), the cold-start format R1-Zero's output lacks."""
  return np.asarray([bool(rformat.summary_text(c, prompt_opens_think, keep_answer=False))
                     for c in completions], bool)


def cot_flags(completions: Sequence[str], questions: Sequence[Optional[str]], prompt_opens_think: bool = False,
              phrases: Sequence[str] = REFLECTION_PHRASES,
              targets: Optional[Sequence[Optional[str]]] = None) -> dict[str, np.ndarray]:
  """Per completion: `mixed` (its chain of thought mixes languages, `mixed_flags`), `reflection` (its chain of
  thought has a reflection phrase) and `summary` (a readable summary follows it, `summary_flags`). Host-side
  text statistics for the GRPO step metrics and the evaluator."""
  cots = [rformat.think_text(c, prompt_opens_think) if isinstance(c, str) else '' for c in completions]
  return {'mixed': mixed_flags(cots, questions, targets), 'reflection': reflection_flags(cots, phrases),
          'summary': summary_flags(completions, prompt_opens_think)}
