"""R1 format rewards: strict, soft, tag counts, prompt_opens_think."""
import numpy as np
import pytest

from r1jax.rewards import format as rformat

GOOD = '<think>\nreason\n</think>\n<answer>\n42\n</answer>'


@pytest.mark.parametrize('text,strict,soft', [
    (GOOD, True, True),
    ('  ' + GOOD + '\n', True, True),
    ('<think>r</think><answer>4</answer>', True, True),
    ('preamble ' + GOOD, False, True),
    (GOOD + ' trailing', False, True),
    ('<think></think><answer>4</answer>', False, True),
    ('<think>r</think><answer> </answer>', False, True),
    ('<think>r</think><think>s</think><answer>4</answer>', False, True),
    ('<answer>4</answer><think>r</think>', False, False),
    ('<think>r</think> 42', False, False),
    ('<think>r<answer>4</answer></think>', False, False),
    ('<think>r</think><answer>4', False, False),
    ('', False, False),
])
def test_strict_and_soft(text, strict, soft):
  assert rformat.is_strict_format(text) is strict
  assert rformat.is_soft_format(text) is soft


def test_prompt_opens_think():
  completion = 'reasoning here</think><answer>4</answer>'
  assert not rformat.is_strict_format(completion)
  assert rformat.is_strict_format(completion, prompt_opens_think=True)
  assert rformat.tag_count_score(completion, prompt_opens_think=True) == 1.0
  # Re-opening <think> after the template already did is a mistake.
  assert not rformat.is_strict_format('<think>' + completion, prompt_opens_think=True)
  assert rformat.tag_count_score('<think>' + completion, prompt_opens_think=True) == 0.75


def test_without_answer_tags():
  assert rformat.is_strict_format('<think>r</think>\nThe answer is 4.', require_answer_tag=False)
  assert not rformat.is_strict_format('<think>r</think>\n', require_answer_tag=False)
  assert rformat.is_strict_format('r</think>\n4', prompt_opens_think=True, require_answer_tag=False)


@pytest.mark.parametrize('text,score', [
    (GOOD, 1.0), ('<think>r</think>', 0.5), ('<think><think></think>', 0.25), ('nothing', 0.0),
    ('<think>a</think><answer>1</answer><answer>2</answer>', 0.5),
])
def test_tag_count(text, score):
  assert rformat.tag_count_score(text) == score


def test_batched_rewards_and_think_text():
  comps = [GOOD, 'x', None]
  assert rformat.format_reward(comps).tolist() == [1.0, 0.0, 0.0]
  assert rformat.format_soft_reward(comps).dtype == np.float32
  assert rformat.tag_count_reward(comps).tolist() == [1.0, 0.0, 0.0]
  assert rformat.think_text(GOOD).strip() == 'reason'
  assert rformat.think_text('abc</think>x') == 'abc'
  assert rformat.think_text('<think>open ended') == 'open ended'


def test_summary_text_and_strict_format_with_a_summary():
  """R1's cold-start format: a readable summary between the reasoning and the answer tag."""
  readable = "<think> 4 * 2 = 8. 3 + 8 = 11. </think> 3 + 4 * 2 = 11. <answer> 11 </answer>"
  zero = "<think> 4 * 2 = 8. 3 + 8 = 11. </think> <answer> 11 </answer>"
  def besides(t):
    return rformat.summary_text(t, keep_answer=False)
  assert besides(readable) == "3 + 4 * 2 = 11."
  assert besides(zero) == "" and besides("no tags") == "" and besides(None) == ""
  assert besides("<think> a </think> The answer is 7.") == "The answer is 7."
  assert besides("<think> a </think> so <answer> 7") == "so"      # unclosed answer
  # The helpfulness view keeps the answer's content (r1jax.rewards.general.summary_text).
  assert rformat.summary_text(readable) == "3 + 4 * 2 = 11.  11"
  assert rformat.summary_text("7 </think> x", prompt_opens_think=True) == "x"
  # Strict R1-Zero format rejects the summary unless it is allowed; the tags stay strict.
  assert not rformat.is_strict_format(readable)
  assert rformat.is_strict_format(readable, allow_summary=True)
  assert rformat.is_strict_format(zero, allow_summary=True)
  for bad in (readable + " more", readable.replace("</think>", ""),
              readable.replace("<answer> 11", "<answer> 1 <answer> 11"),
              "<think> </think> s <answer> 1 </answer>", "<think> a </think> s <answer> </answer>"):
    assert not rformat.is_strict_format(bad, allow_summary=True), bad
