"""Math answer extraction and equivalence, the accuracy reward of R1's reasoning stages.

The reward decides what the policy learns, so it must be right on real answers and cheap and bounded on garbage:
- extraction is linear-time string scanning (no backtracking regexes over the whole completion);
- exact-string and exact-numeric (`Fraction`) fast paths run first, math-verify (sympy) only when they cannot decide;
- answers that are absurdly long or deeply nested never reach sympy.

math-verify guards itself with `signal.alarm`, which fails off the main thread and silently zeroes rewards. We pass
its timeouts as `None` whenever we are not on the main thread or are inside a pool worker (the pool enforces the time
limit from outside by killing the worker); only inline main-thread calls keep math-verify's own alarm as a safeguard.
"""
from __future__ import annotations

import functools
import logging
import re
import threading
from fractions import Fraction
from typing import Any, Optional

import numpy as np

# math-verify warns once when timeouts are disabled; that is deliberate here.
logging.getLogger('math_verify').setLevel(logging.ERROR)

FALLBACKS = ('last_number', 'none')
MAX_ANSWER_CHARS = 1000      # longer extracted answers never go to sympy
MAX_BRACE_DEPTH = 32         # deeper LaTeX nesting never goes to sympy
MAX_NUMBER_DIGITS = 200      # longer numbers compare as canonical strings only
_BOX_SCAN_CHARS = 20_000     # how far a \boxed{ is scanned for its closing brace
_TAIL_CHARS = 20_000         # the last-number fallback looks at the tail only
_MAX_BOX_CANDIDATES = 4

# Set by pool workers: the parent kills us on timeout, so no signal-based alarms.
IN_WORKER = False

_NUMBER_RE = re.compile(r'-?\d[\d,]*(?:\.\d+)?|-?\.\d+')
_BOX_RE = re.compile(r'\\(?:boxed|fbox)\s*\{')
_PLAIN_NUM_RE = re.compile(r'[+-]?(?:\d+(?:\.\d*)?|\.\d+)')
_THOUSANDS_RE = re.compile(r'[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?')
_SIMPLE_FRAC_RE = re.compile(r'([+-]?)\\[dt]?frac\{([+-]?\d+)\}\{([+-]?\d+)\}')
_SLASH_FRAC_RE = re.compile(r'([+-]?\d+)/([+-]?\d+)')
_TRAILING_TEXT_RE = re.compile(r'\\(?:text|mbox|textbf|mathrm)\{[^{}]*\}$')
_LATEX_SPACING_RE = re.compile(r'\\[,;:! ]|\\q?quad|\\left|\\right|~')


def _match_brace(text: str, open_idx: int, limit: int = _BOX_SCAN_CHARS) -> Optional[int]:
  """Index of the `}` closing the `{` at open_idx, or None if unbalanced within `limit` characters."""
  depth = 0
  end = min(len(text), open_idx + limit)
  i = open_idx
  while i < end:
    j_open = text.find('{', i, end)
    j_close = text.find('}', i, end)
    if j_close < 0:
      return None
    if 0 <= j_open < j_close:
      depth += 1
      i = j_open + 1
    else:
      depth -= 1
      if depth == 0:
        return j_close
      i = j_close + 1
  return None


def last_boxed(text: str) -> Optional[str]:
  """Content of the last balanced `\\boxed{...}` / `\\fbox{...}`, nested braces allowed."""
  pos = len(text)
  for _ in range(_MAX_BOX_CANDIDATES):
    start = max(text.rfind('\\boxed', 0, pos), text.rfind('\\fbox', 0, pos))
    if start < 0:
      return None
    m = _BOX_RE.match(text, start)
    if m is not None:
      close = _match_brace(text, m.end() - 1)
      if close is not None:
        return text[m.end():close].strip()
    pos = start
  return None


def _answer_tag(text: str) -> Optional[str]:
  end = text.rfind('</answer>')
  if end < 0:
    return None
  start = text.rfind('<answer>', 0, end)
  if start < 0:
    return None
  return text[start + len('<answer>'):end].strip()


def _last_number(text: str) -> Optional[str]:
  tail = text[-_TAIL_CHARS:]
  hash_idx = tail.rfind('####')
  if hash_idx >= 0:
    m = _NUMBER_RE.search(tail, hash_idx)
    if m is not None:
      return m.group(0).rstrip(',')
  last = None
  for last in _NUMBER_RE.finditer(tail):
    pass
  return last.group(0).rstrip(',') if last is not None else None


def extract_answer(text: str, fallback: Optional[str] = 'last_number') -> Optional[str]:
  """The final answer of a completion, or None.

  Order: the content of the last `<answer>...</answer>` (and the last `\\boxed{}` inside it when there is one), else
  the last `\\boxed{}`/`\\fbox{}`, else the fallback: 'last_number' (a GSM8K `#### n` marker, else the last number
  in the tail of the text) or 'none'.
  """
  if not isinstance(text, str) or not text:
    return None
  ans = _answer_tag(text)
  if ans is not None:
    boxed = last_boxed(ans)
    ans = boxed if boxed is not None else ans
    return ans or None
  boxed = last_boxed(text)
  if boxed is not None:
    return boxed or None
  if fallback in (None, 'none'):
    return None
  if fallback == 'last_number':
    return _last_number(text)
  raise ValueError(f'unknown fallback {fallback!r}; expected one of {FALLBACKS}')


def normalize_gold(gold: Any) -> str:
  """Gold answers arrive as numbers (AMC: 27.0), strings, GSM8K solutions (`... #### 72`) or boxed solutions."""
  if isinstance(gold, (int, np.integer)):
    return str(int(gold))
  if isinstance(gold, (float, np.floating)):
    f = float(gold)
    return str(int(f)) if f.is_integer() else repr(f)
  s = str(gold).strip()
  if '####' in s:
    s = s.rsplit('####', 1)[1].strip()
  elif '\\boxed' in s or '\\fbox' in s:
    s = last_boxed(s) or s
  return s


def _strip_wrappers(s: str) -> str:
  """Cosmetic LaTeX/text normalisation shared by the string and numeric fast paths."""
  s = s.strip().strip('$').strip()
  s = _LATEX_SPACING_RE.sub('', s)
  s = s.replace('\\dfrac', '\\frac').replace('\\tfrac', '\\frac').replace('\\displaystyle', '')
  s = s.replace('^\\circ', '').replace('^{\\circ}', '').replace('\\%', '').replace('%', '').replace('\\$', '')
  s = _TRAILING_TEXT_RE.sub('', s).strip()
  if s.startswith('\\text{') and s.endswith('}') and s.count('{') == 1:
    s = s[len('\\text{'):-1]
  return s.rstrip('.').replace(' ', '')


def to_number(s: str) -> Optional[Fraction]:
  """GSM8K-style number normalisation: `$1,234.50`, `50\\%`, `\\frac{3}{4}`, `-3/4`, `12 \\text{cm}` -> Fraction."""
  s = _strip_wrappers(s)
  if not s or len(s) > MAX_NUMBER_DIGITS + 20:
    return None
  if _THOUSANDS_RE.fullmatch(s):
    s = s.replace(',', '')
  try:
    if _PLAIN_NUM_RE.fullmatch(s):
      return Fraction(s)
    m = _SIMPLE_FRAC_RE.fullmatch(s)
    if m:
      val = Fraction(int(m.group(2)), int(m.group(3)))
      return -val if m.group(1) == '-' else val
    m = _SLASH_FRAC_RE.fullmatch(s)
    if m:
      return Fraction(int(m.group(1)), int(m.group(2)))
  except (ValueError, ZeroDivisionError):
    return None
  return None


def _brace_depth(s: str) -> int:
  depth = best = 0
  for ch in s:
    if ch == '{':
      depth += 1
      best = max(best, depth)
    elif ch == '}':
      depth -= 1
  return best


def _mv_timeout() -> Optional[int]:
  """math-verify's own alarm only where signal.alarm works: the main thread of a non-worker process."""
  if IN_WORKER or threading.current_thread() is not threading.main_thread():
    return None
  return 5


@functools.lru_cache(maxsize=4096)
def _mv_parse(expr: str, timeout: Optional[int]):
  import math_verify as mv
  return mv.parse('\\boxed{' + expr + '}',
                  extraction_config=[mv.LatexExtractionConfig(), mv.ExprExtractionConfig()],
                  parsing_timeout=timeout)


def answers_match(pred: Optional[str], gold: Any, use_math_verify: bool = True) -> bool:
  """Whether an extracted answer equals the gold answer; fast paths first, math-verify last."""
  if pred is None:
    return False
  gold_s = normalize_gold(gold)
  pred = pred.strip()
  if not pred or not gold_s:
    return False
  if pred == gold_s:
    return True
  if len(pred) > MAX_ANSWER_CHARS * 50 or len(gold_s) > MAX_ANSWER_CHARS * 50:
    return False
  p_norm, g_norm = _strip_wrappers(pred), _strip_wrappers(gold_s)
  if p_norm and p_norm == g_norm:
    return True
  p_num, g_num = to_number(pred), to_number(gold_s)
  if p_num is not None and g_num is not None:
    return p_num == g_num   # both plain numbers: exact rational comparison decides
  if not use_math_verify or len(pred) > MAX_ANSWER_CHARS or len(gold_s) > MAX_ANSWER_CHARS:
    return False
  if _brace_depth(pred) > MAX_BRACE_DEPTH or _brace_depth(gold_s) > MAX_BRACE_DEPTH:
    return False
  import math_verify as mv
  timeout = _mv_timeout()
  try:
    gold_parsed = _mv_parse(gold_s, timeout)
    pred_parsed = _mv_parse(pred, timeout)
    if not gold_parsed or not pred_parsed:
      return False
    return bool(mv.verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
  except Exception:  # noqa: BLE001 - a reward must never raise on model output
    return False


def verify(completion_text: str, gold: Any, fallback: Optional[str] = 'last_number',
           use_math_verify: bool = True) -> bool:
  """Whether the completion's final answer (see `extract_answer`) is equivalent to `gold`."""
  if not isinstance(completion_text, str):
    return False
  return answers_match(extract_answer(completion_text, fallback=fallback), gold, use_math_verify=use_math_verify)


def math_reward(completions: list[str], answer: list[Any] | None = None, fallback: str = 'last_number',
                **kwargs) -> np.ndarray:
  """Batched accuracy reward: 1.0 if the completion verifies against its `answer` field, else 0.0."""
  del kwargs
  if answer is None:
    raise KeyError("the 'math' reward needs an 'answer' field")
  return np.asarray([float(verify(c, a, fallback=fallback)) for c, a in zip(completions, answer)],
                    dtype=np.float32)
