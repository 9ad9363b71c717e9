"""Prompt templates: R1-Zero, the R1 cold-start output format, ChatML, Llama 3, R1-Distill.

A `Template` renders a question into prompt text (`render_prompt`) and a worked solution into
the completion the model should produce (`render_completion`, the SFT target).

The `<think>` trap: R1-Distill (and `r1_zero_open_think`) prompts already end with `<think>`,
so the model's completion starts inside the reasoning and only contains `</think>`. Such
templates say `prompt_opens_think=True`, and `response_prefix` is the text the prompt opened;
`template.full_response(completion)` puts it back before a format reward looks for
`<think>...</think>`.

  t = get_template('r1_zero')
  t.render_prompt('What is 2 + 3?')
  t.render_completion(reasoning='2 + 3 = 5.', answer='5')
  # '<think> 2 + 3 = 5. </think> <answer> 5 </answer>'

Chat models bring their own prompt format: `for_tokenizer(template, tokenizer)` attaches the
tokenizer's jinja `chat_template` (Hugging Face directories) to a chat template (ChatML, Llama 3,
R1-Distill), and prompts are then rendered by that jinja, exactly as transformers and vLLM render
them (Llama 3.1's date header included). Plain templates (R1-Zero, for base models) are kept as
written. `template.to_jinja()` is the other direction: a plain template as a chat template, which
the export stage writes next to the weights so that a chat endpoint renders the training prompts.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

R1_ZERO_SYSTEM = (
    'A conversation between User and Assistant. The user asks a question, and the Assistant '
    'solves it. The assistant first thinks about the reasoning process in the mind and then '
    'provides the user with the answer. The reasoning process and answer are enclosed within '
    '<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning '
    'process here </think> <answer> answer here </answer>.')

QWEN_SYSTEM = 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.'
QWEN_MATH_SYSTEM = 'Please reason step by step, and put your final answer within \\boxed{}.'
# Suggested by DeepSeek for R1 / R1-Distill on math (in the user turn, no system prompt).
MATH_INSTRUCTION = ('{question}\nPlease reason step by step, and put your final answer within '
                    '\\boxed{{}}.')

DS_BOS = '<｜begin▁of▁sentence｜>'
DS_EOS = '<｜end▁of▁sentence｜>'


@dataclasses.dataclass(frozen=True)
class Template:
  """A prompt/completion format. Format strings use `str.format` fields.

  Attributes:
    name: registry name.
    prompt_format: fields `{system}` (the rendered system block, '' when none) and `{question}`.
    system_format: renders a system message into the block (field `{system}`).
    default_system: system message used when `render_prompt(system=None)`; None for none.
    question_format: wraps the question first (field `{question}`), e.g. to add an instruction.
    completion_format: fields `{think_open}`, `{think_close}`, `{reasoning}`, `{answer}`,
      `{summary}`; the text the model writes after the prompt.
    think_open, think_close: reasoning delimiters (`|special_token|` for the paper's notation).
    prompt_opens_think: the prompt already ends with `think_open` (R1-Distill); the completion
      then contains only the closing tag. Configure the format reward from this.
    answer_tags: the completion puts the answer inside `<answer> </answer>` (R1-Zero).
    includes_bos: the prompt text starts with the bos token, so don't add bos when encoding.
    end_of_turn: text that closes the assistant turn in a chat format ('' when none).
    chat_template: a jinja chat template (from the model's tokenizer, see `for_tokenizer`);
      when set, `render_prompt` renders with it instead of `prompt_format`.
    chat_tokens: (name, text) pairs the jinja sees, e.g. (('bos_token', '<s>'),).
  """
  name: str
  prompt_format: str
  completion_format: str
  system_format: str = '{system}'
  default_system: str | None = None
  question_format: str = '{question}'
  think_open: str = '<think>'
  think_close: str = '</think>'
  prompt_opens_think: bool = False
  answer_tags: bool = False
  includes_bos: bool = False
  end_of_turn: str = ''
  chat_template: str | None = None
  chat_tokens: tuple[tuple[str, str], ...] = ()

  def render_prompt(self, question: str, system: str | None = None) -> str:
    """The prompt text for `question`; `system` replaces `default_system` when given."""
    system = self.default_system if system is None else system
    if self.chat_template is not None:
      messages = ([{'role': 'system', 'content': system}] if system else []) + [
          {'role': 'user', 'content': self.question_format.format(question=question)}]
      return render_chat(self.chat_template, messages, add_generation_prompt=True,
                         **dict(self.chat_tokens))
    block = self.system_format.format(system=system) if system else ''
    q = self.question_format.format(question=question)
    fmt = self.prompt_format
    if '{question}.' in fmt and q.rstrip().endswith(('.', '?', '!')):
      fmt = fmt.replace('{question}.', '{question}')  # 'User: Why?. Assistant:' -> 'Why? ...'
    return fmt.format(system=block, question=q, think_open=self.think_open)

  def render_completion(self, reasoning: str, answer: str | None = None,
                        summary: str | None = None, close_turn: bool = False) -> str:
    """The completion text (SFT target) for a reasoning trace and an answer.

    `summary` (the cold-start format's text after the reasoning) defaults to `answer` and vice
    versa. With `close_turn`, `end_of_turn` is appended (eos is appended by the SFT pipeline).
    """
    if answer is None and summary is None:
      raise ValueError('render_completion needs an answer or a summary.')
    answer = summary if answer is None else answer
    summary = answer if summary is None else summary
    text = self.completion_format.format(
        think_open=self.think_open, think_close=self.think_close, reasoning=reasoning,
        answer=answer, summary=summary)
    return text + (self.end_of_turn if close_turn else '')

  @property
  def response_prefix(self) -> str:
    """Text of the response that the prompt already contains ('<think>\\n' for R1-Distill)."""
    if not self.prompt_opens_think:
      return ''
    if self.chat_template is not None:
      text = self.render_prompt('?')
      return text[text.rfind(self.think_open):]
    tail = self.prompt_format.split('{question}')[-1].format(think_open=self.think_open)
    i = tail.rfind(self.think_open)
    return tail[i:]

  def full_response(self, completion: str) -> str:
    """The completion with `response_prefix` put back, e.g. for a `<think>` format check."""
    return self.response_prefix + completion

  def to_jinja(self, add_bos_token: bool = False) -> str:
    """This template as a Hugging Face jinja chat template (what `export` writes).

    Rendering `[{system}?, {user: q}]` gives `render_prompt(q, system)` exactly (with
    `{{ bos_token }}` first when `add_bos_token`: r1jax adds bos when encoding, a chat endpoint
    only renders). A template that already came from a tokenizer is returned as it was.
    Later turns render as `user turn, assistant content + end_of_turn`, repeated; the model was
    trained on single turns.
    """
    if self.chat_template is not None:
      return self.chat_template
    S, Q = '\x00S\x00', '\x00Q\x00'
    prompt = self.prompt_format.format(system=S, question=Q, think_open=self.think_open)
    if prompt.count(Q) != 1 or prompt.count(S) > 1 or (S in prompt and
                                                        prompt.index(S) > prompt.index(Q)):
      raise ValueError(f'Template {self.name!r}: prompt_format needs one {{question}} after at '
                       'most one {system}')
    head, user_pre = prompt.split(Q)[0].split(S) if S in prompt else ('', prompt.split(Q)[0])
    user_post = prompt.split(Q)[1]
    sys_pre, sys_post = self.system_format.format(system=S).split(S)
    q_pre, q_post = self.question_format.format(question=Q).split(Q)
    # render_prompt's 'Why?. Assistant:' -> 'Why? Assistant:' rule.
    drop_period = '{question}.' in self.prompt_format and user_post.startswith('.')
    lit = lambda x: json.dumps(x, ensure_ascii=False)
    default = lit(self.default_system) if self.default_system else 'none'
    q = f'{lit(q_pre)} ~ m["content"] ~ {lit(q_post)}'
    post = (f'{{%- if q | trim | list | last in [".", "?", "!"] %}}{{{{ {lit(user_post[1:])} }}}}'
            f'{{%- else %}}{{{{ {lit(user_post)} }}}}{{%- endif %}}') if drop_period \
        else f'{{{{ {lit(user_post)} }}}}'
    return ''.join([
        f'{{#- r1jax template {self.name!r} -#}}\n',
        f'{{%- set ns = namespace(system={default}, start=0) %}}',
        '{%- if messages and messages[0]["role"] == "system" %}'
        '{%- set ns.system = messages[0]["content"] %}{%- set ns.start = 1 %}{%- endif %}',
        '{{- bos_token if bos_token is defined and bos_token else "" }}' if add_bos_token else '',
        f'{{{{- {lit(head)} }}}}',
        f'{{%- if ns.system %}}{{{{ {lit(sys_pre)} ~ ns.system ~ {lit(sys_post)} }}}}{{%- endif %}}',
        '{%- for m in messages[ns.start:] %}',
        '{%- if m["role"] == "user" %}',
        f'{{%- set q = {q} %}}{{{{ {lit(user_pre)} ~ q }}}}{post}',
        '{%- elif m["role"] == "assistant" %}',
        f'{{{{ m["content"] ~ {lit(self.end_of_turn)} }}}}',
        '{%- else %}{{ raise_exception("r1jax template: roles are system (first), user and '
        'assistant") }}{%- endif %}',
        '{%- endfor %}'])


_TEMPLATES: dict[str, Template] = {}


def register_template(template: Template) -> Template:
  _TEMPLATES[template.name] = template
  return template


def get_template(name: str | Template, **overrides) -> Template:
  """Looks up a template by name; keyword overrides replace fields (dataclasses.replace)."""
  if isinstance(name, Template):
    t = name
  else:
    if name not in _TEMPLATES:
      raise KeyError(f'Unknown template {name!r}; known: {sorted(_TEMPLATES)}')
    t = _TEMPLATES[name]
  return dataclasses.replace(t, **overrides) if overrides else t


def list_templates() -> list[str]:
  return sorted(_TEMPLATES)


def is_chat_format(template: Template) -> bool:
  """Chat models' formats (they close the assistant turn); plain R1-Zero formats do not."""
  return bool(template.end_of_turn)


def for_tokenizer(template: str | Template, tokenizer: Any) -> Template:
  """`template`, rendered by the tokenizer's own chat template when both are chat formats.

  A chat format (ChatML, Llama 3, R1-Distill) with a tokenizer that ships a jinja
  `chat_template` (a Hugging Face directory) renders prompts with that jinja, so prompts match
  what transformers and vLLM produce for the model. Plain templates (R1-Zero on a base model)
  and tokenizers without a chat template keep the hand-written format.
  """
  template = get_template(template)
  source = getattr(tokenizer, 'chat_template', None)
  if template.chat_template is not None or not source or not is_chat_format(template):
    return template
  tokens = {}
  for name, idx in (('bos_token', tokenizer.bos_id), ('eos_token', tokenizer.eos_id),
                    ('pad_token', tokenizer.pad_id)):
    if idx is not None:
      tokens[name] = tokenizer.id_to_token(idx)
  out = dataclasses.replace(template, chat_template=source, chat_tokens=tuple(tokens.items()))
  probe = out.render_prompt('?')
  bos = tokens.get('bos_token')
  opens = probe.rstrip().endswith(template.think_open)
  return dataclasses.replace(out, includes_bos=bool(bos) and probe.startswith(bos),
                             prompt_opens_think=opens)


@functools.lru_cache(maxsize=16)
def _compile(source: str):
  try:
    import jinja2  # pylint: disable=import-outside-toplevel
    from jinja2.sandbox import ImmutableSandboxedEnvironment  # pylint: disable=import-outside-toplevel
  except ImportError as e:  # a core dependency; only missing in a broken install
    raise ImportError('Chat templates need jinja2 (pip install jinja2)') from e

  def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)

  def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)

  def strftime_now(fmt):
    import datetime  # pylint: disable=import-outside-toplevel
    return datetime.datetime.now().strftime(fmt)

  # The environment transformers renders chat templates in.
  env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                      extensions=['jinja2.ext.loopcontrols'])
  env.filters['tojson'] = tojson
  env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now)
  return env.from_string(source)


def render_chat(source: str, messages: list[dict], add_generation_prompt: bool = True,
                **kwargs) -> str:
  """Renders a jinja chat template as transformers' `apply_chat_template(tokenize=False)` does.

  kwargs are the extra variables templates read (bos_token, eos_token, tools, ...).
  """
  return _compile(source).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                 **kwargs)


# R1-Zero (DeepSeek-R1 paper, Table 1): the instruction is the "system" preamble.
register_template(Template(
    name='r1_zero',
    prompt_format='{system}User: {question}. Assistant:',
    system_format='{system} ',
    default_system=R1_ZERO_SYSTEM,
    completion_format='{think_open} {reasoning} {think_close} <answer> {answer} </answer>',
    answer_tags=True))

# The R1-Zero conversation without its instruction preamble: for tiny models trained from
# scratch on the R1 format, where a 90-token preamble would dominate every sequence.
register_template(Template(
    name='r1_zero_bare',
    prompt_format='{system}User: {question}. Assistant:',
    system_format='{system} ',
    default_system=None,
    completion_format='{think_open} {reasoning} {think_close} <answer> {answer} </answer>',
    answer_tags=True))

# R1-Zero with the prompt opening <think> (TinyZero style): the completion starts reasoning.
register_template(Template(
    name='r1_zero_open_think',
    prompt_format='{system}User: {question}. Assistant: {think_open}',
    system_format='{system} ',
    default_system=R1_ZERO_SYSTEM,
    completion_format=' {reasoning} {think_close} <answer> {answer} </answer>',
    prompt_opens_think=True, answer_tags=True))

# R1 cold-start data: |special_token|<reasoning_process>|special_token|<summary>.
register_template(Template(
    name='r1_cold_start',
    prompt_format='{system}User: {question}\nAssistant:',
    system_format='{system}\n',
    completion_format='{think_open}\n{reasoning}\n{think_close}\n{summary}'))

# Plain question -> worked solution in R1 tags; for the tiny procedural base models.
register_template(Template(
    name='plain',
    prompt_format='{system}{question}\n',
    system_format='{system}\n',
    completion_format='{think_open} {reasoning} {think_close} <answer> {answer} </answer>',
    answer_tags=True))

_CHATML = Template(
    name='chatml',
    prompt_format='{system}<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n',
    system_format='<|im_start|>system\n{system}<|im_end|>\n',
    completion_format='{think_open}\n{reasoning}\n{think_close}\n\n{summary}',
    end_of_turn='<|im_end|>')
register_template(_CHATML)
register_template(dataclasses.replace(_CHATML, name='qwen2.5', default_system=QWEN_SYSTEM))
register_template(dataclasses.replace(_CHATML, name='qwen2.5_math',
                                      default_system=QWEN_MATH_SYSTEM))
# Qwen3 in thinking mode: the model itself writes <think>.
register_template(dataclasses.replace(_CHATML, name='qwen3'))

register_template(Template(
    name='llama3',
    prompt_format=('<|begin_of_text|>{system}<|start_header_id|>user<|end_header_id|>\n\n'
                   '{question}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n'),
    system_format='<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>',
    completion_format='{think_open}\n{reasoning}\n{think_close}\n\n{summary}',
    includes_bos=True, end_of_turn='<|eot_id|>'))

# DeepSeek-R1-Distill (Qwen and Llama bases): the prompt opens <think>.
register_template(Template(
    name='r1_distill',
    prompt_format=DS_BOS + '{system}<｜User｜>{question}<｜Assistant｜>{think_open}\n',
    completion_format='{reasoning}\n{think_close}\n\n{summary}',
    prompt_opens_think=True, includes_bos=True, end_of_turn=DS_EOS))
