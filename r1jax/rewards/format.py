"""The R1 output format: `<think> reasoning </think> <answer> final answer </answer>`.

Three rewards, all linear-time (`str.find`/`count`, no backtracking regexes, so a 5 MB completion costs milliseconds):
- strict: the whole completion is exactly one think block then one answer block, both non-empty, nothing around them;
- soft: the four tags appear in order somewhere, with no count checks;
- tag_count: 0.25 per tag that appears exactly once, partial credit that gives the policy a gradient early on.

`prompt_opens_think=True` is for chat templates (R1-Distill, Qwen3) whose prompt already ends in `<think>`: the
completion then starts inside the reasoning, so we prepend the opening tag before checking. A completion that opens
`<think>` again then has two, which strict and tag_count count as a mistake.
`require_answer_tag=False` accepts `<think>...</think> final answer` (R1-Distill style, no answer tags).
"""
from __future__ import annotations

import numpy as np

THINK_OPEN, THINK_CLOSE = '<think>', '</think>'
ANSWER_OPEN, ANSWER_CLOSE = '<answer>', '</answer>'
_TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)


def _prepare(text: str, prompt_opens_think: bool) -> str:
  if not isinstance(text, str):
    return ''
  return THINK_OPEN + text if prompt_opens_think else text


def is_strict_format(text: str, prompt_opens_think: bool = False, require_answer_tag: bool = True,
                     allow_summary: bool = False) -> bool:
  """Exactly `<think>X</think><answer>Y</answer>` (whitespace allowed between and around), X and Y non-empty.

  `allow_summary`: text may also stand between `</think>` and `<answer>` (a readable summary, R1's
  cold-start format); the tags are still each present once, in order, and nothing follows `</answer>`.
  """
  s = _prepare(text, prompt_opens_think).strip()
  if s.count(THINK_OPEN) != 1 or s.count(THINK_CLOSE) != 1 or not s.startswith(THINK_OPEN):
    return False
  close = s.find(THINK_CLOSE)
  if not s[len(THINK_OPEN):close].strip():
    return False
  rest = s[close + len(THINK_CLOSE):].strip()
  if not require_answer_tag:
    return bool(rest) and ANSWER_OPEN not in rest and ANSWER_CLOSE not in rest
  if rest.count(ANSWER_OPEN) != 1 or rest.count(ANSWER_CLOSE) != 1:
    return False
  if allow_summary:
    rest = rest[rest.find(ANSWER_OPEN):]
  if not (rest.startswith(ANSWER_OPEN) and rest.endswith(ANSWER_CLOSE)):
    return False
  return bool(rest[len(ANSWER_OPEN):-len(ANSWER_CLOSE)].strip())


def is_soft_format(text: str, prompt_opens_think: bool = False, require_answer_tag: bool = True) -> bool:
  """The tags appear in order `<think> ... </think> ... <answer> ... </answer>`; text around them is allowed."""
  s = _prepare(text, prompt_opens_think)
  i = s.find(THINK_OPEN)
  if i < 0:
    return False
  j = s.find(THINK_CLOSE, i + len(THINK_OPEN))
  if j < 0:
    return False
  if not require_answer_tag:
    return bool(s[j + len(THINK_CLOSE):].strip())
  k = s.find(ANSWER_OPEN, j + len(THINK_CLOSE))
  if k < 0:
    return False
  return s.find(ANSWER_CLOSE, k + len(ANSWER_OPEN)) >= 0


def tag_count_score(text: str, prompt_opens_think: bool = False) -> float:
  """0.25 for each of the four tags that occurs exactly once."""
  s = _prepare(text, prompt_opens_think)
  return 0.25 * sum(s.count(tag) == 1 for tag in _TAGS)


def format_reward(completions: list[str], prompt_opens_think: bool = False, require_answer_tag: bool = True,
                  **kwargs) -> np.ndarray:
  del kwargs
  return np.asarray([float(is_strict_format(c, prompt_opens_think, require_answer_tag)) for c in completions],
                    dtype=np.float32)


def format_soft_reward(completions: list[str], prompt_opens_think: bool = False, require_answer_tag: bool = True,
                       **kwargs) -> np.ndarray:
  del kwargs
  return np.asarray([float(is_soft_format(c, prompt_opens_think, require_answer_tag)) for c in completions],
                    dtype=np.float32)


def tag_count_reward(completions: list[str], prompt_opens_think: bool = False, **kwargs) -> np.ndarray:
  del kwargs
  return np.asarray([tag_count_score(c, prompt_opens_think) for c in completions], dtype=np.float32)


def summary_text(text: str, prompt_opens_think: bool = False, keep_answer: bool = True) -> str:
  """The summary: the text after the last `</think>`, stripped; '' without `</think>`.

  `keep_answer=True` removes the answer tags and keeps their content (what a helpfulness scorer
  reads, `r1jax.rewards.general`); `keep_answer=False` removes the whole `<answer>...</answer>`
  block, leaving what the reader gets besides the answer: '' for R1-Zero's
  `</think> <answer> 7 </answer>`, '3 + 4 = 7.' for the cold-start format
  `</think> 3 + 4 = 7. <answer> 7 </answer>`.
  """
  s = _prepare(text, prompt_opens_think)
  j = s.rfind(THINK_CLOSE)
  if j < 0:
    return ''
  rest = s[j + len(THINK_CLOSE):]
  if keep_answer:
    return rest.replace(ANSWER_OPEN, '').replace(ANSWER_CLOSE, '').strip()
  k = rest.find(ANSWER_OPEN)
  if k >= 0:
    m = rest.find(ANSWER_CLOSE, k)
    rest = rest[:k] + (rest[m + len(ANSWER_CLOSE):] if m >= 0 else '')
  return rest.strip()


def think_text(text: str, prompt_opens_think: bool = False) -> str:
  """The chain of thought: inside `<think>...</think>`; an unclosed block runs to the end; no tags: everything."""
  s = _prepare(text, prompt_opens_think)
  i = s.find(THINK_OPEN)
  if i < 0:
    j = s.find(THINK_CLOSE)
    return s[:j] if j >= 0 else s
  start = i + len(THINK_OPEN)
  j = s.find(THINK_CLOSE, start)
  return s[start:j] if j >= 0 else s[start:]
