"""Language consistency: the share of CoT words in the target script."""
import pytest

from r1jax.rewards import language as rlang


def test_scripts_counted():
  c = rlang.script_word_counts('Hello world 你好 안녕하세요 привет мир مرحبا')
  assert c['latin'] == 2 and c['han'] == 2 and c['hangul'] == 1 and c['cyrillic'] == 2 and c['arabic'] == 1


@pytest.mark.parametrize('text,target,share', [
    ('Let us compute the sum', 'en', 1.0),
    ('我们 计算', 'zh', 1.0),
    ('first 我们', 'en', 1 / 3),
    ('Let 我们 compute', 'zh', 0.5),
    ('답은 42 입니다', 'ko', 1.0),
    ('Итак answer', 'ru', 0.5),
    ('$\\frac{1}{2} + \\sqrt{3}$ = 2', 'en', 0.0),   # LaTeX and numbers are not words
    ('', 'en', 0.0),
])
def test_language_share(text, target, share):
  assert rlang.language_share(text, target) == pytest.approx(share)


def test_reward_scopes_think_and_per_example_targets():
  comps = ['<think>we compute 我们</think><answer>中文答案</answer>', '<think>我们计算</think><answer>x</answer>']
  r = rlang.language_reward(comps, target_language=['en', 'zh'])
  assert r.tolist() == pytest.approx([2 / 4, 1.0])
  r_all = rlang.language_reward(comps, target_language='en', scope='all')
  assert r_all[0] < r[0]
  with pytest.raises(ValueError):
    rlang.language_share('x', 'klingon')
