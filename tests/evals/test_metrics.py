"""Evaluation metrics against hand-computed values on a fixed set of samples."""
import itertools
import math

import numpy as np
import pytest

from r1jax.evals import metrics as M


def _brute_pass_at_k(correct, k):
  """P(a uniformly random k-subset of the n samples contains a correct one), by enumeration."""
  subsets = list(itertools.combinations(range(len(correct)), k))
  return sum(any(correct[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize('n', [1, 2, 5, 8])
def test_pass_at_k_matches_enumeration(n):
  for c in range(n + 1):
    correct = [True] * c + [False] * (n - c)
    for k in range(1, n + 1):
      assert M.pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(correct, k), abs=1e-12)
      assert M.pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k))


def test_pass_at_k_stable_for_large_n():
  # C(1000, 500) overflows floats; the product form does not.
  v = M.pass_at_k(1000, 3, 500)
  assert v == pytest.approx(1 - (500 * 499 * 498) / (1000 * 999 * 998), rel=1e-12)
  assert M.pass_at_k(1000, 0, 500) == 0.0
  assert M.pass_at_k(10, 6, 5) == 1.0
  with pytest.raises(ValueError):
    M.pass_at_k(4, 1, 5)
  with pytest.raises(ValueError):
    M.pass_at_k(4, 5, 1)


def test_mean_and_se():
  assert M.mean_and_se([1.0]) == (1.0, 0.0)
  mean, se = M.mean_and_se([0.0, 0.5, 1.0])
  assert mean == pytest.approx(0.5)
  assert se == pytest.approx(0.5 / math.sqrt(3))   # std(ddof=1) = 0.5
  assert all(math.isnan(v) for v in M.mean_and_se([]))


def test_answer_key_groups_equal_numbers():
  keys = {M.answer_key(a) for a in ['1/2', '0.5', '\\frac{1}{2}', '\\dfrac{1}{2}', '$0.50$']}
  assert keys == {'#1/2'}
  assert M.answer_key('1,000') == M.answer_key('1000')
  assert M.answer_key(None) is None and M.answer_key('  ') is None
  assert M.answer_key('x^2 + 1') == 'x^2+1'


def test_majority_vote_counts_equivalent_answers_together():
  # '1/2', '0.5', '\frac{1}{2}' are one answer (3 votes) and beat '3' (2 votes), though '3' is
  # the most frequent *string*.
  answers = ['3', '1/2', '3', '0.5', '\\frac{1}{2}', None]
  clusters = M.group_answers(answers)
  assert clusters == [[0, 2], [1, 3, 4]]
  assert M.majority_vote(answers) == 1
  # Symbolic equivalence goes through the verifier (math-verify), not just the normal form.
  answers = ['\\sqrt{2}/2', '\\frac{\\sqrt{2}}{2}', '1']
  assert M.group_answers(answers) == [[0, 1], [2]]
  assert M.group_answers(answers, equivalent=None) == [[0], [1], [2]]


def test_majority_vote_ties_and_empty():
  assert M.majority_vote(['5', '7', '7', '5']) == 0        # 2-2 tie: the earliest cluster wins
  assert M.majority_vote(['7', '5', '5', '7']) == 0
  assert M.majority_vote(['4', '5', '6']) == 0
  assert M.majority_vote([None, None]) is None
  assert M.consensus_correct([None, None], [False, False]) is False
  assert M.consensus_correct([None, '2', None], [False, True, False]) is True


def test_summarize_hand_computed():
  # Three problems, n = 4 samples each.
  problems = [
      # correct 2/4; vote: {1/2, 0.5} (2 correct votes) vs {3} (1) vs None -> cons correct.
      dict(correct=[True, False, True, False], answers=['1/2', '3', '0.5', None]),
      # correct 1/4; vote: '7' x3 (wrong) beats '2' -> cons wrong.
      dict(correct=[False, False, True, False], answers=['7', '7', '2', '7']),
      # correct 4/4 -> cons correct.
      dict(correct=[True] * 4, answers=['x+1', '1+x', 'x + 1', '1 + x']),
  ]
  s = M.summarize(problems, pass_ks=(1, 2, 4))
  p1 = [0.5, 0.25, 1.0]
  assert s['pass@1'] == pytest.approx(np.mean(p1))
  assert s['pass@1_se'] == pytest.approx(np.std(p1, ddof=1) / math.sqrt(3))
  p2 = [1 - math.comb(2, 2) / math.comb(4, 2), 1 - math.comb(3, 2) / math.comb(4, 2), 1.0]
  assert p2 == pytest.approx([5 / 6, 0.5, 1.0])
  assert s['pass@2'] == pytest.approx(np.mean(p2))
  assert s['pass@2_se'] == pytest.approx(np.std(p2, ddof=1) / math.sqrt(3))
  assert s['pass@4'] == pytest.approx(np.mean([1.0, 1.0, 1.0]))
  assert s['pass@4_se'] == 0.0
  cons = [1.0, 0.0, 1.0]
  assert s['cons@4'] == pytest.approx(2 / 3)
  assert s['cons@4_se'] == pytest.approx(np.std(cons, ddof=1) / math.sqrt(3))
  assert s['num_problems'] == 3 and s['num_samples'] == 4 and s['num_voted'] == 3


def test_summarize_code_has_no_cons_and_skips_large_k():
  problems = [dict(correct=[True, False], answers=None, votable=False),
              dict(correct=[False, False], answers=None, votable=False)]
  s = M.summarize(problems, pass_ks=(1, 2, 8))
  assert s['pass@1'] == pytest.approx(0.25)
  assert s['pass@2'] == pytest.approx(0.5)
  assert 'pass@8' not in s
  assert not any(k.startswith('cons') for k in s)


def test_summarize_exact_vote_and_precomputed():
  # Countdown equations vote by normal form only: '1+2' and '2+1' are different answers.
  p = dict(correct=[True, True, False, False], answers=['1+2', '2+1', '4-1', '4-1'],
           exact_vote=True)
  assert M.summarize([p])['cons@4'] == 0.0
  assert M.summarize([dict(correct=[True], cons=True)])['cons@1'] == 1.0
