"""Language consistency: the share of CoT words in the target language (script per word, py3langid within one)."""
import json
import os

import numpy as np
import pytest

from r1jax.rewards import language as rlang


def test_scripts_counted():
  c = rlang.script_word_counts('Hello world 你好 안녕하세요 привет мир مرحبا x = 3')
  assert c['latin'] == 2 and c['han'] == 2 and c['hangul'] == 1 and c['cyrillic'] == 2 and c['arabic'] == 1


@pytest.mark.parametrize('text,target,share', [
    ('Let us compute the sum', 'en', 1.0),
    ('我们 计算', 'zh', 1.0),
    ('first 我们', 'en', 1 / 3),
    ('Let 我们 compute', 'zh', 0.5),
    ('답은 42 입니다', 'ko', 1.0),
    ('Итак answer', 'ru', 0.5),
    ('$\\frac{1}{2} + \\sqrt{3}$ = 2', 'en', 0.0),   # LaTeX and numbers are not words
    ('设 x 为苹果的数量，则 2x + 3 = 11，所以 x = 4。', 'zh', 1.0),   # math variables are not words
    ('', 'en', 0.0),
])
def test_language_share_by_script(text, target, share):
  assert rlang.language_share(text, target) == pytest.approx(share)


# Real mixed text: (CoT, target, expected word counts per language).
MIXED = [
    # English / Chinese, switching inside one sentence.
    ('首先我们计算两个数的和, then we multiply by three to get the answer.', 'en', {'zh': 11, 'en': 9}),
    # English / Korean.
    ('먼저 두 수의 합을 계산합니다. Then we multiply the result by three.', 'ko', {'ko': 5, 'en': 7}),
    # English / French, sentence level: the same script, told apart by the identifier. The one-word clause
    # 'Ensuite' is too short to identify and gets the benefit of the doubt (counted as the target).
    ('First we compute the sum. Ensuite, on multiplie le résultat par trois pour obtenir la réponse.', 'en',
     {'en': 6, 'fr': 10}),
    # Code-switching mid-sentence, both directions.
    ('We add 3 and 4, donc la réponse est bien sept.', 'en', {'en': 3, 'fr': 6}),
    ('Wir addieren zuerst beide Zahlen, and then we divide the total by two.', 'en', {'de': 5, 'en': 8}),
]


@pytest.mark.parametrize('text,target,counts', MIXED)
def test_mixed_text_word_languages(text, target, counts):
  assert rlang.word_languages(text, target) == counts
  assert rlang.language_share(text, target) == pytest.approx(counts[target] / sum(counts.values()))
  assert rlang.is_mixed(text, target)


@pytest.mark.parametrize('text,lang', [
    ("Calculons d'abord la somme des deux nombres. Ensuite on multiplie par trois.", 'fr'),
    ('Primero calculamos la suma de los dos números.', 'es'),
    ('Berechnen wir zuerst die Summe der beiden Zahlen.', 'de'),
    ('Let x be the number of apples. Then 2x + 3 = 11, so x = 4.', 'en'),
    ('Wait, let me check this again. Hmm, ok so the answer is 4.', 'en'),
])
def test_monolingual_text_is_consistent(text, lang):
  assert rlang.language_share(text, lang) == 1.0
  assert not rlang.is_mixed(text, lang)
  assert rlang.detect_language(text) == lang


@pytest.mark.parametrize('question,lang', [
    ('What is the sum of 3 and 4?', 'en'),
    ('Quelle est la somme de 3 et de 4 ?', 'fr'),
    ('3와 4의 합은 무엇입니까?', 'ko'),
    ('3 和 4 的和是多少？', 'zh'),
    ('3と4の和はいくつですか？', 'ja'),
    ('Сколько будет три плюс четыре?', 'ru'),
    ('12 + 7 = ?', 'en'),   # no words: the default
])
def test_detect_language_of_questions(question, lang):
  assert rlang.detect_language(question) == lang


def test_reward_targets_from_field_or_question():
  comps = ['<think>we compute 我们</think><answer>中文答案</answer>', '<think>我们计算</think><answer>x</answer>',
           "<think>On additionne d'abord les deux nombres entre eux.</think><answer>7</answer>",
           "<think>On additionne d'abord les deux nombres entre eux.</think><answer>7</answer>"]
  r = rlang.language_reward(comps, target_language=['en', 'zh', 'auto', None],
                            question=['q', 'q', 'Quelle est la somme de 3 et 4 ?', 'What is 3 plus 4?'])
  assert r.tolist() == pytest.approx([2 / 4, 1.0, 1.0, 0.0])
  r_all = rlang.language_reward(comps[:1], target_language='en', scope='all')
  assert r_all[0] < r[0]
  # unknown targets score 0 in the reward (never raise in training) but are an error in the library call
  assert rlang.language_reward(comps[:1], target_language='klingon').tolist() == [0.0]
  with pytest.raises(ValueError):
    rlang.language_share('x', 'klingon')
  # a per-row field shorter than the batch is a bug upstream, not rows that silently score 0
  with pytest.raises(ValueError, match='4 completions but 3 target languages'):
    rlang.language_reward(comps, target_language=['en', 'zh', 'en'])


def test_mixing_rate():
  cots = [MIXED[0][0], 'Let us compute the sum of both numbers.', '12 + 7 = 19']
  assert rlang.mixing_rate(cots, ['en'] * 3) == pytest.approx(1 / 3)


@pytest.mark.skipif(not os.path.exists('/work/shared/data/gsm8k/test.jsonl'), reason='needs the GSM8K data')
def test_no_false_mixing_on_real_english_solutions():
  """Precision on real English reasoning: GSM8K and MATH-500 reference solutions are not flagged as mixed."""
  texts = [json.loads(l)['answer'] for l in open('/work/shared/data/gsm8k/test.jsonl', encoding='utf-8')][:400]
  if os.path.exists('/work/shared/data/math500/test.jsonl'):
    texts += [json.loads(l)['solution'] for l in open('/work/shared/data/math500/test.jsonl', encoding='utf-8')]
  assert rlang.mixing_rate(texts, ['en'] * len(texts)) == 0.0
  shares = np.array([rlang.language_share(t, 'en') for t in texts if rlang.script_word_counts(t)['latin']])
  assert shares.min() >= 0.95


def test_detected_target_of_real_and_procedural_questions_is_english():
  """'auto' targets: every GSM8K / MATH-500 question and every procedural arithmetic question ('Compute 3 - 1.',
  one word: too few to identify, so the default) is English."""
  from r1jax.data import procedural
  qs = [r['question'] for r in procedural.arithmetic_dataset('train', 100, seed=0)]
  for name, field in (('gsm8k', 'question'), ('math500', 'problem')):
    path = f'/work/shared/data/{name}/test.jsonl'
    if os.path.exists(path):
      qs += [json.loads(l)[field] for l in open(path, encoding='utf-8')][:300]
  assert {rlang.detect_language(q) for q in qs} == {'en'}


def test_long_text_is_estimated_from_a_bounded_sample():
  """Past 2048 clauses the share is estimated on evenly spaced clauses: bounded work, close to the exact share."""
  en, fr = 'We add all the numbers together now. ', "On additionne d'abord les nombres entre eux. "
  text = (en * 3 + fr) * 20_000                      # 80k clauses; exact share 21 / 28 by words
  exact = 21 / (21 + 7)
  assert rlang.language_share(text, 'en') == pytest.approx(exact, abs=0.03)
  assert sum(rlang.script_word_counts(text).values()) == 28 * 20_000   # counting stays exact


# ---- speed-ups must not change a decision ----
def _reference_runs(text):
  """The word-by-word rule the fast paths in `_runs` must reproduce: every word of a clause, one at a time."""
  runs = []
  for clause in rlang._clauses(text):
    cur = None
    for m in rlang._WORD_RE.finditer(clause):
      if m.lastgroup == 'latin' and len(m.group()) == 1 and m.group().isascii():
        continue
      if cur and cur[0] == m.lastgroup:
        cur[2], cur[3] = m.end(), cur[3] + 1
      else:
        if cur:
          runs.append((cur[0], clause[cur[1]:cur[2]], cur[3]))
        cur = [m.lastgroup, m.start(), m.end(), 1]
    if cur:
      runs.append((cur[0], clause[cur[1]:cur[2]], cur[3]))
  return runs


RUN_TEXTS = [t for t, *_ in MIXED] + [
    'x + y = 3, so a b c we get z and q', 'We get x', 'x we get', 'Итак x равно y и всё', '设 x 为苹果的数量，则 2x + 3 = 11',
    '3と4の和はいくつですか', 'Zuerst addieren wir die Zahlen. 그래서 답은 7입니다', 'مرحبا بالعالم كيف حالك', 'é x à b',
    '我们 a 计算 bc 结果', 'Сколько будет три плюс четыре', '1 + 2 = 3', '']


@pytest.mark.parametrize('text', RUN_TEXTS)
def test_fast_runs_equal_the_word_by_word_rule(text):
  assert rlang._runs(text) == _reference_runs(text)


@pytest.mark.parametrize('text,candidates', [
    ('Ensuite on multiplie le résultat par trois', rlang.SCRIPT_LANGUAGES['latin']),
    ('then we multiply the result by three', rlang.SCRIPT_LANGUAGES['latin']),
    ('Wir addieren zuerst beide Zahlen', rlang.SCRIPT_LANGUAGES['latin']),
    ('Сколько будет три плюс четыре', rlang.SCRIPT_LANGUAGES['cyrillic']),
    ('zzz', ('en', 'fr')),
])
def test_identifier_restricted_to_candidates_equals_full_model_renormalised(text, candidates):
  ranked = [(l, p) for l, p in rlang._identifier().rank(text) if l in candidates]
  total = sum(p for _, p in ranked)
  lang, p = rlang.identify(text, candidates)
  assert lang == ranked[0][0] and p == pytest.approx(ranked[0][1] / total, rel=1e-4, abs=1e-6)


def test_language_reward_in_the_pool_equals_inline():
  """The reward runs in the reward pool's workers (like math-verify), with the same results as inline."""
  from r1jax.rewards import build_reward_system, registry
  assert registry.get('language').pooled
  comps = [f'<think>{t}</think><answer>7</answer>' for t in RUN_TEXTS] * 2
  qs = (['What is the sum of 3 and 4?', 'Quelle est la somme de 3 et de 4 ?', '3 和 4 的和是多少？'] * 20)[:len(comps)]
  targets = ((['auto'] * 5 + ['fr', 'zh', 'ko']) * 8)[:len(comps)]
  fields = {'question': qs, 'target_language': targets}
  inline = rlang.language_reward(comps, **fields)
  assert 0 < inline.mean() < 1 and len(set(inline.tolist())) > 3
  with build_reward_system({'weights': {'language': 1.0}, 'num_workers': 2}) as system:
    assert system.pool is not None and system.pool.warmups == (rlang.warm_up,)
    res = system.score(comps, fields)
  assert res.statuses['language'] == ['ok'] * len(comps)
  np.testing.assert_array_equal(res.components['language'], inline)
  with build_reward_system({'weights': {'language': 1.0}, 'num_workers': 0}) as system:
    np.testing.assert_array_equal(system.score(comps, fields).components['language'], inline)
