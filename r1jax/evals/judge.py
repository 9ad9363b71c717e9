"""A generative judge: a model reads (question, reference, response) and writes a verdict.

DeepSeek-R1 had DeepSeek-V3 judge the samples no rule can verify (stage 3, "generative reward model"). Here any
r1jax checkpoint, or a Hugging Face one loaded by r1jax, judges: each triple is rendered with a `JudgeFormat` prompt,
wrapped in the judge model's chat template, sampled (greedy by default) in batches on the mesh through the sharded
`Sampler`, and the verdict is parsed from the text (the last verdict marker after any `</think>`; none -> `None`).

  judge = Judge.from_checkpoint('/runs/judge', template='qwen2.5')
  judge.verdicts(questions, references, responses)  # -> [1.0, 0.0, None, ...]
  judge(questions, references, responses)           # -> scores, unparsable = `unparsable_score` (0)

Uses:
  * a verifier in rejection sampling for rows a rule cannot check (`rejection_sample(..., judge=judge)`: rows
    whose verifier kind is `general` are correct when the judge says so);
  * a reward (`judge` in `config.rewards`, registered in `r1jax.rewards.general`: kwargs
    `judge='r1jax.evals.judge:Judge.from_checkpoint', judge_init={'path': ...}` build it once per process).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Sequence

import jax
import numpy as np

from r1jax.data.templates import Template, get_template
from r1jax.evals import evaluator
from r1jax.rewards import format as rformat
from r1jax.rewards.general import resolve_scorer
from r1jax.rewards.registry import verifier_kind

DEFAULT_PROMPT = (
    'You are grading a response. Decide whether the response answers the question correctly and fully, using the '
    'reference answer as ground truth; ignore style.\n\n'
    'Question:\n{question}\n\nReference answer:\n{reference}\n\nResponse:\n{response}\n\n'
    'End your reply with [[CORRECT]] or [[INCORRECT]].')


@dataclasses.dataclass(frozen=True)
class JudgeFormat:
  """How a triple becomes the judge's question, and how its reply becomes a score."""
  prompt: str = DEFAULT_PROMPT                       # fields {question}, {reference}, {response}
  verdicts: tuple[tuple[str, float], ...] = (('[[CORRECT]]', 1.0), ('[[INCORRECT]]', 0.0))
  max_response_chars: int = 8000                     # longer responses keep their end (the final answer)

  def render(self, question: str, reference: str, response: str) -> str:
    response = response or ''
    if self.max_response_chars and len(response) > self.max_response_chars:
      response = '...' + response[-self.max_response_chars:]
    return self.prompt.format(question=question or '', reference=reference or '', response=response)

  def parse(self, text: str) -> Optional[float]:
    """The score of the last verdict marker in the reply (after `</think>` when the judge reasons); None if none."""
    if not isinstance(text, str):
      return None
    close = text.rfind(rformat.THINK_CLOSE)
    tail = text[close + len(rformat.THINK_CLOSE):] if close >= 0 else text
    best, best_key = None, (-1, 0)
    for marker, score in self.verdicts:
      i = tail.rfind(marker)
      # The marker that ends last wins; at the same end the longer one ('INCORRECT' over 'CORRECT').
      key = (i + len(marker), len(marker))
      if i >= 0 and key > best_key:
        best, best_key = score, key
    return best


class Judge:
  """Batched judging with a sampler on the mesh. Construct from parts or `from_checkpoint`."""

  def __init__(self, sampler, params: Any, tokenizer, template: Template | str = 'plain',
               fmt: JudgeFormat = JudgeFormat(), max_new_tokens: int = 16, batch_size: int = 16,
               max_prompt_len: int = 1024, temperature: float = 0.0, system: Optional[str] = None,
               unparsable_score: float = 0.0, seed: int = 0):
    self.sampler, self.params, self.tokenizer = sampler, params, tokenizer
    self.template = get_template(template)
    self.fmt = fmt
    self.batch_size, self.max_prompt_len, self.system = int(batch_size), int(max_prompt_len), system
    self.unparsable_score = float(unparsable_score)
    self.seed = int(seed)
    self.config = evaluator.eval_sampler_config(
        sampler.config, tokenizer, num_samples=1, temperature=temperature, top_p=1.0,
        max_new_tokens=max_new_tokens, max_prompt_len=max_prompt_len)
    self.calls = 0

  @classmethod
  def from_checkpoint(cls, path: str, template: Template | str = 'plain', mesh_shape: Sequence[int] = (-1, 1, 1),
                      max_new_tokens: int = 16, stop_strings: Sequence[str] = (), cache_dtype: str = 'bfloat16',
                      fmt: Optional[Mapping[str, Any]] = None, **kwargs) -> 'Judge':
    """A judge from an r1jax workdir or a Hugging Face directory, on a mesh of `mesh_shape` over all devices."""
    from r1jax.evals import runner  # pylint: disable=import-outside-toplevel
    # preset '': the architecture comes from the checkpoint (model_config.json / config.json).
    config = {'init_from': str(path), 'mesh': {'shape': tuple(mesh_shape)}, 'model': {'preset': ''}}
    sampler, params, tokenizer = runner.load_policy(
        config, path, corpus=None, max_new_tokens=max_new_tokens,
        sampler_cfg={'stop_strings': tuple(stop_strings), 'cache_dtype': cache_dtype})
    judge_fmt = JudgeFormat(**{k: (tuple(tuple(x) for x in v) if k == 'verdicts' else v)
                               for k, v in dict(fmt or {}).items()})
    return cls(sampler, params, tokenizer, template, judge_fmt, max_new_tokens=max_new_tokens, **kwargs)

  def replies(self, questions: Sequence[str], references: Sequence[str], responses: Sequence[str]) -> list[str]:
    """The judge's raw replies, one per triple (batched through the sampler)."""
    records = [{'id': str(i), 'question': self.fmt.render(q, r, s)}
               for i, (q, r, s) in enumerate(zip(questions, references, responses))]
    if not records:
      return []
    gens = evaluator.generate_completions(
        sampler=self.sampler, params=self.params, tokenizer=self.tokenizer, template=self.template,
        records=records, config=self.config, batch_size=self.batch_size, max_prompt_len=self.max_prompt_len,
        rng=jax.random.fold_in(jax.random.key(self.seed), self.calls), system=self.system)
    self.calls += 1
    return [g[0]['text'] for g in gens]

  def verdicts(self, questions, references, responses) -> list[Optional[float]]:
    return [self.fmt.parse(t) for t in self.replies(questions, references, responses)]

  def __call__(self, questions, references, responses) -> list[float]:
    return [self.unparsable_score if v is None else v for v in self.verdicts(questions, references, responses)]


def judge_reward(completions: list[str], *, judge: Any, judge_init: Optional[Mapping[str, Any]] = None,
                 question: Optional[Sequence] = None, answer: Optional[Sequence] = None, task: Optional[Sequence] = None,
                 apply_to: Any = ('general',), scope: str = 'summary', prompt_opens_think: bool = False,
                 **fields) -> np.ndarray:
  """Reward: the judge's verdict on (question, answer as reference, response) for rows whose task is in
  `apply_to` ('all' for every row), 0 elsewhere. `scope='summary'` judges the text after `</think>` (as R1 judged
  the final answer), `'full'` the whole response. `judge` / `judge_init` resolve like scorers (built once)."""
  from r1jax.rewards import general  # pylint: disable=import-outside-toplevel
  del fields
  n = len(completions)
  out = np.zeros(n, np.float32)
  tasks = list(task) if task is not None else [None] * n
  rows = [i for i in range(n) if apply_to in ('all', '*') or str(tasks[i]) in
          ((apply_to,) if isinstance(apply_to, str) else tuple(apply_to))]
  if not rows:
    return out
  view = general.summary_text if scope == 'summary' else general.full_text
  qs = list(question) if question is not None else [''] * n
  refs = list(answer) if answer is not None else [''] * n
  fn = resolve_scorer(judge, judge_init)
  scores = fn([str(qs[i] or '') for i in rows], [str(refs[i] or '') for i in rows],
              [view(completions[i], prompt_opens_think) for i in rows])
  out[rows] = np.asarray(scores, np.float32)
  return out


def judge_correct(judge: 'Judge', records: Sequence[Mapping[str, Any]], texts: Sequence[str],
                  correct: np.ndarray, template: Template) -> tuple[np.ndarray, int]:
  """Rejection sampling: `correct` with the judge's verdicts on rows whose verifier kind is `general` (no rule can
  check them); the reference is the record's `answer` (or `reference`). Returns (correct, number judged)."""
  rows = [i for i, r in enumerate(records) if verifier_kind(r.get('verifier') or r.get('task')) == 'general']
  if not rows:
    return correct, 0
  from r1jax.rewards import general  # pylint: disable=import-outside-toplevel
  scores = judge([records[i].get('question', '') for i in rows],
                 [records[i].get('reference') or records[i].get('answer') or '' for i in rows],
                 [general.summary_text(texts[i], template.prompt_opens_think) or texts[i] for i in rows])
  out = np.array(correct, dtype=bool)
  out[rows] = np.asarray(scores) >= 1.0
  return out, len(rows)
