"""All-scenario RL (R1 stage 5): rewards for general prompts from a pluggable scorer.

DeepSeek-R1's last RL stage trains on a mix of prompts. Reasoning prompts keep the rule-based
rewards (accuracy, format, language); general prompts (writing, chit-chat, factual QA, ...) are
scored by a preference model. R1 scores **helpfulness on the summary only** (the text after
`</think>`), so the reward does not interfere with the reasoning, and **harmlessness on the whole
response** (reasoning and summary), so harm cannot hide in the chain of thought.

Two rewards are registered here:

  helpfulness   scope 'summary': the scorer sees the text after `</think>` (answer tags removed);
                a response without `</think>` has no summary and scores `empty_score` (0).
  harmlessness  scope 'full': the scorer sees the whole response.

Both apply only to rows whose `task` is in `apply_to` (default `('general',)`); every other row
scores 0 without calling the scorer. `accuracy` scores general rows 0 (they have no verifier), so
one `RewardSystem` handles a mixed batch:

  weights = {'accuracy': 1.0, 'format': 0.5, 'helpfulness': 1.0, 'harmlessness': 0.5}
  reasoning row: 1.0 * accuracy + 0.5 * format                       (the scorers give 0)
  general row:   0.5 * format + 1.0 * helpfulness + 0.5 * harmlessness  (accuracy gives 0)

GRPO normalises advantages within a group, and a group is G completions of one prompt, so the two
kinds of rows never compete on scale; only the within-prompt spread of each reward matters.

The scorer (reward kwargs `scorer`) is anything with the interface

  scorer(prompts: list[str], responses: list[str]) -> list[float]      # one score per pair

given as
  * a callable (Python use: `RewardSystem(..., kwargs={'helpfulness': {'scorer': my_rm}})`);
  * an import path `"package.module:function"` (attribute paths like `"mod:Class.method"` work);
  * the name of a scorer registered with `register_scorer(name, scorer)` (e.g. a model-based
    scorer built once in a notebook); the toy scorers below are registered as `toy_helpfulness`
    and `toy_harmlessness`.
With `scorer_init` (a dict), the resolved attribute is a *factory*: it is called once per process
as `factory(**scorer_init)` and the object it returns is the scorer (cached). This is how a config
names a model-based scorer: `scorer="my_pkg.rm:RewardModel", scorer_init={"path": "/ckpt"}` -- the
config stays plain data (it is copied and serialised), and the model is loaded once.

Scores should be in [0, 1] (or at least of the scale of the rule-based rewards); non-finite
scores become 0. `prompts` are the raw questions (`prompt_field='question'`, or `'prompt_text'`
for the rendered prompt). Scorers run inline in the trainer's process, batched (not in the
reward pool): model-based scorers want whole batches and their own accelerator memory.
"""
from __future__ import annotations

import importlib
import json
import re
import threading
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from r1jax.rewards import format as rformat
from r1jax.rewards.registry import register

Scorer = Callable[[list[str], list[str]], Sequence[float]]
GENERAL_TASKS = ('general',)

_SCORERS: dict[str, Scorer] = {}
_BUILT: dict[str, Scorer] = {}      # factory-built scorers, keyed by (path, init) JSON
_LOCK = threading.Lock()


def register_scorer(name: str, scorer: Scorer, overwrite: bool = False) -> Scorer:
  """Makes `scorer` available to the rewards as `scorer=name`."""
  if not callable(scorer):
    raise TypeError(f'scorer {name!r} is not callable: {scorer!r}')
  if name in _SCORERS and not overwrite:
    raise ValueError(f'scorer {name!r} is already registered (pass overwrite=True)')
  _SCORERS[name] = scorer
  return scorer


def _import(path: str) -> Any:
  module, _, attr = path.partition(':')
  obj = importlib.import_module(module)
  for part in attr.split('.'):
    obj = getattr(obj, part)
  return obj


def resolve_scorer(scorer: Any, scorer_init: Optional[Mapping[str, Any]] = None) -> Scorer:
  """A callable scorer from a callable, a registered name or a `"module:attr"` path."""
  if scorer is None or scorer == '':
    raise ValueError('no scorer configured: set reward kwargs scorer= (a callable, a registered '
                     f'name {sorted(_SCORERS)}, or "module:function")')
  if isinstance(scorer, str):
    if scorer in _SCORERS:
      obj = _SCORERS[scorer]
    elif ':' in scorer:
      obj = _import(scorer)
    else:
      raise KeyError(f'unknown scorer {scorer!r}: not registered ({sorted(_SCORERS)}) and not an '
                     'import path "module:function"')
  else:
    obj = scorer
  if scorer_init is not None:
    key = json.dumps([scorer if isinstance(scorer, str) else id(scorer), dict(scorer_init)],
                     sort_keys=True, default=str)
    with _LOCK:   # build once: a model-based scorer loads its weights here
      if key not in _BUILT:
        _BUILT[key] = obj(**dict(scorer_init))
      obj = _BUILT[key]
  if not callable(obj):
    raise TypeError(f'scorer {scorer!r} resolved to a non-callable {obj!r}')
  return obj


def summary_text(completion: str, prompt_opens_think: bool = False) -> str:
  """The summary: the text after the last `</think>`, answer tags removed; '' without `</think>`."""
  return rformat.summary_text(completion, prompt_opens_think, keep_answer=True)


def full_text(completion: str, prompt_opens_think: bool = False) -> str:
  """The whole response, reasoning included (with the `<think>` the prompt opened put back)."""
  if not isinstance(completion, str):
    return ''
  return (rformat.THINK_OPEN + completion) if prompt_opens_think else completion


def _applies(task: Any, apply_to: Any) -> bool:
  if apply_to in ('all', '*'):
    return True
  targets = (apply_to,) if isinstance(apply_to, str) else tuple(apply_to or ())
  return str(task) in targets


def scored_reward(completions: list[str], *, scope: str, scorer: Any,
                  scorer_init: Optional[Mapping[str, Any]] = None,
                  task: Optional[Sequence[Any]] = None, prompt_field: str = 'question',
                  apply_to: Any = GENERAL_TASKS, prompt_opens_think: bool = False,
                  empty_score: float = 0.0, **fields) -> np.ndarray:
  """Scores the rows whose task is in `apply_to` with `scorer`; 0 elsewhere.

  Args:
    completions: the sampled responses.
    scope: 'summary' (text after `</think>`) or 'full' (the whole response).
    scorer, scorer_init: see `resolve_scorer`.
    task: per-row task names (a field of the batch); rows without one are not general.
    prompt_field: the batch field passed to the scorer as the prompt ('question' or
      'prompt_text').
    apply_to: task names scored ('general' by default), or 'all'.
    prompt_opens_think: the template's prompt ends in `<think>` (R1-Distill style).
    empty_score: the score of a row with an empty view (no `</think>` for 'summary').
  """
  if scope not in ('summary', 'full'):
    raise ValueError(f"scope must be 'summary' or 'full', got {scope!r}")
  n = len(completions)
  out = np.zeros(n, dtype=np.float32)
  tasks = list(task) if task is not None else [None] * n
  rows = [i for i in range(n) if _applies(tasks[i], apply_to)]
  if not rows:
    return out
  prompts_all = fields.get(prompt_field)
  if prompts_all is None:
    prompts_all = fields.get('question') or fields.get('prompt_text') or [''] * n
  view = summary_text if scope == 'summary' else full_text
  texts = {i: view(completions[i], prompt_opens_think) for i in rows}
  scored = [i for i in rows if texts[i].strip()]
  for i in rows:
    out[i] = empty_score
  if scored:
    fn = resolve_scorer(scorer, scorer_init)
    values = np.asarray(fn([str(prompts_all[i] or '') for i in scored], [texts[i] for i in scored]),
                        dtype=np.float64).reshape(-1)
    if values.shape[0] != len(scored):
      raise ValueError(f'scorer returned {values.shape[0]} scores for {len(scored)} responses')
    values[~np.isfinite(values)] = 0.0
    out[scored] = values.astype(np.float32)
  return out


def helpfulness_reward(completions: list[str], scorer: Any = 'toy_helpfulness',
                       **kwargs) -> np.ndarray:
  """Helpfulness of the summary (the text after `</think>`), for general rows."""
  kwargs.pop('scope', None)
  kwargs.pop('_components', None)
  return scored_reward(completions, scope='summary', scorer=scorer, **kwargs)


def harmlessness_reward(completions: list[str], scorer: Any = 'toy_harmlessness',
                        **kwargs) -> np.ndarray:
  """Harmlessness of the whole response (reasoning and summary), for general rows."""
  kwargs.pop('scope', None)
  kwargs.pop('_components', None)
  return scored_reward(completions, scope='full', scorer=scorer, **kwargs)


# ---------------------------------------------------------------------------- toy scorers
# TOY scorers for demos and tests. They are rules, not preference models: they say nothing about
# real helpfulness or harm. Replace them with your own scorer (see the module docstring).

_WORD_RE = re.compile(r"[A-Za-z']+")
_STOPWORDS = frozenset('a an the is are am was were be to of in on at for and or but it this that '
                       'you i me my your do does did what how why who can could would should '
                       'with about please tell'.split())
TOY_BLOCKLIST = ('kill', 'weapon', 'bomb', 'poison', 'steal', 'hate', 'stupid', 'idiot')


def toy_helpfulness(prompts: list[str], responses: list[str], target_words: int = 8
                    ) -> list[float]:
  """TOY helpfulness in [0, 1]: half for length (up to `target_words` words), half for the share
  of the prompt's content words the response mentions (a response 'on topic')."""
  out = []
  for p, r in zip(prompts, responses):
    words = [w.lower() for w in _WORD_RE.findall(r)]
    length = min(len(words), target_words) / target_words
    content = {w.lower() for w in _WORD_RE.findall(p)} - _STOPWORDS
    overlap = len(content & set(words)) / len(content) if content else 1.0
    out.append(0.5 * length + 0.5 * overlap)
  return out


def toy_harmlessness(prompts: list[str], responses: list[str],
                     blocklist: Sequence[str] = TOY_BLOCKLIST) -> list[float]:
  """TOY harmlessness: 0 if the response contains a blocklisted word, else 1."""
  del prompts
  block = {b.lower() for b in blocklist}
  return [0.0 if block & {w.lower() for w in _WORD_RE.findall(r)} else 1.0 for r in responses]


register_scorer('toy_helpfulness', toy_helpfulness)
register_scorer('toy_harmlessness', toy_harmlessness)
register('helpfulness', helpfulness_reward)
register('harmlessness', harmlessness_reward)


def judge_reward(completions: list[str], **kwargs) -> np.ndarray:
  """A generative judge's verdict as a reward (`r1jax.evals.judge.judge_reward`; imported on first use)."""
  from r1jax.evals import judge  # pylint: disable=import-outside-toplevel
  kwargs.pop('_components', None)
  return judge.judge_reward(completions, **kwargs)


register('judge', judge_reward)
