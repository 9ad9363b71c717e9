"""R1's readability filters and the explicit choice among correct samples."""
import collections

import numpy as np
import pytest

from r1jax.evals import curation

F = curation.CurationFilters(max_paragraph_words=12)


@pytest.mark.parametrize('cot,target,reason', [
    ('We add three and four to get seven.', 'en', None),
    ('12 + 7 = 19, 19 * 2 = 38', 'en', None),                                  # no words: not mixed
    ('首先我们计算两个数的和, then we multiply by three to get the answer.', 'en', 'language'),
    ('We add 3 and 4, donc la réponse est bien sept.', 'en', 'language'),
    ("On additionne d'abord les deux nombres.", 'fr', None),
    ('one two three four five six seven eight nine ten eleven twelve thirteen', 'en', 'paragraph'),
    ('one two three four five six\n\nseven eight nine ten eleven twelve thirteen', 'en', None),
    ('We run it:\n```python\nprint(1)\n```\nand read the output.', 'en', 'code_blocks'),
])
def test_cot_rejection(cot, target, reason):
  assert curation.cot_rejection(cot, F, target) == reason


def test_filters_can_be_turned_off():
  off = curation.CurationFilters(min_language_share=0.0, max_code_blocks=-1)
  assert curation.cot_rejection('We run ```x``` 我们', off, 'en') is None
  assert curation.paragraph_words('a b\n  \nthe cat sat') == [0, 3]   # single ASCII letters are variables
  with pytest.raises(ValueError):
    curation.CurationFilters(min_language_share=2.0)


def test_choose_rules():
  lengths = [50, 10, 30, 10, 70]
  cands = [0, 2, 3, 4]
  assert curation.choose(cands, lengths, 'shortest', 2) == [3, 2]
  assert curation.choose(cands, lengths, 'first', 2) == [0, 2]
  assert curation.choose(cands, lengths, 'all', 1) == cands
  assert curation.choose([], lengths, 'random', 1) == []
  with pytest.raises(ValueError):
    curation.choose(cands, lengths, 'longest')
  # random: uniform over candidates (no length bias), deterministic per (seed, prompt id)
  picks = collections.Counter(curation.choose(cands, lengths, 'random', 1, curation.prompt_rng(0, i))[0]
                              for i in range(4000))
  assert set(picks) == set(cands)
  assert max(picks.values()) / min(picks.values()) < 1.25
  assert (curation.choose(cands, lengths, 'random', 2, curation.prompt_rng(3, 'p7')) ==
          curation.choose(cands, lengths, 'random', 2, curation.prompt_rng(3, 'p7')))


def test_language_mixing_rate_targets_from_questions():
  cots = ['We add three and four.', 'We add 3 and 4, donc la réponse est bien sept.',
          "On additionne d'abord les deux nombres.", '3 + 4 = 7']
  qs = ['What is 3 + 4?', 'What is 3 + 4?', 'Combien font 3 et 4 ?', 'What is 3 + 4?']
  assert curation.language_mixing_rate(cots, qs) == pytest.approx(0.25)
  assert curation.language_mixing_rate(cots, qs, targets=['en'] * 4) == pytest.approx(0.5)
  assert curation.target_for({'question': 'Combien font 3 et 4 ?'}) == 'fr'
  assert curation.target_for({'question': 'x', 'target_language': 'de'}) == 'de'
  assert np.isclose(curation.language_mixing_rate([], []), 0.0)


def test_reflection_flags_whole_words_any_case():
  texts = ['3 plus 4 is 8, wait, let me check, 3 plus 4 is 7.', 'Wait. 3 + 4 = 7', 'let  me\ncheck',
           'awaited; waiting; let me checkout', '', None]
  assert curation.reflection_flags(texts).tolist() == [True, True, True, False, False, False]
  assert curation.reflection_rate(texts) == pytest.approx(0.5)
  assert curation.reflection_flags(texts, ('hmm',)).tolist() == [False] * 6
  assert curation.reflection_flags(['Hmm, so'], ('hmm',)).tolist() == [True]
  assert curation.reflection_flags(texts, ()).tolist() == [False] * 6      # no phrases: off
  assert curation.reflection_rate([]) == 0.0


def test_cot_flags_score_the_chain_of_thought_only():
  q = 'Compute 3 + 4 * 2.'
  comps = ['<think> 4 times 2 is 8, then 3 plus 8 is 11. </think> <answer> 11 </answer>',
           '<think> 4 times 2 is 8, 然后 3 加 8 得 11. </think> <answer> 11 </answer>',
           '<think> 4 times 2 is 9, wait, let me check, 4 times 2 is 8, then 3 plus 8 is 11. </think>',
           '<think> 4 * 2 = 8. 3 + 8 = 11. </think> <answer> 11 </answer> 然后 wait',   # after the CoT
           '4 times 2 is 8, 然后 3 加 8 得 11 wait']                                      # no tags: all CoT
  flags = curation.cot_flags(comps, [q] * len(comps))
  assert flags['mixed'].tolist() == [False, True, False, False, True]
  assert flags['reflection'].tolist() == [False, False, True, False, True]
  # The same flags as the evaluator's language_mixing_rate and the language reward's is_mixed.
  from r1jax.rewards.format import think_text
  assert flags['mixed'].mean() == pytest.approx(
      curation.language_mixing_rate([think_text(c) for c in comps], [q] * len(comps)))
  # An explicit target wins over the question's language.
  assert curation.cot_flags(comps[:1], [q], targets=['zh'])['mixed'].tolist() == [True]
