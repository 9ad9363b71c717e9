"""Stage `generate_responses`: a teacher writes SFT data for general (non-reasoning) prompts.

DeepSeek-R1 (sec. 2.3.3, non-reasoning data): "For certain non-reasoning tasks, we call DeepSeek-V3 to generate a
potential chain-of-thought before answering the question by prompting. However, for simpler queries, such as
'hello', we do not provide a CoT in response." Here any r1jax / Hugging Face checkpoint is the teacher: it samples
`num_samples` responses per prompt in the reasoning format of `template` (`<think>...</think>` then the answer) on
the mesh; the first usable one (not truncated, with a non-empty answer after `</think>`, passing the CoT readability
filters of `r1jax.evals.curation`, and accepted by the `judge` when one is given and the row has a reference) is
kept and written

  with a CoT     as `output_template.render_completion(reasoning, summary)` (e.g. `<think>\\n...\\n</think>\\nanswer`)
  without a CoT  as the answer alone (the summary)

per row: the record's `cot` field (bool) when present, else no CoT for questions of at most `no_cot_max_words`
words ("hello"), else `default_cot`. Output (`out_dir`): `sft_data.jsonl` rows {prompt, completion, id, question,
task, cot, source_checkpoint, sample_index, length}, `responses.jsonl` per prompt {id, kept, reason}, `summary.json`;
resumable chunk by chunk exactly like rejection sampling (same progress marker and crash rules).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
from etils import epath

from r1jax import paths
from r1jax.data.templates import Template, get_template
from r1jax.evals import curation, evaluator
from r1jax.evals import rejection_sampling as rs
from r1jax.rollout import FINISH_LENGTH, Sampler

log = logging.getLogger(__name__)
RESPONSES_FILE = 'responses.jsonl'


@dataclasses.dataclass(frozen=True)
class ResponseOptions:
  num_samples: int = 2               # candidates per prompt; the first usable one is kept
  temperature: float = 0.7
  top_p: float = 0.95
  max_new_tokens: int = 0            # 0: the sampler's
  max_prompt_len: int = 512
  batch_size: int = 8
  chunk_size: int = 64
  seed: int = 0
  system: Optional[str] = None
  cot_field: str = 'cot'
  default_cot: bool = True
  no_cot_max_words: int = 3          # questions this short ("hello") get no CoT unless the row says so; 0: off
  output_template: str = 'r1_cold_start'
  filters: curation.CurationFilters = curation.CurationFilters()

  def __post_init__(self):
    if self.num_samples < 1 or self.chunk_size < 1 or self.batch_size < 1:
      raise ValueError('num_samples, chunk_size and batch_size must be >= 1')


def wants_cot(record: Mapping[str, Any], opts: ResponseOptions) -> bool:
  """Whether the SFT response of this row keeps its chain of thought."""
  if record.get(opts.cot_field) is not None:
    return bool(record[opts.cot_field])
  if opts.no_cot_max_words and len(str(record.get('question', '')).split()) <= opts.no_cot_max_words:
    return False
  return opts.default_cot


def _reason(sample: Mapping[str, Any], template: Template, opts: ResponseOptions, target: str) -> Optional[str]:
  if int(sample['finish_reason']) == FINISH_LENGTH:
    return 'truncated'
  reasoning, summary = rs.split_reasoning(sample['text'], template)
  if not summary:
    return 'no_summary'
  return curation.cot_rejection(reasoning, opts.filters, target)


def generate_responses(*, sampler: Sampler, params: Any, tokenizer, template: Template | str,
                       records: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike,
                       options: ResponseOptions = ResponseOptions(), source_checkpoint: str = '',
                       judge: Any = None, max_chunks: Optional[int] = None,
                       on_chunk_done: Optional[Callable[[int, dict], None]] = None) -> dict:
  """Runs (or resumes) response generation over `records` ({id, question[, cot, answer]}); returns totals."""
  opts = options
  template = get_template(template)
  out_t = get_template(opts.output_template)
  out = epath.Path(out_dir)
  records = [dict(r) for r in records]
  for i, r in enumerate(records):
    r.setdefault('id', str(i))
  if len({r['id'] for r in records}) != len(records):
    raise ValueError('record ids must be unique (resume is keyed by id)')
  fp = rs._fingerprint(records, opts, template, source_checkpoint)  # pylint: disable=protected-access
  write = jax.process_index() == 0
  files = {'sft': out / rs.SFT_FILE, 'responses': out / RESPONSES_FILE}
  progress_path = out / rs.PROGRESS_FILE
  totals = {'num_prompts': len(records), 'prompts_done': 0, 'chunks_done': 0, 'num_examples': 0,
            'with_cot': 0, 'without_cot': 0, 'dropped': {}}
  sizes = {'sft': 0, 'responses': 0}
  if progress_path.exists():
    prog = json.loads(progress_path.read_text())
    if prog.get('fingerprint') != fp:
      raise ValueError(f'{out} holds generate_responses output of a different configuration; use a new workdir')
    totals, sizes = prog['totals'], prog['sizes']
  if write:
    out.mkdir(parents=True, exist_ok=True)
    for key, path in files.items():
      rs._cut_to(path, sizes[key])  # pylint: disable=protected-access
  cfg = evaluator.eval_sampler_config(
      sampler.config, tokenizer, num_samples=opts.num_samples, temperature=opts.temperature,
      top_p=opts.top_p, max_new_tokens=opts.max_new_tokens or None, max_prompt_len=opts.max_prompt_len)
  num_chunks = -(-len(records) // opts.chunk_size)
  ran = 0
  for c in range(int(totals['chunks_done']), num_chunks):
    if max_chunks is not None and ran >= max_chunks:
      break
    chunk = records[c * opts.chunk_size:(c + 1) * opts.chunk_size]
    gens = evaluator.generate_completions(
        sampler=sampler, params=params, tokenizer=tokenizer, template=template, records=chunk, config=cfg,
        batch_size=opts.batch_size, max_prompt_len=opts.max_prompt_len,
        rng=jax.random.fold_in(jax.random.key(opts.seed), c), system=opts.system)
    accepted = None
    if judge is not None:   # rows with a reference: the judge must accept the answer
      from r1jax.evals import judge as judge_lib  # pylint: disable=import-outside-toplevel
      flat_recs = [dict(r, task='general') for r, gs in zip(chunk, gens) for _ in gs]
      flat_texts = [g['text'] for gs in gens for g in gs]
      ok, _ = judge_lib.judge_correct(judge, flat_recs, flat_texts, [False] * len(flat_texts), template)
      has_ref = [bool(r.get('reference') or r.get('answer')) for r in flat_recs]
      accepted = [bool(o) or not h for o, h in zip(ok, has_ref)]
    sft_rows, reports, k = [], [], 0
    for rec, gs in zip(chunk, gens):
      target = curation.target_for(rec, opts.filters)
      reason, kept = None, None
      for s, g in enumerate(gs):
        reason = _reason(g, template, opts, target)
        if reason is None and accepted is not None and not accepted[k + s]:
          reason = 'judge'
        if reason is None:
          kept = s
          break
        totals['dropped'][reason] = totals['dropped'].get(reason, 0) + 1
      k += len(gs)
      if kept is not None:
        cot = wants_cot(rec, opts)
        reasoning, summary = rs.split_reasoning(gs[kept]['text'], template)
        completion = out_t.render_completion(reasoning=reasoning, summary=summary) if cot else summary
        sft_rows.append({'prompt': out_t.render_prompt(rec['question']), 'completion': completion,
                         'id': rec['id'], 'question': rec['question'], 'task': rec.get('task', 'general'),
                         'cot': cot, 'source_checkpoint': source_checkpoint, 'sample_index': kept,
                         'length': int(gs[kept]['length'])})
        totals['with_cot' if cot else 'without_cot'] += 1
      reports.append({'id': rec['id'], 'kept': kept is not None, 'reason': None if kept is not None else reason})
    totals['num_examples'] += len(sft_rows)
    totals['prompts_done'] += len(chunk)
    totals['chunks_done'] = c + 1
    if write:   # data first, then the marker that makes it count
      sizes = {'sft': rs._append(files['sft'], sft_rows),  # pylint: disable=protected-access
               'responses': rs._append(files['responses'], reports)}  # pylint: disable=protected-access
      rs._write_json_atomic(progress_path, {'fingerprint': fp, 'totals': totals,  # pylint: disable=protected-access
                                            'sizes': sizes, 'source_checkpoint': source_checkpoint})
    ran += 1
    log.info('generate_responses: %d/%d prompts, %d examples', totals['prompts_done'], len(records),
             totals['num_examples'])
    if on_chunk_done is not None:
      on_chunk_done(c, dict(totals))
  totals = dict(totals, complete=totals['chunks_done'] >= num_chunks)
  if write and totals['complete']:
    rs._write_json_atomic(out / rs.SUMMARY_FILE, {  # pylint: disable=protected-access
        'totals': totals, 'options': dataclasses.asdict(opts), 'template': template.name,
        'source_checkpoint': source_checkpoint})
  return totals


@paths.resolves_paths
def run(config, workdir: str | os.PathLike, *, max_chunks: Optional[int] = None) -> dict:
  """Stage entry point: `config.responses` (ResponseOptions fields, `tasks` or `path` of prompts, `template`)."""
  from r1jax.data import tasks as tasks_lib  # pylint: disable=import-outside-toplevel
  from r1jax.evals import runner  # pylint: disable=import-outside-toplevel
  from r1jax.stage_config import to_dict  # pylint: disable=import-outside-toplevel
  section = dict(to_dict(config.get('responses', None)) or {})
  task_cfgs = list(section.pop('tasks', ()) or ())
  if not task_cfgs:
    raise ValueError("config.responses.tasks is empty (e.g. [{'name': 'jsonl', 'task': 'general', 'path': ...}])")
  from r1jax.rl import tasks as rl_tasks  # pylint: disable=import-outside-toplevel
  load = lambda t: (rl_tasks.load_general_task(t) if t.get('task') == rl_tasks.GENERAL_TASK
                    else tasks_lib.load_task(t))
  records = [r for t in task_cfgs for r in load(dict(to_dict(t)))]
  template = section.pop('template', 'r1_cold_start')
  sampler_keys = ('stop_strings', 'cache_dtype', 'prompt_len_buckets', 'batch_buckets', 'engine',
                  'engine_slots', 'engine_refill_every', 'engine_refill')
  sampler_cfg = {k: section.pop(k) for k in sampler_keys if k in section}
  filters = curation.CurationFilters(**dict(section.pop('filters', {}) or {}))
  fields = {f.name for f in dataclasses.fields(ResponseOptions)}
  unknown = set(section) - fields
  if unknown:
    raise KeyError(f'unknown config.responses keys {sorted(unknown)}')
  opts = ResponseOptions(**section, filters=filters)
  if opts.system == '':
    opts = dataclasses.replace(opts, system=None)
  sampler, params, tokenizer = runner.load_policy(
      config, workdir, corpus=lambda: [r['question'] for r in records],
      max_new_tokens=opts.max_new_tokens or 512, sampler_cfg=sampler_cfg)
  return generate_responses(sampler=sampler, params=params, tokenizer=tokenizer, template=template,
                            records=records, out_dir=workdir, options=opts, max_chunks=max_chunks,
                            source_checkpoint=str(config.get('init_from', '') or ''))
