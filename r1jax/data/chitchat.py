"""A tiny synthetic chit-chat set: the non-reasoning data of R1 in miniature.

R1's stage-4 SFT mixes reasoning traces with ~200k non-reasoning samples (writing, factual QA,
self-cognition, translation), and stage 5 scores general prompts with preference models. The
miniature needs the same *kinds* of data without a download, so this module generates short,
deterministic exchanges from a few patterns (greetings, thanks, "tell me about X", favourites)
in the readable R1 format: a brief reasoning, then the reply.

  rows = make_chitchat(200, seed=0)       # [{'question', 'prompt', 'completion', 'task', 'id'}]
  make_preferences(400, seed=0)          # [{'id', 'prompt', 'chosen', 'rejected'}]: pairs for a reward model
  write_chitchat(workdir=..., ...)        # the pipeline's `prepare` hook: SFT, prompt and pair JSONLs

This is toy data: it exercises the plumbing (mixing, general prompts, scorer rewards), not taste.
"""
from __future__ import annotations

import json
import os

import numpy as np
from etils import epath

from r1jax import paths
from r1jax.data.templates import get_template

_THINGS = {
    'cats': 'Cats are small animals. Cats like to sleep and play.',
    'dogs': 'Dogs are loyal animals. Dogs like to run and play.',
    'rain': 'Rain is water that falls from clouds. Rain helps plants grow.',
    'the sun': 'The sun is a star. The sun gives us light and warmth.',
    'trees': 'Trees are tall plants. Trees give shade and clean air.',
    'music': 'Music is sound made with rhythm. Music can make people happy.',
    'books': 'Books hold stories and ideas. Books help people learn.',
    'the sea': 'The sea is a large body of salt water. The sea is home to fish.',
    'bread': 'Bread is food made from flour and water. Bread is baked in an oven.',
    'winter': 'Winter is the cold season. Winter brings snow in many places.',
    'bikes': 'Bikes have two wheels. Bikes are a quiet way to travel.',
    'tea': 'Tea is a drink made from leaves. Tea is served hot or cold.',
}
_COLOURS = ('red', 'blue', 'green', 'yellow', 'purple', 'orange')
_NAMES = ('Ana', 'Ben', 'Chen', 'Dara', 'Eli', 'Femi', 'Gus', 'Hana')


STYLES = ('full', 'short')


def chitchat_example(rng: np.random.Generator, index: int, style: str = 'full') -> dict:
  """One exchange: {'question', 'reasoning', 'reply'} from a random pattern.

  `style='short'`: a one-word reasoning and a one-sentence reply (`Tell me about cats.` ->
  `<think> describe </think>` `Cats are small animals.`), R1's "no long CoT for simple queries",
  short enough for a tokenizer that never saw English (the arithmetic miniature's byte pieces).
  """
  del index
  if style not in STYLES:
    raise ValueError(f'style must be one of {STYLES}, got {style!r}')
  short = style == 'short'
  kind = int(rng.integers(4))
  if kind == 0:
    name = _NAMES[int(rng.integers(len(_NAMES)))]
    if short:
      return dict(question=f'Hello, I am {name}.', reasoning='greet', reply=f'Hello {name}.')
    q = f'Hello, my name is {name}.'
    return dict(question=q, reasoning='The user greets me and says their name. I greet them back.',
                reply=f'Hello {name}, nice to meet you. How can I help you today?')
  if kind == 1:
    thing = list(_THINGS)[int(rng.integers(len(_THINGS)))]
    if short:
      return dict(question=f'Thanks for {thing}.', reasoning='thank',
                  reply=f'You are welcome, I like {thing} too.')
    return dict(question=f'Thank you for telling me about {thing}.',
                reasoning='The user thanks me. I reply politely.',
                reply=f'You are welcome. I am glad you liked learning about {thing}.')
  if kind == 2:
    thing = list(_THINGS)[int(rng.integers(len(_THINGS)))]
    if short:
      return dict(question=f'Tell me about {thing}.', reasoning='describe',
                  reply=_THINGS[thing].split('. ')[0] + '.')
    return dict(question=f'Tell me about {thing}.',
                reasoning=f'The user asks about {thing}. I give a short description.',
                reply=_THINGS[thing])
  colour = _COLOURS[int(rng.integers(len(_COLOURS)))]
  if short:
    return dict(question=f'I like {colour}.', reasoning='praise',
                reply=f'{colour.capitalize()} is a lovely colour.')
  return dict(question=f'My favourite colour is {colour}. What do you think?',
              reasoning=f'The user likes {colour}. I say something kind about {colour}.',
              reply=f'{colour.capitalize()} is a lovely colour. Many people like {colour} too.')


def make_chitchat(num_examples: int, seed: int = 0, template: str = 'r1_cold_start',
                  style: str = 'full') -> list[dict]:
  """`num_examples` general SFT rows: question, prompt (rendered), completion, task='general'."""
  tmpl = get_template(template)
  rng = np.random.default_rng([seed, 7])
  rows = []
  for i in range(num_examples):
    ex = chitchat_example(rng, i, style)
    rows.append({'id': f'chitchat/{seed}/{i}', 'question': ex['question'],
                 'prompt': tmpl.render_prompt(ex['question']),
                 'completion': tmpl.render_completion(reasoning=ex['reasoning'],
                                                      summary=ex['reply']),
                 'task': 'general'})
  return rows


def make_preferences(num_pairs: int, seed: int = 0, style: str = 'full') -> list[dict]:
  """Preference pairs for a helpfulness reward model: {id, prompt (the question), chosen (its
  reply), rejected (the reply to another exchange: another topic, name or colour)}. The
  "annotator" prefers the reply that answers what was asked, which a tiny model can learn from
  the words the question and the reply share."""
  rng = np.random.default_rng([seed, 11])
  out = []
  for i in range(num_pairs):
    ex = chitchat_example(rng, i, style)
    other = chitchat_example(rng, i, style)
    while other['reply'] == ex['reply'] or other['question'] == ex['question']:
      other = chitchat_example(rng, i, style)
    out.append({'id': f'chitchat_pref/{seed}/{i}', 'prompt': ex['question'], 'chosen': ex['reply'],
                'rejected': other['reply']})
  return out


def _write_jsonl(path: epath.Path, rows: list[dict]) -> None:
  paths.makedirs(path.parent)
  # Atomic: a crash never leaves half a file for a resumed pipeline.
  paths.write_atomic(path, ''.join(json.dumps(r) + '\n' for r in rows))


def write_chitchat(workdir: str | os.PathLike, subdir: str = 'data', num_sft: int = 400,
                   num_prompts: int = 200, seed: int = 0, template: str = 'r1_cold_start',
                   num_pairs: int = 0, style: str = 'full') -> dict:
  """Writes `<workdir>/<subdir>/chitchat_sft.jsonl` (prompt/completion, for SFT) and
  `chitchat_prompts.jsonl` (question only, for RL) unless they exist; returns their paths.
  With `num_pairs`, also `prefs_train.jsonl` (that many `make_preferences` pairs) and
  `prefs_eval.jsonl` (a fifth as many, another seed) for a reward model. `style`: see
  `chitchat_example`."""
  out = epath.Path(workdir) / subdir
  files = {'sft': out / 'chitchat_sft.jsonl', 'prompts': out / 'chitchat_prompts.jsonl'}
  if num_pairs:
    for name, n, s in (('prefs_train', num_pairs, seed + 2), ('prefs_eval', max(1, num_pairs // 5), seed + 3)):
      files[name] = out / f'{name}.jsonl'
      if not files[name].exists():
        _write_jsonl(files[name], make_preferences(n, s, style))
  if not files['sft'].exists():
    _write_jsonl(files['sft'], make_chitchat(num_sft, seed, template, style))
  if not files['prompts'].exists():
    rows = make_chitchat(num_prompts, seed + 1, template, style)
    _write_jsonl(files['prompts'], [{'id': r['id'], 'question': r['question']} for r in rows])
  return {k: str(v) for k, v in files.items()}
