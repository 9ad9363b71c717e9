"""Math answer extraction and equivalence, the accuracy reward of R1's reasoning stages.

The reward decides what the policy learns, so it must be right on real answers and cheap and bounded on garbage:
- extraction is linear-time string scanning (no backtracking regexes over the whole completion);
- fast paths (exact string, cosmetic LaTeX normalisation, exact rationals, a decimal that rounds to the gold
  fraction at its shown precision) may only say True; when they cannot, math-verify (sympy) decides;
- answers that are absurdly long, deeply nested, or hold exponent towers, huge factorials or huge sum bounds never
  reach sympy.

math-verify guards itself with a fixed 5 s `signal.alarm`, which fails off the main thread and cannot interrupt
sympy's C code. Its own timeouts are off everywhere here. In a pool worker the pool's deadline kills the worker;
everywhere else (inline scoring, `num_workers=0`, notebooks, evals) the math-verify call runs in a helper process
started on first use and killed at `timeout_s` (`set_inline_timeout`), so the caller's deadline is hard.
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


def normalize_gold(gold: Any) -> str:  # noqa: C901
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


_INLINE_TIMEOUT_S = 5.0
_helper = None
_helper_lock = threading.Lock()


def set_inline_timeout(timeout_s: float) -> None:
  """Hard per-call deadline for math-verify outside pool workers (the reward system sets its `timeout_s`)."""
  global _INLINE_TIMEOUT_S
  _INLINE_TIMEOUT_S = float(timeout_s)


def _helper_pool():
  global _helper
  with _helper_lock:
    if _helper is None or not _helper.healthy():
      from r1jax.rewards.pool import RewardPool
      _helper = RewardPool(num_workers=1, timeout_s=_INLINE_TIMEOUT_S, warm_math=True)
    return _helper


def warm_up() -> None:
  """Start the inline helper now (it otherwise starts on the first answer that needs sympy)."""
  if not IN_WORKER:
    _helper_pool().wait_ready()


@functools.lru_cache(maxsize=4096)
def _mv_parse(expr: str):
  import math_verify as mv
  return mv.parse('\\boxed{' + expr + '}',
                  extraction_config=[mv.LatexExtractionConfig(), mv.ExprExtractionConfig()],
                  parsing_timeout=None)


def _mv_equal(gold: str, preds: tuple[str, ...]) -> bool:
  """math-verify's verdict: gold equals any of the candidate readings of the prediction (no alarms)."""
  import math_verify as mv
  try:
    gold_parsed = _mv_parse(gold)
    if not gold_parsed:
      return False
    for pred in preds:
      pred_parsed = _mv_parse(pred)
      if pred_parsed and mv.verify(gold_parsed, pred_parsed, timeout_seconds=None):
        return True
  except Exception:  # noqa: BLE001 - a reward must never raise on model output
    return False
  return False


def _mv_equal_guarded(gold: str, preds: tuple[str, ...]) -> bool:
  if IN_WORKER:
    return _mv_equal(gold, preds)
  res = _helper_pool().map(_mv_equal, [((gold, preds), {})], timeout_s=_INLINE_TIMEOUT_S)[0]
  return res.status == 'ok' and bool(res.value)


# ---- what never reaches sympy
_EXP_RE = re.compile(r'(?:\^|\*\*)\s*(\{[^{}]*\}|\(?[+-]?[\d.]+\)?|[A-Za-z])')
_FACT_RE = re.compile(r'(\d+|\)|\})\s*!')
_BOUND_RE = re.compile(r'\\(?:sum|prod)\s*_\s*(\{[^{}]*\}|\S)\s*\^\s*(\{[^{}]*\}|\S)')
MAX_EXPONENT = 10_000
MAX_FACTORIAL = 1_000
MAX_SUM_TERMS = 10_000


def _number(text: str) -> Optional[float]:
  t = text.strip('{}() ')
  try:
    return float(t.replace(',', ''))
  except ValueError:
    return None


def too_costly(expr: str) -> bool:
  """True for inputs that can make sympy run for minutes or take gigabytes: exponent towers (`x^{10^6}`,
  `2^{2^{2^5}}`), exponents above MAX_EXPONENT, factorials of numbers above MAX_FACTORIAL or of expressions with
  powers/factorials inside, sums and products with more than MAX_SUM_TERMS terms or symbolic/huge bounds."""
  if expr.count('^') + expr.count('**') > 20:
    return True
  for m in _EXP_RE.finditer(expr):
    e = m.group(1)
    if '^' in e or '**' in e or '!' in e or expr[m.end():].lstrip().startswith(('^', '**')):
      return True   # a tower: x^{10^6}, x**10**6
    v = _number(e)
    if v is not None and abs(v) > MAX_EXPONENT:
      return True
  for m in _FACT_RE.finditer(expr):
    if m.group(1).isdigit():
      if int(m.group(1)[-7:]) > MAX_FACTORIAL or len(m.group(1)) > 7:
        return True
    else:   # `(...)!` / `{...}!`: bounded only if the argument is a small number
      close = m.start(1)
      depth, i = 0, close
      while i >= 0:
        depth += expr[i] in ')}'
        depth -= expr[i] in '({'
        if depth == 0:
          break
        i -= 1
      inner = expr[i + 1:close]
      v = _number(inner)
      if v is None or v > MAX_FACTORIAL:
        if any(c in inner for c in '^!*') or v is not None:
          return True
  for m in _BOUND_RE.finditer(expr):
    lo, hi = m.group(1).strip('{}'), m.group(2).strip('{}')
    lo_v = _number(lo.split('=')[-1]) if '=' in lo else None
    hi_v = _number(hi)
    if hi_v is None or lo_v is None or hi_v - lo_v > MAX_SUM_TERMS or '^' in hi:
      return True
  return False


# ---- readings of a prediction
_DELIMS = (('$$', '$$'), ('\\[', '\\]'), ('\\(', '\\)'), ('$', '$'))
_PROSE_RE = re.compile(r'^[A-Za-z ,.:;!?\'"-]*$')


def strip_delimiters(s: str) -> str:
  """`$…$`, `$$…$$`, `\\(…\\)`, `\\[…\\]` around a whole answer are removed."""
  s = s.strip()
  for _ in range(3):
    for left, right in _DELIMS:
      if len(s) > len(left) + len(right) - 1 and s.startswith(left) and s.endswith(right):
        inner = s[len(left):len(s) - len(right)]
        if left != '$' or '$' not in inner:
          s = inner.strip()
          break
    else:
      break
  return s


def _last_math_segment(text: str) -> Optional[str]:
  """The last `$…$` / `\\(…\\)` / `\\[…\\]` formula in prose (\"The answer is $9$.\")."""
  best, best_end = None, -1
  for left, right in _DELIMS:
    end = text.rfind(right)
    if end <= 0:
      continue
    start = text.rfind(left, 0, end)
    if start < 0 or end < best_end:
      continue
    inner = text[start + len(left):end].strip()
    if inner and '$' not in inner:
      best, best_end = inner, end
  return best


_INEQ_OPS = ((r'\leqslant', '<='), (r'\geqslant', '>='), (r'\leq', '<='), (r'\geq', '>='), (r'\le', '<='),
             (r'\ge', '>='), ('≤', '<='), ('≥', '>='), (r'\lt', '<'), (r'\gt', '>'))
_INEQ_SPLIT = re.compile(r'(<=|>=|<|>)')
_VAR_RE = re.compile(r'[a-zA-Z]')


def inequality_to_interval(s: str) -> Optional[str]:
  """`x < 3` -> `(-\infty, 3)`, `2 \le x < 5` -> `[2, 5)`, `x \geq -1` -> `[-1, \infty)`, `5 > x` -> `(-\infty, 5)`;
  None when `s` is not a one-variable inequality."""
  t = s.strip()
  if '<' not in t and '>' not in t and '\\l' not in t and '\\g' not in t and '≤' not in t and '≥' not in t:
    return None
  for src, dst in _INEQ_OPS:
    t = t.replace(src, dst)
  parts = [p.strip() for p in _INEQ_SPLIT.split(t)]
  if len(parts) == 3:
    a, op, b = parts
    if _VAR_RE.fullmatch(a):
      var_left = True
    elif _VAR_RE.fullmatch(b):
      var_left, a, b = False, b, a
      op = {'<': '>', '>': '<', '<=': '>=', '>=': '<='}[op]
    else:
      return None
    if not b:
      return None
    if op in ('<', '<='):
      return f'(-\\infty, {b}{"]" if op == "<=" else ")"}'
    return f'{"[" if op == ">=" else "("}{b}, \\infty)'
  if len(parts) == 5 and _VAR_RE.fullmatch(parts[2]) and parts[0] and parts[4]:
    lo, op1, _, op2, hi = parts
    if op1[0] == '>' and op2[0] == '>':
      lo, hi, op1, op2 = hi, lo, op2.replace('>', '<'), op1.replace('>', '<')
    if op1[0] != '<' or op2[0] != '<':
      return None
    return f'{"[" if op1 == "<=" else "("}{lo}, {hi}{"]" if op2 == "<=" else ")"}'
  return None


def _all_boxed(text: str, limit: int = 8) -> list[str]:
  out, pos = [], 0
  while len(out) <= limit:
    m = _BOX_RE.search(text, pos)
    if m is None:
      break
    close = _match_brace(text, m.end() - 1)
    if close is None:
      break
    out.append(text[m.end():close].strip())
    pos = close + 1
  return out


def _readings(text: str, fallback: Optional[str]) -> list[str]:
  """Candidate final answers of a completion, most specific first (see `verify`)."""
  out = []
  ans = _answer_tag(text)
  region = ans if ans is not None else text
  boxes = _all_boxed(region)
  first = extract_answer(text, fallback=fallback)
  if first is not None:
    out.append(first)
  if len(boxes) > 1:   # one \boxed{} per solution
    out.append(', '.join(b for b in boxes if b))
  if ans is not None and not boxes:
    seg = _last_math_segment(ans)
    if seg is not None:
      out.append(seg)
    else:   # "I think it is 3": prose with exactly one number
      nums = _NUMBER_RE.findall(ans)
      if len(nums) == 1 and _PROSE_RE.match(_NUMBER_RE.sub('', ans)):
        out.append(nums[0].rstrip(','))
  for r in list(out):   # `x = \\text{east}`: the right-hand side too (math-verify handles `x = 3` itself)
    m = _ASSIGN_RE.match(r)
    if m:
      out.append(m.group(1).strip())
  return [r for r in dict.fromkeys(out) if r]


_ASSIGN_RE = re.compile(r'^[A-Za-z]\s*=\s*([^=<>]+)$')


def _decimal_matches_fraction(pred: str, gold: str) -> bool:
  """`0.333` for `\\frac{1}{3}`: a decimal with at least 2 places that equals the gold rational rounded to them."""
  p = _strip_wrappers(pred)
  if not _PLAIN_NUM_RE.fullmatch(p) or '.' not in p:
    return False
  places = len(p.split('.', 1)[1])
  if places < 2 or places > 12:
    return False
  g = to_number(gold)
  if g is None or g.denominator == 1:
    return False
  return abs(Fraction(p) - g) <= Fraction(1, 2 * 10 ** places)


def answers_match(pred: Optional[str], gold: Any, use_math_verify: bool = True) -> bool:
  """Whether an extracted answer equals the gold answer: fast paths may say True, math-verify says the rest."""
  if pred is None:
    return False
  return _match_readings([pred], gold, use_math_verify)


def _match_readings(preds: list[str], gold: Any, use_math_verify: bool = True) -> bool:
  gold_s = strip_delimiters(normalize_gold(gold))
  if not gold_s:
    return False
  g_norm, g_num = _strip_wrappers(gold_s), to_number(gold_s)
  g_interval = inequality_to_interval(gold_s)
  cands = []
  for pred in preds:
    pred = strip_delimiters(pred.strip()) if isinstance(pred, str) else ''
    if not pred:
      continue
    if pred == gold_s:
      return True
    if len(pred) > MAX_ANSWER_CHARS * 50:
      continue
    p_norm = _strip_wrappers(pred)
    if p_norm and p_norm == g_norm:
      return True
    p_num = to_number(pred)
    if p_num is not None and g_num is not None and p_num == g_num:
      return True
    if _decimal_matches_fraction(pred, gold_s):
      return True
    cands.append(pred)
    interval = inequality_to_interval(pred)
    if interval is not None:
      cands.append(interval)
  if not use_math_verify or len(gold_s) > MAX_ANSWER_CHARS or _brace_depth(gold_s) > MAX_BRACE_DEPTH:
    return False
  cands = [c for c in cands if len(c) <= MAX_ANSWER_CHARS and _brace_depth(c) <= MAX_BRACE_DEPTH
           and not too_costly(c)]
  if not cands or too_costly(gold_s):
    return False
  golds = [gold_s] + ([g_interval] if g_interval else [])
  return any(_mv_equal_guarded(g, tuple(cands)) for g in golds)


def verify(completion_text: str, gold: Any, fallback: Optional[str] = 'last_number',
           use_math_verify: bool = True) -> bool:
  """Whether the completion's final answer is equivalent to `gold`.

  Readings tried: `extract_answer` (last `<answer>`, its last `\\boxed{}`, else the last `\\boxed{}`, else the
  fallback); all the `\\boxed{}` of the answer joined as a set when there are several (one per solution); inside
  `<answer>` prose, the last `$…$`/`\\(…\\)`/`\\[…\\]` formula, or the only number. An inequality (`x < 3`) is
  also read as an interval. Delimiters around the gold are ignored.
  """
  if not isinstance(completion_text, str) or not completion_text:
    return False
  return _match_readings(_readings(completion_text, fallback), gold, use_math_verify=use_math_verify)


def math_reward(completions: list[str], answer: list[Any] | None = None, fallback: str = 'last_number',
                **kwargs) -> np.ndarray:
  """Batched accuracy reward: 1.0 if the completion verifies against its `answer` field, else 0.0."""
  del kwargs
  if answer is None:
    raise KeyError("the 'math' reward needs an 'answer' field")
  return np.asarray([float(verify(c, a, fallback=fallback)) for c, a in zip(completions, answer)],
                    dtype=np.float32)
