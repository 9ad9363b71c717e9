"""Countdown and arithmetic checkers for the procedural tasks (TinyZero-style R1-Zero reproductions).

Countdown: given numbers and a target, write an equation with + - * / and parentheses that uses the numbers and
equals the target. Equations are evaluated by walking the `ast` of a length- and character-checked string with exact
`Fraction` arithmetic: never `eval`, no names, no calls, no powers, so `9**9**9` or `__import__` cannot be expressed.
"""
from __future__ import annotations

import ast
import re
from collections import Counter
from fractions import Fraction
from typing import Any, Optional, Sequence

import numpy as np

from r1jax.rewards import math as rmath

MAX_EXPR_CHARS = 256
_ALLOWED_CHARS_RE = re.compile(r'[\d+\-*/() .]+')
_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b}


class _Invalid(Exception):
  pass


def _walk(node: ast.AST, used: list[int], allow_unary_minus: bool) -> Fraction:
  if isinstance(node, ast.Expression):
    return _walk(node.body, used, allow_unary_minus)
  if isinstance(node, ast.Constant) and type(node.value) is int:
    used.append(node.value)
    return Fraction(node.value)
  if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
    left = _walk(node.left, used, allow_unary_minus)
    right = _walk(node.right, used, allow_unary_minus)
    if isinstance(node.op, ast.Div) and right == 0:
      raise _Invalid('division by zero')
    return _OPS[type(node.op)](left, right)
  if allow_unary_minus and isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
    return -_walk(node.operand, used, allow_unary_minus)
  raise _Invalid(f'disallowed syntax: {type(node).__name__}')


def evaluate_expression(expr: str, allow_unary_minus: bool = False) -> tuple[Fraction, list[int]]:
  """Exact value of an arithmetic expression and the integer literals it uses; raises ValueError if invalid."""
  expr = expr.strip()
  if not expr or len(expr) > MAX_EXPR_CHARS or not _ALLOWED_CHARS_RE.fullmatch(expr):
    raise ValueError('empty, too long, or characters outside digits, + - * / ( ) . and spaces')
  try:
    tree = ast.parse(expr, mode='eval')
    used: list[int] = []
    value = _walk(tree, used, allow_unary_minus)
  except (SyntaxError, _Invalid, RecursionError, MemoryError, ValueError) as e:
    raise ValueError(str(e)) from e
  return value, used


def extract_equation(completion: str) -> Optional[str]:
  """The equation: `<answer>` content, else the last `\\boxed{}`; the side of an `=` that is not just a number."""
  if not isinstance(completion, str):
    return None
  ans = rmath.extract_answer(completion, fallback='none')
  if ans is None:
    return None
  ans = ans.replace('\\times', '*').replace('\\cdot', '*').replace('\\div', '/').replace('×', '*').replace('÷', '/')
  ans = ans.replace('\\left', '').replace('\\right', '').strip().strip('$').strip()
  if '=' in ans:
    sides = [s.strip() for s in ans.split('=') if s.strip()]
    ops = [s for s in sides if any(op in s for op in '+-*/')]
    ans = ops[0] if ops else (sides[0] if sides else '')
  return ans or None


def check_countdown(completion: str, numbers: Sequence[int], target: Any, use_all: bool = True,
                    allow_unary_minus: bool = False) -> bool:
  """Whether the completion's equation reaches `target` using the given numbers.

  use_all=True (TinyZero): each number exactly once. use_all=False: each number at most once.
  """
  expr = extract_equation(completion)
  if expr is None:
    return False
  try:
    value, used = evaluate_expression(expr, allow_unary_minus)
    target_f = Fraction(str(target))
  except (ValueError, ZeroDivisionError):
    return False
  available, needed = Counter(int(n) for n in numbers), Counter(used)
  if use_all and needed != available:
    return False
  if not use_all and any(needed[k] > available[k] for k in needed):
    return False
  return value == target_f


def check_arithmetic(completion: str, target: Any, rel_tol: float = 0.0, fallback: str = 'last_number') -> bool:
  """Whether the completion's final number equals `target` (exactly, or within a relative tolerance)."""
  pred = rmath.extract_answer(completion, fallback=fallback) if isinstance(completion, str) else None
  if pred is None:
    return False
  p, t = rmath.to_number(pred), rmath.to_number(rmath.normalize_gold(target))
  if p is None or t is None:
    return False
  if rel_tol <= 0:
    return p == t
  return abs(float(p) - float(t)) <= rel_tol * max(abs(float(t)), 1e-12)


def countdown_reward(completions: list[str], numbers: list[Sequence[int]] | None = None,
                     target: list[Any] | None = None, use_all: bool = True, format_score: float = 0.0,
                     **kwargs) -> np.ndarray:
  """1.0 if correct; `format_score` (TinyZero uses 0.1) if an equation was found but is wrong; else 0."""
  del kwargs
  if numbers is None or target is None:
    raise KeyError("the 'countdown' reward needs 'numbers' and 'target' fields")
  out = np.zeros(len(completions), dtype=np.float32)
  for i, (c, nums, tgt) in enumerate(zip(completions, numbers, target)):
    if check_countdown(c, nums, tgt, use_all=use_all):
      out[i] = 1.0
    elif format_score and extract_equation(c) is not None:
      out[i] = format_score
  return out


def arithmetic_reward(completions: list[str], target: list[Any] | None = None, answer: list[Any] | None = None,
                      rel_tol: float = 0.0, fallback: str = 'last_number', **kwargs) -> np.ndarray:
  """1 if the final number equals the gold one. `fallback='none'` requires the answer in `<answer>` or
  `\\boxed{}` (R1's "answer in a specified format"); 'last_number' also accepts a bare final number."""
  del kwargs
  gold = target if target is not None else answer
  if gold is None:
    raise KeyError("the 'arithmetic' reward needs a 'target' (or 'answer') field")
  return np.asarray([float(check_arithmetic(c, g, rel_tol, fallback=fallback)) for c, g in zip(completions, gold)],
                    dtype=np.float32)
