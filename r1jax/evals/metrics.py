"""Evaluation metrics over k sampled completions per problem: pass@1, cons@k, unbiased pass@k.

Pure host functions (no JAX). Every metric is a mean over problems of a per-problem score, reported
with its standard error across problems, SE = std(per-problem scores, ddof=1) / sqrt(P):

  pass@1   per problem: c / n, the mean correctness of its n samples (R1: n = k = 4..64 at T = 0.6).
  pass@k   per problem: the unbiased estimator 1 - C(n - c, k) / C(n, k) (Chen et al. 2021), in the
           numerically stable product form 1 - prod_{i = n-c+1..n} (1 - k / i).
  cons@n   per problem: 1 if the majority-voted extracted answer is correct. Equivalent answers
           (`1/2`, `0.5`, `\\frac{1}{2}`) vote together: answers are grouped by a cheap normal form
           first, then group representatives are merged when `r1jax.rewards.math` says they are
           equivalent. Ties go to the group whose first sample came first. Samples without an
           extracted answer do not vote; a problem where no sample has an answer scores 0.

The SE treats problems as the random unit; with one problem it is 0 (not defined), and it includes
the sampling noise of the n samples per problem because that noise is in the per-problem scores.
Code tasks have no answer to vote on: they report pass@1 / pass@k only.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import numpy as np

from r1jax.rewards import math as rmath

Equivalent = Callable[[str, str], bool]


# ---------------------------------------------------------------------------- pass@k


def pass_at_k(n: int, c: int, k: int) -> float:
  """Unbiased estimate of P(at least one of k samples is correct) from n samples with c correct.

  1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i) so large n never overflows.
  """
  n, c, k = int(n), int(c), int(k)
  if not 0 <= c <= n:
    raise ValueError(f'need 0 <= c <= n, got n={n}, c={c}')
  if not 1 <= k <= n:
    raise ValueError(f'need 1 <= k <= n, got n={n}, k={k}')
  if n - c < k:
    return 1.0   # every k-subset contains a correct sample
  return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def mean_and_se(values: Sequence[float]) -> tuple[float, float]:
  """Mean and standard error of the mean (ddof=1; 0 for fewer than two values, nan when empty)."""
  x = np.asarray(values, dtype=np.float64)
  if x.size == 0:
    return float('nan'), float('nan')
  if x.size == 1:
    return float(x[0]), 0.0
  return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))


def pass_at_k_metric(correct_by_problem: Sequence[Sequence[bool]], k: int) -> tuple[float, float]:
  """(mean, se) over problems of the unbiased pass@k; each problem needs at least k samples."""
  scores = [pass_at_k(len(c), int(np.sum(np.asarray(c, bool))), k) for c in correct_by_problem]
  return mean_and_se(scores)


# ---------------------------------------------------------------------------- majority vote


def answer_key(answer: Optional[str]) -> Optional[str]:
  """Cheap normal form for grouping answers: exact rationals for plain numbers, else LaTeX-stripped text."""
  if answer is None:
    return None
  answer = str(answer).strip()
  if not answer:
    return None
  num = rmath.to_number(answer)
  if num is not None:
    return f'#{num.numerator}/{num.denominator}'
  norm = rmath._strip_wrappers(answer)  # pylint: disable=protected-access  (the verifier's own cosmetics)
  return norm or answer


def math_equivalent(a: str, b: str) -> bool:
  """Whether two extracted answers are mathematically equivalent (either direction of the verifier)."""
  return rmath.answers_match(a, b) or rmath.answers_match(b, a)


def group_answers(answers: Sequence[Optional[str]], equivalent: Optional[Equivalent] = math_equivalent
                  ) -> list[list[int]]:
  """Clusters of sample indices with equivalent answers, ordered by their first sample.

  Step 1 groups by `answer_key` (free). Step 2 merges groups whose representatives (first samples)
  are `equivalent`; two plain numbers never need it (their keys are exact rationals), so the costly
  verifier only runs on pairs involving a symbolic answer. `equivalent=None` skips step 2.
  """
  groups: dict[str, list[int]] = {}
  for i, a in enumerate(answers):
    key = answer_key(a)
    if key is not None:
      groups.setdefault(key, []).append(i)
  clusters: list[tuple[str, list[int]]] = []   # (representative key, members)
  for key, members in groups.items():          # dicts keep insertion order: by first sample
    target = None
    if equivalent is not None:
      rep = str(answers[members[0]]).strip()
      for ckey, cmembers in clusters:
        if key.startswith('#') and ckey.startswith('#'):
          continue   # distinct exact numbers are never equivalent
        try:
          same = equivalent(str(answers[cmembers[0]]).strip(), rep)
        except Exception:  # noqa: BLE001 - a verifier failure means "not shown equivalent"
          same = False
        if same:
          target = cmembers
          break
    if target is None:
      clusters.append((key, list(members)))
    else:
      target.extend(members)
  return [sorted(m) for _, m in sorted(clusters, key=lambda kv: min(kv[1]))]


def majority_vote(answers: Sequence[Optional[str]], equivalent: Optional[Equivalent] = math_equivalent
                  ) -> Optional[int]:
  """Index of the sample representing the majority answer (the earliest sample of the largest
  cluster; ties go to the cluster whose first sample is earliest), or None when nothing voted."""
  clusters = group_answers(answers, equivalent)
  if not clusters:
    return None
  best = max(clusters, key=lambda m: (len(m), -m[0]))
  return best[0]


def consensus_correct(answers: Sequence[Optional[str]], correct: Sequence[bool],
                      equivalent: Optional[Equivalent] = math_equivalent) -> bool:
  """cons@n of one problem: whether the majority answer's sample was verified correct."""
  winner = majority_vote(answers, equivalent)
  return bool(correct[winner]) if winner is not None else False


# ---------------------------------------------------------------------------- summary


def summarize(problems: Sequence[dict[str, Any]], pass_ks: Sequence[int] = (1,),
              equivalent: Optional[Equivalent] = math_equivalent) -> dict[str, float]:
  """Benchmark metrics from per-problem samples.

  Args:
    problems: one dict per problem with `correct` (n bools) and, for voting, `answers` (n extracted
      answers or None), `votable` (False for code: no cons@n for that problem), `exact_vote` (True:
      group by normal form only, e.g. Countdown equations) or a precomputed `cons` (bool).
    pass_ks: the k of pass@k to report (those larger than the smallest n are skipped).
    equivalent: answer equivalence for the vote (`None`: normal-form keys only).

  Returns:
    `pass@1`, `pass@1_se`, `pass@{k}`, `pass@{k}_se`, `cons@{n}`, `cons@{n}_se` (n = samples per
    problem, the smallest when they differ; only when some problem is votable), `num_problems`,
    `num_samples` (per problem), `num_voted` (problems in cons@n).
  """
  out: dict[str, float] = {'num_problems': float(len(problems))}
  if not problems:
    return out
  correct = [np.asarray(p['correct'], bool) for p in problems]
  n_min = min(len(c) for c in correct)
  if n_min == 0:
    raise ValueError('every problem needs at least one sample')
  out['num_samples'] = float(n_min)
  for k in sorted({1, *[int(k) for k in pass_ks]}):
    if k > n_min:
      continue
    out[f'pass@{k}'], out[f'pass@{k}_se'] = pass_at_k_metric(correct, k)
  voted = [p for p in problems if p.get('votable', True) and
           (p.get('cons') is not None or p.get('answers') is not None)]
  if voted:
    scores = [float(p['cons']) if p.get('cons') is not None else
              float(consensus_correct(p['answers'], p['correct'],
                                      None if p.get('exact_vote') else equivalent))
              for p in voted]
    out[f'cons@{n_min}'], out[f'cons@{n_min}_se'] = mean_and_se(scores)
    out['num_voted'] = float(len(voted))
  return out
