"""Non-reasoning chat data (R1 stage 4): `messages` conversations -> SFT `{prompt, completion}` rows.

A row holds a conversation in the OpenAI / Hugging Face form:
  {"messages": [{"role": "system", "content": ...}, {"role": "user", "content": ...},
                {"role": "assistant", "content": ...}, ...]}
Sources: a JSONL or Parquet file, or a local Hugging Face dataset (`r1jax.data.rows.read_rows`: Parquet needs the
`data` extra, pyarrow; HF datasets the `hf` extra), or any sequence of dicts, such as a `datasets.Dataset`.

Each assistant turn becomes one SFT example (or only the last one, `turns='last'`): the prompt is the conversation
before it, rendered with the generation prompt of the chat format, and the completion is the assistant's text
(plus the format's end-of-turn marker); the SFT pipeline puts the loss on the completion only. The chat format is
either
  * a Hugging Face chat template (the jinja `chat_template` of a model's `tokenizer_config.json`,
    `ChatFormat.from_pretrained(dir)`), rendered with jinja2 the way `transformers` does; or
  * an r1jax `Template` (`ChatFormat.from_template('qwen2.5')`): single-turn formats, so earlier turns are
    rendered turn by turn with the same template (`prompt + answer + end_of_turn`).

  fmt = ChatFormat.from_pretrained('/models/Qwen2.5-1.5B-Instruct')
  rows = chat_sft_rows(read_rows('chat.parquet'), fmt)   # [{'prompt', 'completion', 'id', 'turn'}]
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterable, Mapping, Optional, Sequence

from etils import epath

from r1jax.data.rows import read_rows
from r1jax.data.templates import Template, get_template

ROLES = ('system', 'user', 'assistant')
__all__ = ['ChatFormat', 'chat_sft_rows', 'load_chat_source', 'read_rows', 'validate_messages']


def validate_messages(messages: Any, where: str = 'row') -> list[dict]:
  """The messages as a list of {role, content} dicts; a clear error for anything else."""
  if not isinstance(messages, (list, tuple)) or not messages:
    raise ValueError(f'{where}: messages must be a non-empty list, got {type(messages).__name__}')
  out = []
  for i, m in enumerate(messages):
    if not isinstance(m, Mapping) or m.get('role') not in ROLES or not isinstance(m.get('content'), str):
      raise ValueError(f'{where}: message {i} must be {{"role": one of {ROLES}, "content": str}}, got {m!r}')
    out.append({'role': m['role'], 'content': m['content']})
  return out


@dataclasses.dataclass(frozen=True)
class ChatFormat:
  """How a conversation becomes text: a jinja chat template, or an r1jax `Template`."""
  chat_template: Optional[str] = None     # jinja source (Hugging Face `chat_template`)
  template: Optional[Template] = None
  special_tokens: tuple[tuple[str, str], ...] = ()   # bos_token / eos_token the jinja template may use

  @classmethod
  def from_template(cls, template: Template | str) -> 'ChatFormat':
    return cls(template=get_template(template))

  @classmethod
  def from_pretrained(cls, path: str | os.PathLike) -> 'ChatFormat':
    """The chat template of a Hugging Face model directory (`tokenizer_config.json`, or `chat_template.jinja`)."""
    folder = epath.Path(path)
    cfg_path = folder / 'tokenizer_config.json'
    cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    source = cfg.get('chat_template')
    if isinstance(source, list):   # named templates: the default one
      source = next((t['template'] for t in source if t.get('name') == 'default'), source[0]['template'])
    if not source and (folder / 'chat_template.jinja').exists():
      source = (folder / 'chat_template.jinja').read_text()
    if not source:
      raise ValueError(f'{folder} has no chat template (tokenizer_config.json chat_template or chat_template.jinja)')
    special = []
    for key in ('bos_token', 'eos_token'):
      value = cfg.get(key)
      value = value.get('content') if isinstance(value, Mapping) else value
      if value:
        special.append((key, value))
    return cls(chat_template=source, special_tokens=tuple(special))

  def __post_init__(self):
    if (self.chat_template is None) == (self.template is None):
      raise ValueError('ChatFormat needs exactly one of chat_template or template')

  def render(self, messages: Sequence[Mapping], add_generation_prompt: bool) -> str:
    """The conversation as text (with the assistant's generation prompt at the end when asked)."""
    if self.chat_template is not None:
      return _jinja(self.chat_template).render(messages=list(messages), add_generation_prompt=add_generation_prompt,
                                               **dict(self.special_tokens))
    return self._render_with_template(messages, add_generation_prompt)

  def _render_with_template(self, messages: Sequence[Mapping], add_generation_prompt: bool) -> str:
    t = self.template
    system = None
    if messages and messages[0]['role'] == 'system':
      system, messages = messages[0]['content'], messages[1:]
    text, first = '', True
    i = 0
    while i < len(messages):
      m = messages[i]
      if m['role'] != 'user':
        raise ValueError(f'template {t.name!r}: turns must alternate user/assistant after an optional system '
                         f'message; got {m["role"]!r} at position {i}')
      # Only the first turn carries the system block (or the template's default system prompt).
      text += t.render_prompt(m['content'], system=system if first else '')
      first = False
      if i + 1 < len(messages):
        if messages[i + 1]['role'] != 'assistant':
          raise ValueError(f'template {t.name!r}: a user turn must be followed by an assistant turn')
        text += messages[i + 1]['content'] + t.end_of_turn
        i += 2
      else:
        i += 1
    del add_generation_prompt   # an r1jax prompt always ends with the assistant's cue
    return text

  @property
  def end_of_turn(self) -> str:
    return self.template.end_of_turn if self.template is not None else ''


def _jinja(source: str):
  import jinja2  # pylint: disable=import-outside-toplevel
  from jinja2 import sandbox  # pylint: disable=import-outside-toplevel

  def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)

  env = sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
  env.globals['raise_exception'] = raise_exception
  return env.from_string(source)


def chat_sft_rows(rows: Iterable[Mapping], fmt: ChatFormat, messages_field: str = 'messages',
                  turns: str = 'all', id_field: str = 'id') -> list[dict]:
  """SFT rows `{prompt, completion, id, turn}`: one per assistant turn (`turns='all'`) or the last one (`'last'`).

  With a jinja template, the completion is the text the template adds for the assistant turn after the generation
  prompt (so its end-of-turn tokens are learned too); a template whose rendering of the conversation does not start
  with the rendered prompt is an error (such templates rewrite history, e.g. drop earlier reasoning).
  """
  if turns not in ('all', 'last'):
    raise ValueError(f"turns must be 'all' or 'last', got {turns!r}")
  out = []
  for r, row in enumerate(rows):
    where = f'row {r}'
    msgs = validate_messages(row.get(messages_field), where)
    idx = [i for i, m in enumerate(msgs) if m['role'] == 'assistant']
    if turns == 'last':
      idx = idx[-1:]
    for i in idx:
      prompt = fmt.render(msgs[:i], add_generation_prompt=True)
      if fmt.chat_template is not None:
        full = fmt.render(msgs[:i + 1], add_generation_prompt=False)
        if not full.startswith(prompt):
          raise ValueError(f'{where}: the chat template does not render turn {i} as prompt + completion')
        completion = full[len(prompt):]
      else:
        completion = msgs[i]['content'] + fmt.end_of_turn
      out.append({'prompt': prompt, 'completion': completion, 'id': str(row.get(id_field, r)), 'turn': i})
  return out


def load_chat_source(src: Mapping[str, Any]) -> list[dict]:
  """SFT rows of a config source `{kind: 'chat', path, messages_field='messages', turns='all', template=...,
  chat_template_from=..., loader='auto', split='train'}`: `chat_template_from` (a HF model directory) wins over
  `template` (an r1jax name); `loader`/`split` as in `r1jax.data.rows.read_rows`."""
  rows = read_rows(src['path'], src.get('loader', 'auto'), src.get('split', 'train'))
  if src.get('chat_template_from'):
    fmt = ChatFormat.from_pretrained(src['chat_template_from'])
  else:
    fmt = ChatFormat.from_template(src.get('template') or 'qwen2.5')
  return chat_sft_rows(rows, fmt, src.get('messages_field', 'messages'), src.get('turns', 'all'))
