"""Held-out evaluation with the training sampler: k samples per problem, rule-based verdicts, metrics.

Used by the `eval` stage (`r1jax.evals.runner`), by the GRPO trainer for periodic held-out eval and
by rejection sampling (`generate_completions` + `verify`). Division of labour:
  device: the sharded `Sampler` (same programs as training, eval temperature / top-p), which
    returns token ids, lengths and finish reasons only;
  host: decoding, answer extraction, verification (`r1jax.rewards`, in the reward pool when one is
    given) and the metrics of `r1jax.evals.metrics`.
Batches are padded to `batch_size` by the prompt pipeline (`example_mask`), padded rows are dropped,
and batch i samples with `fold_in(key(seed), i)`, so a result depends only on the seed.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Mapping, Optional, Sequence

import jax
import numpy as np
from etils import epath

from r1jax import paths
from r1jax.data.pipeline import make_prompt_iterator
from r1jax.data.templates import Template, for_tokenizer, get_template
from r1jax.evals import curation
from r1jax.evals import metrics as metrics_lib
from r1jax.experiment import to_dict
from r1jax.rewards import countdown as rcountdown
from r1jax.rewards import format as rformat
from r1jax.rewards import math as rmath
from r1jax.rewards.registry import RewardSystem, build_reward_system, verifier_kind
from r1jax.rollout import FINISH_LENGTH, Sampler, SamplerConfig
from r1jax.tokenizer import Tokenizer

log = logging.getLogger(__name__)

# Record fields the verifiers read (see docs/rewards.md); everything else stays on the host.
VERIFIER_FIELDS = ('answer', 'task', 'verifier', 'numbers', 'target', 'tests', 'entry_point',
                   'prompt', 'target_language')
FINISH_NAMES = {0: 'stop', 1: 'length'}


@dataclasses.dataclass
class EvalResult:
  """`summary`: metric name -> float. `samples`: one dict per sample (see `evaluate`).
  `problems`: one dict per problem: id, num_samples, num_correct, pass_rate, voted_answer, cons."""
  summary: dict[str, float]
  samples: list[dict]
  problems: list[dict]


# ---------------------------------------------------------------------------- sampling


def default_prompt_buckets(max_prompt_len: int) -> tuple[int, ...]:
  """Powers of two from 32 up to max_prompt_len (inclusive): at most log2(P) prompt shapes compile."""
  buckets, b = [], 32
  while b < max_prompt_len:
    buckets.append(b)
    b *= 2
  return tuple(buckets) + (int(max_prompt_len),)


def eval_sampler_config(base: SamplerConfig, tokenizer: Tokenizer, *, num_samples: int,
                        temperature: float, top_p: float, top_k: int = 0,
                        max_new_tokens: Optional[int] = None,
                        max_prompt_len: Optional[int] = None) -> SamplerConfig:
  """`base` (the sampler's own config: buckets, cache dtype, stop sequences) with eval settings.

  temperature <= 0 means greedy decoding. Without prompt-length buckets in `base`, every distinct
  longest-prompt length would compile new programs; `default_prompt_buckets` bounds that.
  """
  greedy = temperature <= 0
  if not base.prompt_len_buckets and max_prompt_len:
    base = dataclasses.replace(base, prompt_len_buckets=default_prompt_buckets(max_prompt_len))
  return dataclasses.replace(
      base, num_samples=int(num_samples), greedy=greedy,
      temperature=1.0 if greedy else float(temperature), top_p=float(top_p), top_k=int(top_k),
      max_new_tokens=int(max_new_tokens or base.max_new_tokens),
      eos_ids=tuple(tokenizer.eos_ids), pad_id=int(tokenizer.pad_id))


def _host(x) -> np.ndarray:
  """A (possibly multi-host sharded) device array as a full host numpy array."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))


def _strip_turn(text: str, template: Template) -> str:
  if template.end_of_turn and text.endswith(template.end_of_turn):
    text = text[:-len(template.end_of_turn)]
  return text


def generate_completions(*, sampler: Sampler, params: Any, tokenizer: Tokenizer,
                         template: Template | str, records: Sequence[Mapping[str, Any]],
                         config: SamplerConfig, batch_size: int, max_prompt_len: int,
                         rng: jax.Array, system: Optional[str] = None) -> list[list[dict]]:
  """Samples `config.num_samples` completions for every record.

  Returns one list per record of G dicts {text, length, finish_reason} in sample order. Only ids,
  masks, lengths and finish reasons leave the device; the text is decoded here on the host.
  """
  template = for_tokenizer(template, tokenizer)
  out: list[list[dict]] = [[] for _ in records]
  if not records:
    return out
  g = config.num_samples
  # Positions, not ids, tie rows to records (ids may repeat in user data); the pipeline keeps order
  # because it neither shuffles nor shards here: every host samples every prompt.
  indexed = [dict(r, _eval_index=i) for i, r in enumerate(records)]
  it = make_prompt_iterator(indexed, tokenizer, template, batch_size=batch_size,
                            max_prompt_len=max_prompt_len, seed=0, shuffle=False, repeat=False,
                            shard_by_process=False, system=system)
  for b, batch in enumerate(it):
    valid = np.asarray(batch['example_mask'], bool)
    if not valid.any():
      continue
    ro = sampler.generate(params, batch['prompt_ids'], batch['prompt_mask'],
                          jax.random.fold_in(rng, b), config)
    ids, mask, lengths, finish = (_host(a) for a in (ro.completion_ids, ro.completion_mask,
                                                     ro.lengths, ro.finish_reason))
    for row in range(valid.shape[0]):
      if not valid[row]:
        continue   # a padding copy that fills the last batch
      idx = int(batch['_eval_index'][row])
      for s in range(g):
        r = row * g + s
        text = tokenizer.decode(ids[r][mask[r] != 0], stop_at_eos=True)
        out[idx].append({'text': _strip_turn(text, template), 'length': int(lengths[r]),
                         'finish_reason': int(finish[r])})
  missing = [i for i, o in enumerate(out) if len(o) != g]
  if missing:
    raise RuntimeError(f'generate_completions: records {missing[:5]} got no completions')
  return out


# ---------------------------------------------------------------------------- verification


def _reward_system(rewards) -> tuple[RewardSystem, bool]:
  """(system, owned): a given system is used as is; a config is built (and closed by us)."""
  if isinstance(rewards, RewardSystem):
    if 'accuracy' in rewards.weights or 'accuracy' in rewards.order:
      return rewards, False
    log.warning('The reward system has no accuracy reward; verifying inline instead.')
    rewards = None
  if rewards is None:
    # Inline: math-verify runs in a helper process killed at timeout_s; code runs sandboxed.
    return build_reward_system({'weights': {'accuracy': 1.0}, 'num_workers': 0}), True
  cfg = dict(to_dict(rewards))
  weights = dict(to_dict(cfg.get('weights')) or {})
  weights.setdefault('accuracy', 0.0)   # the verdict is always computed, weighted or not
  return build_reward_system({**cfg, 'weights': weights}), True


def verify(texts: Sequence[str], records: Sequence[Mapping[str, Any]], rewards: RewardSystem,
           lengths: Optional[Sequence[int]] = None):
  """Scores completions (record i goes with text i) in one call, so a pooled system spreads all
  of them over its workers. Returns the `RewardResult`; `components['accuracy']` is the verdict."""
  fields = {k: [r.get(k) for r in records] for k in VERIFIER_FIELDS
            if any(k in r for r in records)}
  fields['task'] = [r.get('task') or 'math' for r in records]
  if lengths is not None:
    fields['completion_lengths'] = [int(x) for x in lengths]
  return rewards.score(list(texts), fields)


def extracted_answer(text: str, task: Any) -> Optional[str]:
  """What a sample answered: the math answer, the Countdown equation (spaces removed), or None for
  code (the program is the completion itself)."""
  kind = verifier_kind(task)
  if kind == 'code':
    return None
  if kind == 'countdown':
    eq = rcountdown.extract_equation(text)
    return eq.replace(' ', '') if eq else None
  return rmath.extract_answer(text)


# ---------------------------------------------------------------------------- evaluate


def evaluate(*, sampler: Sampler, params: Any, tokenizer: Tokenizer, template: Template | str,
             records: Sequence[Mapping[str, Any]], num_samples: int = 4, temperature: float = 0.6,
             top_p: float = 0.95, top_k: int = 0, max_new_tokens: Optional[int] = None,
             batch_size: int = 8, max_prompt_len: int = 256, seed: int = 0,
             rewards: RewardSystem | Mapping | None = None, pass_ks: Sequence[int] = (1,),
             system: Optional[str] = None, vote_equivalence: bool = True) -> EvalResult:
  """Samples `num_samples` completions per record, verifies them and computes the metrics.

  Args:
    sampler: the (sharded) `Sampler`; its config supplies buckets, cache dtype, stop sequences and
      the default `max_new_tokens`.
    params: the policy params (sharded like the sampler expects).
    tokenizer / template: as in training; `system` overrides the template's system prompt.
    records: task records (`r1jax.data.tasks` schema: id, question, answer, task, extras).
    num_samples, temperature, top_p, top_k: sampling (R1: k = 4..64, T = 0.6, top-p = 0.95;
      temperature <= 0 is greedy).
    batch_size: prompts per `generate` call (each call makes batch_size * num_samples rows).
    seed: batch i samples with `fold_in(key(seed), i)`.
    rewards: a `RewardSystem` with an `accuracy` reward (e.g. the trainer's, pooled), a reward
      config for `build_reward_system`, or None (inline accuracy-only verification).
    pass_ks: pass@k values to report besides pass@1 (k <= num_samples).
    vote_equivalence: merge equivalent math answers in the vote with the verifier (else only
      normal-form keys; faster on huge k).

  Returns:
    EvalResult. summary keys: pass@1, pass@1_se, pass@{k}, pass@{k}_se, cons@{n}, cons@{n}_se
    (n = num_samples; absent when no problem is votable, i.e. code), format_rate, mean_length,
    truncation_rate, language_mixing_rate, reflection_rate and summary_rate (`r1jax.evals.curation`),
    num_problems, num_samples, num_voted, verify_errors, eval_time_s. Each sample:
    id, problem_index, sample_index, task, question, answer (gold), completion, extracted_answer,
    correct, format_ok, length, finish_reason ('stop' | 'length').
  """
  t0 = time.time()
  template = for_tokenizer(template, tokenizer)
  records = [dict(r) for r in records]
  for i, r in enumerate(records):
    r.setdefault('id', str(i))
  cfg = eval_sampler_config(sampler.config, tokenizer, num_samples=num_samples,
                            temperature=temperature, top_p=top_p, top_k=top_k,
                            max_new_tokens=max_new_tokens, max_prompt_len=max_prompt_len)
  gens = generate_completions(sampler=sampler, params=params, tokenizer=tokenizer,
                              template=template, records=records, config=cfg,
                              batch_size=batch_size, max_prompt_len=max_prompt_len,
                              rng=jax.random.key(seed), system=system)
  texts = [g['text'] for gs in gens for g in gs]
  flat_records = [r for r, gs in zip(records, gens) for _ in gs]
  system_, owned = _reward_system(rewards)
  try:
    res = verify(texts, flat_records, system_, lengths=[g['length'] for gs in gens for g in gs])
  finally:
    if owned:
      system_.close()
  correct = res.components['accuracy'] >= 1.0
  errors = sum(s != 'ok' for s in res.statuses['accuracy'])

  samples, problems, n = [], [], 0
  equivalent = metrics_lib.math_equivalent if vote_equivalence else None
  for p, (rec, gs) in enumerate(zip(records, gens)):
    answers, verdicts = [], []
    for s, g in enumerate(gs):
      ans = extracted_answer(g['text'], rec.get('task'))
      ok = bool(correct[n])
      n += 1
      answers.append(ans)
      verdicts.append(ok)
      samples.append({
          'id': rec['id'], 'problem_index': p, 'sample_index': s, 'task': rec.get('task', 'math'),
          'question': rec.get('question'), 'answer': rec.get('answer'), 'completion': g['text'],
          'extracted_answer': ans, 'correct': ok,
          'format_ok': rformat.is_strict_format(g['text'], template.prompt_opens_think,
                                                template.answer_tags),
          'length': g['length'], 'finish_reason': FINISH_NAMES.get(g['finish_reason'], 'stop')})
    kind = verifier_kind(rec.get('task'))
    problem = {'id': rec['id'], 'num_samples': len(gs), 'num_correct': int(sum(verdicts)),
               'pass_rate': float(np.mean(verdicts)), 'correct': verdicts, 'answers': answers,
               'votable': kind != 'code', 'voted_answer': None, 'cons': None}
    if problem['votable']:
      winner = metrics_lib.majority_vote(answers, None if kind == 'countdown' else equivalent)
      problem['voted_answer'] = answers[winner] if winner is not None else None
      problem['cons'] = bool(verdicts[winner]) if winner is not None else False
    problems.append(problem)

  summary = metrics_lib.summarize(problems, pass_ks)
  summary.update(
      format_rate=float(np.mean([s['format_ok'] for s in samples])) if samples else 0.0,
      mean_length=float(np.mean([s['length'] for s in samples])) if samples else 0.0,
      truncation_rate=float(np.mean([s['finish_reason'] == 'length' for s in samples]))
      if samples else 0.0,
      verify_errors=float(errors), eval_time_s=time.time() - t0)
  # Share of sampled CoTs that mix languages (target: the record's target_language, else the question's).
  cots = [rformat.think_text(s['completion'], template.prompt_opens_think) for s in samples]
  summary['language_mixing_rate'] = curation.language_mixing_rate(
      cots, [s['question'] for s in samples], [r.get('target_language') for r in flat_records])
  # Share of sampled CoTs with a reflection phrase ("wait", "let me check": `curation.REFLECTION_PHRASES`).
  summary['reflection_rate'] = curation.reflection_rate(cots)
  # Share with a readable summary after the reasoning (R1's cold-start format; R1-Zero writes none).
  flags = curation.summary_flags([s['completion'] for s in samples], template.prompt_opens_think)
  summary['summary_rate'] = float(flags.mean()) if flags.size else 0.0
  for p in problems:   # the per-sample lists already live in `samples`
    del p['correct'], p['answers']
  return EvalResult(summary=summary, samples=samples, problems=problems)


def write_samples(path: str | os.PathLike, samples: Sequence[Mapping[str, Any]]) -> None:
  """Every sample as one JSON line, written atomically (`r1jax.paths.write_atomic`)."""
  paths.makedirs(epath.Path(path).parent)
  paths.write_atomic(path, ''.join(json.dumps(s, ensure_ascii=False, default=str) + '\n'
                                   for s in samples))


def is_truncated(finish_reason: int) -> bool:
  return int(finish_reason) == FINISH_LENGTH
