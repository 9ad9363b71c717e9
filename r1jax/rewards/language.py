"""Language consistency (R1 stage 2): the share of chain-of-thought words written in the target language.

R1-Zero mixed languages inside its reasoning; R1 adds "the proportion of target language words in the CoT" to the
accuracy reward so that the CoT stays readable. Here a word's language is decided in two steps:

1. Script, per word. Words are runs of letters of one script; Han, Hiragana/Katakana and Thai are written without
   spaces, so each character counts as one word there. LaTeX commands (`\\frac`), think/answer tags, numbers,
   punctuation and single ASCII letters (math variables: `x`, `n`) are not words. A script written by one language
   (Hangul, kana, Greek, Hebrew, Thai; Han is Chinese unless the target is Japanese) decides the word's language.
2. Language, within a script written by several languages (Latin: English, French, German, ...; Cyrillic; Arabic;
   Devanagari). The text is cut into clauses at punctuation and line breaks, so that a switch in the middle of a
   sentence ("we add 3 and 4, donc la réponse est 7") lands in a different clause; each run of at least
   `min_clause_words` same-script words is identified by py3langid (a naive-Bayes n-gram model of 97 languages,
   4.6 MB, shipped in its wheel, ~0.15 ms per clause; see tests/rewards/test_language.py) among the script's
   candidate languages. A run that is too short, or whose best language has probability below `min_confidence`,
   is given the benefit of the doubt: it counts as the target language when the target is written in that script,
   else as the script's most frequent identified language. One stray foreign word inside an English clause is
   therefore not caught; clause-level switches are.

The target language is per row: a `target_language` field (an ISO 639-1 code) wins; otherwise (`'auto'`) it is
detected from the row's `question` (the user's message, not the rendered template, whose boilerplate is English).

An empty chain of thought, or one without words (only numbers), scores 0, so that dropping the reasoning cannot earn
this reward; on the tiny arithmetic tasks the term is therefore constant 0 unless the policy starts writing words.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import re
import threading
from typing import Optional, Sequence

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
# One pattern for all scripts: group name = script.
_WORD_RE = re.compile('|'.join(f'(?P<{name}>{pat.pattern})' for name, pat in _SCRIPTS.items()))

# Script -> languages written in it that the identifier chooses among (the first is the default).
SCRIPT_LANGUAGES = {
    'latin': ('en', 'fr', 'de', 'es', 'it', 'pt', 'nl', 'pl', 'tr', 'vi', 'id', 'sv', 'cs', 'ro', 'hu', 'fi',
              'da', 'no'),
    'cyrillic': ('ru', 'uk', 'bg', 'sr', 'kk'),
    'arabic': ('ar', 'fa', 'ur'),
    'devanagari': ('hi', 'mr', 'ne'),
    'han': ('zh',), 'kana': ('ja',), 'hangul': ('ko',), 'greek': ('el',), 'hebrew': ('he',), 'thai': ('th',),
}
# Language -> scripts it is written in.
LANGUAGE_SCRIPTS = {lang: (script,) for script, langs in SCRIPT_LANGUAGES.items() for lang in langs}
LANGUAGE_SCRIPTS['ja'] = ('han', 'kana')

_STRIP_RE = re.compile(r'\\[A-Za-z]+|</?(?:think|answer)>')
# Clause boundaries: sentence and clause punctuation (Latin and CJK), line breaks.
_CLAUSE_RE = re.compile(r'[.,;:!?()\[\]{}"\n\u3002\uff0c\uff1b\uff1a\uff01\uff1f\u3001\u00bf\u00a1]+')


@dataclasses.dataclass(frozen=True)
class LanguageOptions:
  """How words are identified. `min_clause_words`: shortest same-script run sent to the identifier;
  `min_confidence`: the identifier's probability (among the script's candidates) needed to override the default."""
  min_clause_words: int = 4
  min_confidence: float = 0.7


DEFAULT_OPTIONS = LanguageOptions()
_IDENT_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _identifier():
  """py3langid's bundled model, loaded once per process (~1.5 s)."""
  from py3langid.langid import MODEL_FILE, LanguageIdentifier  # pylint: disable=import-outside-toplevel
  return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


@functools.lru_cache(maxsize=None)
def _restricted_identifier(candidates: tuple[str, ...]):
  """A view of the model that scores only `candidates` (py3langid's `set_languages` on a shallow copy: the tables
  are shared, the class columns are sliced). Softmax over the candidates equals the full model's probabilities
  renormalised over them, at a fifth of the cost for Latin (18 of 97 columns) and without ranking all 97."""
  full = _identifier()
  known = [c for c in candidates if c in full.labels]
  if not known:
    return None
  ident = copy.copy(full)
  ident.set_languages(known)
  return ident


def warm_up() -> None:
  """Load the model and the per-script views (reward-pool workers call this before taking items)."""
  for langs in SCRIPT_LANGUAGES.values():
    if len(langs) > 1:
      _restricted_identifier(langs)


@functools.lru_cache(maxsize=65536)
def identify(text: str, candidates: tuple[str, ...]) -> tuple[str, float]:
  """(language, probability renormalised over `candidates`) of `text` by py3langid. Cached: CoTs repeat clauses."""
  ident = _restricted_identifier(tuple(candidates))
  if ident is None:
    return candidates[0], 0.0
  with _IDENT_LOCK:
    ranked = ident.rank(text)
  total = sum(p for _, p in ranked)
  if not ranked or total <= 0:
    return candidates[0], 0.0
  best, p = ranked[0]
  return best, p / total


# Work bound: a clause longer than this is cut into pieces, and a text with more clauses than
# `_MAX_CLAUSES` is scored on that many evenly spaced ones (the share is then an estimate).
_MAX_CLAUSE_CHARS = 2000
_MAX_CLAUSES = 2048
# Latin words for counting: runs that are not a single ASCII letter (math variables).
_LATIN_WORD_RE = re.compile(r'[A-Za-z\u00C0-\u024F\u1E00-\u1EFF]{2,}|[\u00C0-\u024F\u1E00-\u1EFF]')


def _clauses(text: str) -> list[str]:
  """The clauses of `text` that are analysed (all of them, up to the work bound)."""
  out = []
  for clause in _CLAUSE_RE.split(_STRIP_RE.sub(' ', text)):
    if len(clause) <= _MAX_CLAUSE_CHARS:
      out.append(clause)
    else:
      out += [clause[i:i + _MAX_CLAUSE_CHARS] for i in range(0, len(clause), _MAX_CLAUSE_CHARS)]
  if len(out) > _MAX_CLAUSES:
    out = [out[i] for i in np.linspace(0, len(out) - 1, _MAX_CLAUSES).astype(int)]
  return out


_ASCII_WORD_RE = re.compile(r'[A-Za-z]{2,}')
_SINGLE_SCRIPT_FAST = {name: pat for name, pat in _SCRIPTS.items() if name != 'latin'}


def _runs(text: str) -> list[tuple[str, str, int]]:
  """(script, text from its first word to its last, number of words) for each run of consecutive same-script words
  inside one analysed clause of `text`, in order. Single ASCII letters (math variables) are not words and do not
  break a run. Two fast paths give the same runs as the general one with one regex pass in C: an ASCII clause is
  one Latin run; a clause with no Latin letter and one script is one run of that script."""
  runs = []
  for clause in _clauses(text):
    if clause.isascii():
      ms = list(_ASCII_WORD_RE.finditer(clause))
      if ms:
        runs.append(('latin', clause[ms[0].start():ms[-1].end()], len(ms)))
      continue
    if not _SCRIPTS['latin'].search(clause):
      present = [(name, pat) for name, pat in _SINGLE_SCRIPT_FAST.items() if pat.search(clause)]
      if not present:
        continue
      if len(present) == 1:
        name, pat = present[0]
        ms = list(pat.finditer(clause))
        runs.append((name, clause[ms[0].start():ms[-1].end()], len(ms)))
        continue
    cur = None   # [script, start, end, n]
    for m in _WORD_RE.finditer(clause):
      script = m.lastgroup
      if script == 'latin' and m.end() - m.start() == 1 and m.group().isascii():
        continue   # a math variable, not a word
      if cur is not None and cur[0] == script:
        cur[2] = m.end()
        cur[3] += 1
      else:
        if cur is not None:
          runs.append((cur[0], clause[cur[1]:cur[2]], cur[3]))
        cur = [script, m.start(), m.end(), 1]
    if cur is not None:
      runs.append((cur[0], clause[cur[1]:cur[2]], cur[3]))
  return runs


def word_languages(text: str, target: Optional[str] = None,
                   options: LanguageOptions = DEFAULT_OPTIONS) -> dict[str, int]:
  """Number of words of `text` per language (ISO 639-1 code); see the module docstring for the rules."""
  if not isinstance(text, str) or not text:
    return {}
  return dict(_word_languages(text, target, options))


@functools.lru_cache(maxsize=1024)
def _word_languages(text: str, target: Optional[str], options: LanguageOptions) -> tuple[tuple[str, int], ...]:
  """word_languages as a hashable tuple, cached: a group's samples repeat completions, and is_mixed / share /
  mixing_rate may ask about the same text."""
  runs = _runs(text)
  counts: dict[str, int] = {}
  undecided: dict[str, int] = {}                       # script -> words left to the default rule
  decided_by_script: dict[str, dict[str, int]] = {}
  for script, segment, n in runs:
    langs = SCRIPT_LANGUAGES[script]
    if script == 'han' and target == 'ja':
      lang = 'ja'
    elif len(langs) == 1:
      lang = langs[0]
    elif n >= options.min_clause_words:
      lang, p = identify(segment, langs)
      if p < options.min_confidence:
        lang = None
    else:
      lang = None
    if lang is None:
      undecided[script] = undecided.get(script, 0) + n
    else:
      counts[lang] = counts.get(lang, 0) + n
      if len(langs) > 1:
        per = decided_by_script.setdefault(script, {})
        per[lang] = per.get(lang, 0) + n
  for script, n in undecided.items():
    if target is not None and script in LANGUAGE_SCRIPTS.get(target, ()):
      lang = target
    elif decided_by_script.get(script):
      per = decided_by_script[script]
      lang = max(per, key=per.get)
    else:
      lang = SCRIPT_LANGUAGES[script][0]
    counts[lang] = counts.get(lang, 0) + n
  return tuple(counts.items())


def script_word_counts(text: str) -> dict[str, int]:
  """Number of words per script in the whole of `text` (LaTeX commands, tags and single ASCII letters removed);
  C-level regex counting, linear in the text."""
  if not isinstance(text, str):
    return {k: 0 for k in _SCRIPTS}
  text = _STRIP_RE.sub(' ', text)
  return {name: sum(1 for _ in (_LATIN_WORD_RE if name == 'latin' else pat).finditer(text))
          for name, pat in _SCRIPTS.items()}


def _check_language(target: str) -> None:
  if target not in LANGUAGE_SCRIPTS:
    raise ValueError(f'unknown language {target!r}; known: {sorted(LANGUAGE_SCRIPTS)}')


@functools.lru_cache(maxsize=4096)
def detect_language(text: str, default: str = 'en', min_words: int = 3, min_confidence: float = 0.5) -> str:
  """The language of `text` (e.g. a question, to set the CoT's target); `default` if it has no words.

  The script with the most words decides; within a script shared by several languages the whole text is identified
  at once (a question is short, so clause by clause would abstain too often). With fewer than `min_words` words of
  that script, or an identification below `min_confidence`, the answer is `default` when it is written in that
  script (else the script's first language): "Compute 3 - 1 + 4." has one word, too few to tell.
  """
  counts = script_word_counts(text)
  if not any(counts.values()):
    return default
  if counts['kana']:   # kana present: Han characters are Japanese kanji
    counts['kana'] += counts.pop('han')
  script = max(counts, key=counts.get)
  langs = SCRIPT_LANGUAGES[script]
  if len(langs) == 1:
    return langs[0]
  fallback = default if script in LANGUAGE_SCRIPTS.get(default, ()) else langs[0]
  if counts[script] < min_words:
    return fallback
  lang, p = identify(_STRIP_RE.sub(' ', text), langs)
  return lang if p >= min_confidence else fallback


def language_share(text: str, target: str = 'en', options: LanguageOptions = DEFAULT_OPTIONS) -> float:
  """Share of the words of `text` in language `target`; 0 when there are no words."""
  _check_language(target)
  counts = word_languages(text, target, options)
  total = sum(counts.values())
  return counts.get(target, 0) / total if total else 0.0


def is_mixed(text: str, target: str, min_share: float = 0.95, options: LanguageOptions = DEFAULT_OPTIONS) -> bool:
  """Whether fewer than `min_share` of the words of `text` are in `target`. Text without words is not mixed."""
  _check_language(target)
  counts = word_languages(text, target, options)
  total = sum(counts.values())
  return bool(total) and counts.get(target, 0) / total < min_share


def resolve_targets(n: int, target_language=None, question: Optional[Sequence] = None,
                    default: str = 'en') -> list[str]:
  """Per-row target language: an explicit code wins; `None`/''/'auto' detects it from `question`, else `default`."""
  targets = list(target_language) if isinstance(target_language, (list, tuple, np.ndarray)) else [target_language] * n
  qs = list(question) if isinstance(question, (list, tuple, np.ndarray)) else [question] * n
  if len(targets) != n or len(qs) != n:
    # zip would silently drop rows: those would score 0 instead of failing loudly.
    raise ValueError(f'{n} completions but {len(targets)} target languages and {len(qs)} questions')
  out = []
  for t, q in zip(targets, qs):
    if t and t != 'auto':
      out.append(str(t))
    elif isinstance(q, str) and q:
      out.append(detect_language(q, default))
    else:
      out.append(default)
  return out


def language_reward(completions: list[str], target_language=None, question=None,
                    prompt_opens_think: bool = False, scope: str = 'think', default_language: str = 'en',
                    min_clause_words: int = DEFAULT_OPTIONS.min_clause_words,
                    min_confidence: float = DEFAULT_OPTIONS.min_confidence, **kwargs) -> np.ndarray:
  """Language consistency of the chain of thought (`scope='think'`) or of the whole completion (`'all'`).

  `target_language` may be a per-row field, one language for the batch, or `'auto'`/None (detect it from the
  row's `question`; `default_language` when there is none). A row whose target is unknown scores 0.
  """
  del kwargs
  n = len(completions)
  targets = resolve_targets(n, target_language, question, default_language)
  opts = LanguageOptions(int(min_clause_words), float(min_confidence))
  out = np.zeros(n, dtype=np.float32)
  for i, (c, t) in enumerate(zip(completions, targets, strict=True)):
    if t not in LANGUAGE_SCRIPTS:
      continue
    text = think_text(c, prompt_opens_think) if scope == 'think' else c
    out[i] = language_share(text, t, opts)
  return out


def mixed_flags(cots: Sequence[str], targets: Sequence[str], min_share: float = 0.95) -> np.ndarray:
  """Per chain of thought, `is_mixed`; without words, or with an unknown target, not mixed."""
  return np.asarray([is_mixed(c, t, min_share) if t in LANGUAGE_SCRIPTS else False
                     for c, t in zip(cots, targets, strict=True)], bool)


def mixing_rate(cots: Sequence[str], targets: Sequence[str], min_share: float = 0.95) -> float:
  """Share of chains of thought that mix languages (`mixed_flags`); 0 for none."""
  flags = mixed_flags(cots, targets, min_share)
  return float(flags.mean()) if flags.size else 0.0
