"""Agreement of r1jax's math verifier with math-verify on answers rewritten in other forms.

Usage: python benchmarks/math_agreement.py [--data_dir ../shared/data] [--n 500] [--no_reference]

The corpus: every MATH-500 / AIME 2024 / AMC 2023 gold answer, rewritten the ways models write answers (`$…$`,
`\\(…\\)`, `\\[…\\]`, `$$…$$`, prose around a formula, `\\boxed{}`, one `\\boxed{}` per solution, bare `\\text{}` words,
intervals as inequalities, decimals of a fraction to the shown precision, cosmetic LaTeX) inside `<answer>` tags:
true equivalences (positives). False ones (negatives): another problem's answer in the same forms, and near misses
(an integer off by one, a decimal rounded wrongly, an interval with the wrong end, a solution missing). Each pair is
scored by r1jax (`rewards.math.verify`) and by math-verify's own `parse`/`verify` (the reference) and printed per
class: accepted positives, rejected negatives, and how often the two agree. Load average is printed with the run.
"""
import argparse
import collections
import json
import os
import random
import re
import time
from fractions import Fraction
from pathlib import Path


def _load(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _fmt_int(v):
  return str(int(v))


_FRAC = re.compile(r'^(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}$')
_INTERVAL = re.compile(r'^\s*(\(|\[)\s*([^,]+?)\s*,\s*([^,]+?)\s*(\)|\])\s*$')
_NUMLIST = re.compile(r'^-?\d+(?:\s*,\s*-?\d+)+$')
_THOUSANDS = re.compile(r'^-?\d{1,3}(?:,\d{3})+$')


LE, GE = '\\le', '\\ge'


def _interval_as_inequality(a):
  m = _INTERVAL.match(a.replace('\\left', '').replace('\\right', ''))
  if not m:
    return None
  lb, lo, hi, rb = m.groups()
  if 'infty' in lo and 'infty' in hi:
    return None
  le_hi = LE if rb == ']' else '<'
  if 'infty' in lo:
    return f'x {le_hi} {hi}'
  if 'infty' in hi:
    return f'x {GE if lb == "[" else ">"} {lo}'
  return f'{lo} {LE if lb == "[" else "<"} x {le_hi} {hi}'


def _flip_interval(a):
  m = _INTERVAL.match(a.replace('\\left', '').replace('\\right', ''))
  if not m:
    return None
  lb, lo, hi, rb = m.groups()
  if 'infty' in hi:
    return f'{"(" if lb == "[" else "["}{lo}, {hi})'
  return f'{lb}{lo}, {hi}{")" if rb == "]" else "]"}'


def forms(a):
  """(class, completion) pairs that state the answer `a` (a LaTeX string without delimiters)."""
  out = [('dollar', f'$ {a} $'), ('paren', f'\\({a}\\)'), ('bracket', f'\\[{a}\\]'), ('ddollar', f'$${a}$$'),
         ('prose', f'The answer is ${a}$.'), ('boxed', f'so \\boxed{{{a}}}'),
         ('paren_prose', f'So we get \\({a}\\) as the result.'), ('gold_delims', a)]
  if ',' not in a and '=' not in a:
    out.append(('eq_prose', f'Therefore $x = {a}$.'))
  cos = a.replace('\\frac', '\\dfrac').replace('\\left', '').replace('\\right', '').replace(' ', '')
  if cos != a:
    out.append(('cosmetic', f'${cos}$'))
  m = re.fullmatch(r'\\text\{\s*\(?([A-Za-z ]+?)\)?\s*\}', a)
  if m:
    out.append(('text_word', m.group(1)))
  if _NUMLIST.match(a) and not _THOUSANDS.match(a):
    parts = [p.strip() for p in a.split(',')]
    out.append(('several_boxed', ', '.join(f'\\boxed{{{p}}}' for p in reversed(parts))))
  ineq = _interval_as_inequality(a)
  if ineq:
    out.append(('inequality', f'${ineq}$'))
  m = _FRAC.match(a.strip())
  if m and int(m.group(3)) not in (0, 1):
    v = Fraction(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) else 1)
    if v.denominator != 1:
      out.append(('decimal', f'{float(v):.3f}'))
  if re.fullmatch(r'-?\d+', a.strip()):
    v = int(a)
    out += [('int_float', f'{v}.0'), ('bare_prose', f'I think it is {v}'), ('units', f'{v} \\text{{ cm}}')]
    if abs(v) >= 1000:
      out.append(('thousands', f'{v:,}'))
  return [(c, f'<think>work</think><answer>{t}</answer>') for c, t in out]


def near_misses(a):
  out = []
  s = a.strip()
  if re.fullmatch(r'-?\d+', s):
    out += [('off_by_one', str(int(s) + 1)), ('sign', str(-int(s)) if int(s) else '1')]
  m = _FRAC.match(s)
  if m and int(m.group(3)) not in (0, 1):
    v = Fraction(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) else 1)
    if v.denominator != 1:
      out.append(('wrong_decimal', f'{float(v) + 0.002:.3f}'))
  flip = _flip_interval(s)
  if flip:
    out.append(('interval_end', flip))
    ineq = _interval_as_inequality(flip)
    if ineq:
      out.append(('inequality_end', f'${ineq}$'))
  if _NUMLIST.match(s) and not _THOUSANDS.match(s):
    out.append(('missing_solution', f'\\boxed{{{s.split(",")[0].strip()}}}'))
  return [(c, f'<think>work</think><answer>{t}</answer>') for c, t in out]


def build_corpus(data_dir, n=None, seed=0):
  """-> list of (source, class, completion, gold, label)."""
  rng = random.Random(seed)
  rows = []
  data = Path(data_dir)
  for name, key in (('math500', 'answer'), ('aime24', 'answer'), ('amc23', 'answer')):
    path = data / name / 'test.jsonl'
    if path.is_file():
      golds = []
      for r in _load(path):
        g = r[key]
        if isinstance(g, float) and g.is_integer():
          g = int(g)
        golds.append(str(g).strip())
      rows += [(name, g) for g in golds[:n] if g]
  corpus = []
  by_src = collections.defaultdict(list)
  for src, g in rows:
    by_src[src].append(g)
  for src, g in rows:
    for cls, comp in forms(g):
      corpus.append((src, cls, comp, f'${g}$' if cls == 'gold_delims' else g, True))
    others = [o for o in by_src[src] if o.replace(' ', '') != g.replace(' ', '')]
    other = rng.choice(others)
    for cls, comp in forms(other)[:6]:
      if cls in ('dollar', 'prose', 'boxed'):
        corpus.append((src, 'other_' + cls, comp, g, False))
    for cls, comp in near_misses(g):
      corpus.append((src, cls, comp, g, False))
  return corpus


def reference_verify(completion, gold):
  import math_verify as mv
  try:
    gold = gold if gold.startswith('$') else f'${gold}$'
    return bool(mv.verify(mv.parse(gold), mv.parse(completion)))
  except Exception:  # noqa: BLE001
    return False


def main():
  p = argparse.ArgumentParser()
  default = os.environ.get('R1JAX_DATA_DIR', str(Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data'))
  p.add_argument('--data_dir', default=default)
  p.add_argument('--n', type=int, default=None, help='answers per dataset (default: all)')
  p.add_argument('--no_reference', action='store_true', help='skip math-verify (faster)')
  args = p.parse_args()
  from r1jax.rewards import math as rmath
  rmath.set_inline_timeout(10.0)
  rmath.warm_up()
  corpus = build_corpus(args.data_dir, args.n)
  print(f'load average before: {os.getloadavg()}  corpus: {len(corpus)} pairs')
  stats = collections.defaultdict(lambda: [0, 0, 0, 0])   # n, ours correct, ref correct, agree
  t_ours = t_ref = 0.0
  misses = collections.defaultdict(list)
  for src, cls, comp, gold, label in corpus:
    t0 = time.monotonic()
    ours = rmath.verify(comp, gold)
    t_ours += time.monotonic() - t0
    ref = None
    if not args.no_reference:
      t0 = time.monotonic()
      ref = reference_verify(comp, gold)
      t_ref += time.monotonic() - t0
    for key in (('pos' if label else 'neg', cls), ('pos' if label else 'neg', '*')):
      st = stats[key]
      st[0] += 1
      st[1] += ours == label
      st[2] += ref == label if ref is not None else 0
      st[3] += ours == ref if ref is not None else 0
    if ours != label and len(misses[cls]) < 3:
      misses[cls].append((gold, comp))
  print(f'{"":4s} {"class":18s} {"n":>5s} {"r1jax":>7s} {"math-verify":>12s} {"agree":>6s}')
  for (kind, cls), (n, ours, ref, agree) in sorted(stats.items(), key=lambda kv: (kv[0][0] != 'pos', kv[0][1])):
    ref_s = f'{ref / n:12.3f}' if not args.no_reference else f'{"-":>12s}'
    agree_s = f'{agree / n:6.3f}' if not args.no_reference else f'{"-":>6s}'
    print(f'{kind:4s} {cls:18s} {n:5d} {ours / n:7.3f} {ref_s} {agree_s}')
  print(f'(pos: share of true equivalences accepted; neg: share of false ones rejected)')
  print(f'time: r1jax {t_ours:.1f}s, math-verify {t_ref:.1f}s; load average after: {os.getloadavg()}')
  for cls, ms in misses.items():
    for gold, comp in ms:
      print(f'  miss [{cls}] gold={gold!r} completion={comp[-80:]!r}')


if __name__ == '__main__':
  main()
