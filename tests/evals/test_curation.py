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
