"""Prompt templates and the <think> trap."""
import pytest

from r1jax.data.templates import R1_ZERO_SYSTEM, get_template, list_templates

PAPER = ('A conversation between User and Assistant. The user asks a question, and the Assistant '
         'solves it. The assistant first thinks about the reasoning process in the mind and then '
         'provides the user with the answer. The reasoning process and answer are enclosed '
         'within <think> </think> and <answer> </answer> tags, respectively, i.e., <think> '
         'reasoning process here </think> <answer> answer here </answer>. User: {prompt}. '
         'Assistant:')


def test_r1_zero_is_the_paper_template():
  t = get_template('r1_zero')
  assert t.render_prompt('Compute 2 + 3') == PAPER.format(prompt='Compute 2 + 3')
  # No 'Why?.': a question that already ends a sentence keeps its own punctuation.
  assert t.render_prompt('What is 2 + 3?').endswith('User: What is 2 + 3? Assistant:')
  assert not t.prompt_opens_think and t.answer_tags and not t.includes_bos
  assert t.render_completion('2 + 3 = 5.', '5') == (
      '<think> 2 + 3 = 5. </think> <answer> 5 </answer>')
  assert t.render_prompt('q', system='Be brief.') == 'Be brief. User: q. Assistant:'
  assert R1_ZERO_SYSTEM in t.render_prompt('q')


def test_cold_start_format_and_separator():
  t = get_template('r1_cold_start')
  assert t.render_completion('I add.', summary='The answer is 5.') == (
      '<think>\nI add.\n</think>\nThe answer is 5.')
  paper = get_template('r1_cold_start', think_open='|special_token|',
                       think_close='|special_token|')
  assert paper.render_completion('reasoning', summary='summary') == (
      '|special_token|\nreasoning\n|special_token|\nsummary')
  with pytest.raises(ValueError):
    t.render_completion('x')


def test_chat_templates():
  q = get_template('qwen2.5').render_prompt('Hi?')
  assert q == ('<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful '
               'assistant.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n')
  assert get_template('chatml').render_prompt('Hi?') == (
      '<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n')
  assert 'Please reason step by step' in get_template('qwen2.5_math').render_prompt('x')
  assert get_template('qwen2.5').render_completion('r', 'a', close_turn=True).endswith(
      '<|im_end|>')
  l3 = get_template('llama3')
  assert l3.includes_bos and l3.render_prompt('Hi', system='S') == (
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>'
      '<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>'
      '<|start_header_id|>assistant<|end_header_id|>\n\n')


def test_r1_distill_opens_think():
  t = get_template('r1_distill')
  p = t.render_prompt('What is 1 + 1?')
  assert p == '<｜begin▁of▁sentence｜><｜User｜>What is 1 + 1?<｜Assistant｜><think>\n'
  assert t.prompt_opens_think and t.includes_bos
  assert t.response_prefix == '<think>\n'
  c = t.render_completion('1 + 1 = 2', summary='\\boxed{2}')
  assert '<think>' not in c and c.startswith('1 + 1 = 2\n</think>')
  assert t.full_response(c) == '<think>\n1 + 1 = 2\n</think>\n\n\\boxed{2}'


@pytest.mark.parametrize('name', list_templates())
def test_think_trap_is_declared_consistently(name):
  """prompt_opens_think <=> the prompt ends inside <think> and the completion does not open it."""
  t = get_template(name)
  prompt = t.render_prompt('Q')
  completion = t.render_completion('R', 'A')
  full = t.full_response(completion)
  assert full.count(t.think_open) == 1 and full.count(t.think_close) == 1
  assert full.index(t.think_open) < full.index(t.think_close)
  if t.prompt_opens_think:
    assert prompt.endswith(t.response_prefix) and t.think_open not in completion
  else:
    assert t.response_prefix == '' and t.think_open in completion
    assert not prompt.rstrip().endswith(t.think_open)


def test_registry():
  assert {'r1_zero', 'r1_cold_start', 'chatml', 'llama3', 'r1_distill'} <= set(list_templates())
  with pytest.raises(KeyError, match='Unknown template'):
    get_template('nope')
  t = get_template('r1_distill', question_format='{question}\nBe brief.')
  assert 'Q\nBe brief.<｜Assistant｜>' in t.render_prompt('Q')
  assert get_template(t) is t
  assert 'Q{x}' in get_template('chatml').render_prompt('Q{x}')  # braces in questions are safe
