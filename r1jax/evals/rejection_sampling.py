"""Stage `rejection_sampling` (R1 stage 3) and the cold-start data generator (R1 stage 1).

From a checkpoint, sample N completions per prompt with the sharded sampler, verify them with the
rule-based verifiers, keep correct ones that pass the readability filters (no language mixing, not
over-long or truncated, no long paragraphs, no code blocks, R1 format: `r1jax.evals.curation`), choose
per prompt by an explicit rule (`random` by default, `shortest`, `first` or `all` correct, up to
`max_per_prompt`), and write an SFT dataset with provenance.

Outputs (in `out_dir`, the stage's workdir):
  sft_data.jsonl     {prompt, completion, id, question, answer, task, source_checkpoint,
                      sample_index, reward, pass_rate, length}: the SFT stage reads prompt/completion
  pass_rates.jsonl   per prompt: id, num_samples, num_correct, pass_rate, in_band, num_kept,
                      filtered (reason -> count)
  progress.json      the resume marker (written atomically after each chunk)
  summary.json       totals, written when every prompt is done

Resumability: prompts are processed in fixed chunks; chunk c samples with `fold_in(key(seed), c)`,
so its output does not depend on what ran before. After a chunk, its lines are appended to the two
JSONL files and fsynced, then `progress.json` (chunks done, byte sizes of both files, running
totals) is replaced atomically. On restart, both files are cut back to the recorded sizes (dropping
a chunk that crashed halfway through its append) and finished chunks are skipped: a crash loses at
most the chunk in flight, and the output equals an uninterrupted run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np
from etils import epath

from r1jax import paths
from r1jax.data.templates import Template, get_template
from r1jax.evals import curation, evaluator
from r1jax import stage_config
from r1jax.stage_config import to_dict
from r1jax.rewards import format as rformat
from r1jax.rewards import language as rlanguage
from r1jax.rewards.registry import RewardSystem
from r1jax.rollout import FINISH_LENGTH, Sampler

log = logging.getLogger(__name__)

SFT_FILE, PASS_RATES_FILE, PROGRESS_FILE, SUMMARY_FILE = (
    'sft_data.jsonl', 'pass_rates.jsonl', 'progress.json', 'summary.json')


@dataclasses.dataclass(frozen=True)
class RejectionOptions:
  """Sampling, selection and filtering settings (all JSON-serialisable; part of the fingerprint)."""
  num_samples: int = 16              # N completions per prompt
  temperature: float = 0.7
  top_p: float = 0.95
  top_k: int = 0
  max_new_tokens: int = 0            # 0: the sampler's
  max_prompt_len: int = 512
  batch_size: int = 8                # prompts per generate call
  chunk_size: int = 64               # prompts per resumable chunk
  seed: int = 0
  system: Optional[str] = None       # None: the template's default system prompt
  select: str = 'random'             # 'random', 'shortest' (fewest tokens), 'first' or 'all' (curation.choose)
  max_per_prompt: int = 1
  require_format: bool = True        # strict R1 format of the sampling template
  allow_summary: bool = False        # ... with a readable summary allowed before <answer>
  target_language: str = 'auto'      # 'auto': the question's language (or the record's target_language)
  min_language_share: float = 0.95   # CoT words in the target language; CoTs without words pass
  max_paragraph_words: int = 0       # 0: no bound; words per blank-line-separated CoT paragraph
  max_completion_tokens: int = 0     # 0: no bound besides truncation (truncated never kept)
  max_reasoning_chars: int = 0       # 0: no bound
  max_code_fraction: float = 0.5     # share of CoT characters inside ``` fences
  max_code_blocks: int = 0           # R1 drops CoTs with code blocks; -1: no bound
  pass_rate_min: float = 0.0         # keep prompts whose pass rate is in [min, max]
  pass_rate_max: float = 1.0
  output_format: str = 'raw'         # 'raw': the completion as sampled; 'cold_start': see below
  output_template: str = 'r1_cold_start'   # cold_start: renders prompt and reasoning + summary
  summary_format: str = '{summary}'  # cold_start: fields {summary} (text after </think>), {answer}
  min_summary_chars: int = 1

  def __post_init__(self):
    if self.select not in curation.SELECT_RULES:
      raise ValueError(f'select must be one of {curation.SELECT_RULES}, got {self.select!r}')
    if self.output_format not in ('raw', 'cold_start'):
      raise ValueError(f"output_format must be 'raw' or 'cold_start', got {self.output_format!r}")
    if self.num_samples < 1 or self.chunk_size < 1 or self.batch_size < 1:
      raise ValueError('num_samples, chunk_size and batch_size must be >= 1')
    if not 0.0 <= self.pass_rate_min <= self.pass_rate_max <= 1.0:
      raise ValueError('need 0 <= pass_rate_min <= pass_rate_max <= 1')

  @classmethod
  def from_config(cls, cfg: Any) -> 'RejectionOptions':
    """The options part of a `RejectionSection` (or of a mapping of its fields)."""
    if not isinstance(cfg, RejectionSection):
      cfg = stage_config.build(RejectionSection, cfg, 'config.rejection')
    return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class RejectionSection(RejectionOptions, stage_config.SamplerSection):
  """`config.rejection`: the options above plus the prompts, templates and reward."""
  mode: str = 'rejection'            # 'rejection' (stage 3) or 'cold_start' (stage 1 data)
  tasks: tuple = ()                  # task configs for `r1jax.data.tasks.load_task`
  template: str = 'r1_zero'
  question_format: str = ''
  max_prompts: int = 0               # 0 = all
  max_chunks: int = 0                # 0 = all; > 0 stops early (resume later)
  reward: stage_config.RewardsConfig = stage_config.RewardsConfig(weights={'accuracy': 1.0})

  def __post_init__(self):
    super().__post_init__()
    stage_config.SamplerSection.__post_init__(self)  # RejectionOptions' does not chain to it
    if self.mode not in ('rejection', 'cold_start'):
      raise ValueError(f"mode must be 'rejection' or 'cold_start', got {self.mode!r}")


@dataclasses.dataclass(frozen=True)
class RejectionConfig(stage_config.CommonConfig):
  """A whole rejection-sampling stage (`config.stage == "rejection_sampling"`)."""
  stage: str = 'rejection_sampling'
  rejection: RejectionSection = RejectionSection()


def rejection_config(config: Any) -> RejectionConfig:
  if isinstance(config, RejectionConfig):
    return config
  d = dict(to_dict(config) or {})
  for k in ('optim', 'train'):   # base_config sections this stage does not use
    d.pop(k, None)
  return stage_config.build(RejectionConfig, d, 'config')


# ---------------------------------------------------------------------------- filters


code_stats = curation.code_stats


def mixed_language(cot: str, target: str, min_share: float) -> bool:
  """Whether fewer than min_share of the CoT's words are in the target language. Numbers-only CoTs
  (no words at all) are not mixed."""
  return rlanguage.is_mixed(cot, target, min_share)


def curation_filters(opts: RejectionOptions) -> curation.CurationFilters:
  return curation.CurationFilters(
      target_language=opts.target_language, min_language_share=opts.min_language_share,
      max_paragraph_words=opts.max_paragraph_words, max_code_blocks=opts.max_code_blocks,
      max_code_fraction=opts.max_code_fraction)


def split_reasoning(text: str, template: Template) -> tuple[str, str]:
  """(reasoning, summary): the CoT, and the text after `</think>` with answer tags removed."""
  reasoning = rformat.think_text(text, template.prompt_opens_think).strip()
  full = template.full_response(text)
  close = full.rfind(template.think_close)
  if close < 0:
    return reasoning, ''
  summary = full[close + len(template.think_close):]
  summary = summary.replace(rformat.ANSWER_OPEN, '').replace(rformat.ANSWER_CLOSE, '')
  return reasoning, summary.strip()


def reject_reason(sample: Mapping[str, Any], template: Template, opts: RejectionOptions,
                  target: str = 'en') -> Optional[str]:
  """Why a correct sample is not usable as SFT data, or None. `sample` has text, length,
  finish_reason; `target` is the CoT's language."""
  text = sample['text']
  if int(sample['finish_reason']) == FINISH_LENGTH:
    return 'truncated'
  if opts.max_completion_tokens and sample['length'] > opts.max_completion_tokens:
    return 'too_long'
  if opts.require_format and not rformat.is_strict_format(text, template.prompt_opens_think,
                                                          template.answer_tags, opts.allow_summary):
    return 'format'
  reasoning, summary = split_reasoning(text, template)
  if opts.max_reasoning_chars and len(reasoning) > opts.max_reasoning_chars:
    return 'too_long'
  reason = curation.cot_rejection(reasoning, curation_filters(opts), target)
  if reason is not None:
    return reason
  if opts.output_format == 'cold_start' and (not reasoning or
                                             len(summary) < opts.min_summary_chars):
    return 'no_summary'
  return None


def render_example(sample: Mapping[str, Any], record: Mapping[str, Any], template: Template,
                   opts: RejectionOptions) -> tuple[str, str]:
  """(prompt, completion) text of an SFT example: as sampled, or re-rendered in the readable
  cold-start format (reasoning, then a summary) of `opts.output_template`."""
  if opts.output_format == 'raw':
    return template.render_prompt(record['question'], system=opts.system), sample['text']
  out = get_template(opts.output_template)
  reasoning, summary = split_reasoning(sample['text'], template)
  summary = opts.summary_format.format(summary=summary, answer=sample.get('extracted_answer'))
  return (out.render_prompt(record['question']),
          out.render_completion(reasoning=reasoning, summary=summary))


def select_examples(samples: Sequence[dict], correct: Sequence[bool], rewards: Sequence[float],
                    record: Mapping[str, Any], template: Template, opts: RejectionOptions,
                    source_checkpoint: str) -> tuple[list[dict], dict]:
  """The SFT rows of one prompt and its pass-rate row."""
  n = len(samples)
  pass_rate = float(np.mean(correct)) if n else 0.0
  in_band = opts.pass_rate_min <= pass_rate <= opts.pass_rate_max
  filtered: dict[str, int] = {}
  candidates = []
  target = curation.target_for(record, curation_filters(opts))
  for s, (sample, ok) in enumerate(zip(samples, correct)):
    if not ok:
      continue
    reason = reject_reason(sample, template, opts, target)
    if reason is not None:
      filtered[reason] = filtered.get(reason, 0) + 1
    else:
      candidates.append(s)
  chosen = curation.choose(candidates, [s['length'] for s in samples], opts.select, opts.max_per_prompt,
                           curation.prompt_rng(opts.seed, record['id']))
  rows = []
  if in_band:
    for s in chosen:
      prompt, completion = render_example(samples[s], record, template, opts)
      rows.append({'prompt': prompt, 'completion': completion, 'id': record['id'],
                   'question': record['question'], 'answer': record.get('answer'),
                   'task': record.get('task', 'math'), 'source_checkpoint': source_checkpoint,
                   'sample_index': s, 'reward': float(rewards[s]), 'pass_rate': pass_rate,
                   'length': int(samples[s]['length'])})
  report = {'id': record['id'], 'num_samples': n, 'num_correct': int(np.sum(correct)),
            'pass_rate': pass_rate, 'in_band': in_band, 'num_kept': len(rows),
            'num_candidates': len(candidates), 'filtered': filtered}
  return rows, report


# ---------------------------------------------------------------------------- resumable driver


def _fingerprint(records: Sequence[Mapping], opts: RejectionOptions, template: Template,
                 source_checkpoint: str) -> str:
  h = hashlib.sha256()
  h.update(json.dumps({'opts': dataclasses.asdict(opts), 'template': dataclasses.asdict(template),
                       'source': source_checkpoint}, sort_keys=True, default=str).encode())
  for r in records:
    h.update(str(r['id']).encode() + b'\0')
  return h.hexdigest()[:16]


def _append(path: epath.Path, rows: Sequence[Mapping]) -> int:
  """Appends JSON lines durably (remote: rewrites the object); returns the size afterwards."""
  return paths.append(path, ''.join(json.dumps(r, ensure_ascii=False, default=str) + '\n'
                                    for r in rows))


def _write_json_atomic(path: epath.Path, obj: Any) -> None:
  paths.write_atomic(path, json.dumps(obj, indent=1, default=str))


def _cut_to(path: epath.Path, size: int) -> None:
  if path.exists():
    have = paths.size(path)
    if have < size:
      raise RuntimeError(f'{path} is shorter than its progress marker says ({size} bytes): '
                         'the output was modified; use a new workdir')
    if have != size:
      paths.truncate(path, size)
  else:
    if size:
      raise RuntimeError(f'{path} is missing but progress.json says it has {size} bytes')
    path.write_bytes(b'')


def rejection_sample(*, sampler: Sampler, params: Any, tokenizer, template: Template | str,
                     records: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike,
                     options: RejectionOptions = RejectionOptions(),
                     rewards: RewardSystem | Mapping | None = None, source_checkpoint: str = '',
                     max_chunks: Optional[int] = None,
                     on_chunk_done: Optional[Callable[[int, dict], None]] = None,
                     judge: Any = None) -> dict:
  """Runs (or resumes) rejection sampling over `records`; returns the running totals.

  `judge` (an `r1jax.evals.judge.Judge`) decides correctness for rows no rule can verify (verifier
  kind `general`, e.g. writing with a reference answer), as R1 did with DeepSeek-V3.

  `max_chunks` stops after that many chunks in this call (`complete` is then False); a later call
  with the same arguments resumes. `on_chunk_done(chunk_index, totals)` runs after each committed
  chunk (progress hooks; tests inject crashes there). Only process 0 writes files.
  """
  opts = options
  template = get_template(template)
  out = epath.Path(out_dir)
  records = [dict(r) for r in records]
  for i, r in enumerate(records):
    r.setdefault('id', str(i))
  ids = [r['id'] for r in records]
  if len(set(ids)) != len(ids):
    raise ValueError('record ids must be unique (pass rates and resume are keyed by id)')
  fp = _fingerprint(records, opts, template, source_checkpoint)
  write = jax.process_index() == 0
  files = {k: out / name for k, name in (('sft', SFT_FILE), ('pass_rates', PASS_RATES_FILE))}
  progress_path = out / PROGRESS_FILE
  totals = {'num_prompts': len(records), 'prompts_done': 0, 'chunks_done': 0, 'num_examples': 0,
            'num_samples': 0, 'num_correct': 0, 'prompts_in_band': 0, 'prompts_with_example': 0,
            'filtered': {}}
  sizes = {'sft': 0, 'pass_rates': 0}
  if progress_path.exists():
    prog = json.loads(progress_path.read_text())
    if prog.get('fingerprint') != fp:
      raise ValueError(f'{out} holds rejection-sampling output of a different configuration '
                       f'(fingerprint {prog.get("fingerprint")} != {fp}); use a new workdir')
    totals, sizes = prog['totals'], prog['sizes']
    log.info('Resuming rejection sampling at prompt %d of %d', totals['prompts_done'],
             len(records))
  if write:
    out.mkdir(parents=True, exist_ok=True)
    for key, path in files.items():
      _cut_to(path, sizes[key])

  cfg = evaluator.eval_sampler_config(
      sampler.config, tokenizer, num_samples=opts.num_samples, temperature=opts.temperature,
      top_p=opts.top_p, top_k=opts.top_k, max_new_tokens=opts.max_new_tokens or None,
      max_prompt_len=opts.max_prompt_len)
  system_, owned = evaluator._reward_system(rewards)  # pylint: disable=protected-access
  num_chunks = -(-len(records) // opts.chunk_size)
  ran = 0
  try:
    for c in range(int(totals['chunks_done']), num_chunks):
      if max_chunks is not None and ran >= max_chunks:
        break
      chunk = records[c * opts.chunk_size:(c + 1) * opts.chunk_size]
      gens = evaluator.generate_completions(
          sampler=sampler, params=params, tokenizer=tokenizer, template=template, records=chunk,
          config=cfg, batch_size=opts.batch_size, max_prompt_len=opts.max_prompt_len,
          rng=jax.random.fold_in(jax.random.key(opts.seed), c), system=opts.system)
      flat = [g for gs in gens for g in gs]
      res = evaluator.verify([g['text'] for g in flat], [r for r, gs in zip(chunk, gens) for _ in gs],
                             system_, lengths=[g['length'] for g in flat])
      correct = res.components['accuracy'] >= 1.0
      if judge is not None:
        from r1jax.evals import judge as judge_lib  # pylint: disable=import-outside-toplevel
        flat_records = [r for r, gs in zip(chunk, gens) for _ in gs]
        correct, n_judged = judge_lib.judge_correct(judge, flat_records, [g['text'] for g in flat], correct,
                                                    template)
        totals['judged'] = totals.get('judged', 0) + n_judged
      sft_rows, reports, k = [], [], 0
      for rec, gs in zip(chunk, gens):
        for g in gs:
          g['extracted_answer'] = evaluator.extracted_answer(g['text'], rec.get('task'))
        n = len(gs)
        rows, report = select_examples(gs, correct[k:k + n], res.total[k:k + n], rec, template,
                                       opts, source_checkpoint)
        k += n
        sft_rows += rows
        reports.append(report)
        totals['num_samples'] += n
        totals['num_correct'] += report['num_correct']
        totals['prompts_in_band'] += int(report['in_band'])
        totals['prompts_with_example'] += int(bool(rows))
        for reason, cnt in report['filtered'].items():
          totals['filtered'][reason] = totals['filtered'].get(reason, 0) + cnt
      totals['num_examples'] += len(sft_rows)
      totals['prompts_done'] += len(chunk)
      totals['chunks_done'] = c + 1
      if write:   # data first, then the marker that makes it count
        sizes = {'sft': _append(files['sft'], sft_rows),
                 'pass_rates': _append(files['pass_rates'], reports)}
        _write_json_atomic(progress_path, {'fingerprint': fp, 'totals': totals, 'sizes': sizes,
                                           'source_checkpoint': source_checkpoint})
      ran += 1
      log.info('Rejection sampling: %d/%d prompts, %d examples', totals['prompts_done'],
               len(records), totals['num_examples'])
      if on_chunk_done is not None:
        on_chunk_done(c, dict(totals))
  finally:
    if owned:
      system_.close()
  totals = dict(totals, complete=totals['chunks_done'] >= num_chunks,
                pass_rate_mean=totals['num_correct'] / max(totals['num_samples'], 1))
  if write and totals['complete']:
    _write_json_atomic(out / SUMMARY_FILE, {'totals': totals, 'options': dataclasses.asdict(opts),
                                            'template': template.name,
                                            'source_checkpoint': source_checkpoint})
  return totals


def build_cold_start_data(*, sampler: Sampler, params: Any, tokenizer,
                          records: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike,
                          source_template: Template | str = 'r1_zero',
                          output_template: str = 'r1_cold_start',
                          options: RejectionOptions = RejectionOptions(), **kwargs) -> dict:
  """R1 stage 1: cold-start SFT data from a model's own verified outputs (R1 used R1-Zero's).

  Samples with `source_template` (the R1-Zero prompt), keeps verified-correct completions that pass
  the readability filters (no language mixing, bounded length, R1 format, a non-empty summary after
  `</think>`), and rewrites them in the readable format of `output_template`: the reasoning, then
  a summary (`options.summary_format`). Resumable like `rejection_sample` (same kwargs).
  """
  opts = dataclasses.replace(options, output_format='cold_start', output_template=output_template)
  return rejection_sample(sampler=sampler, params=params, tokenizer=tokenizer,
                          template=source_template, records=records, out_dir=out_dir,
                          options=opts, **kwargs)


# ---------------------------------------------------------------------------- stage


@paths.resolves_paths
def run(config, workdir: str | os.PathLike, *, max_chunks: Optional[int] = None,
        on_chunk_done: Optional[Callable[[int, dict], None]] = None) -> dict:
  """Stage entry point: `config.rejection` (options, `tasks`, `template`, `reward`); resumable."""
  from r1jax.data import tasks as tasks_lib
  from r1jax.evals import runner
  cfg = rejection_config(config)
  stage_config.announce(cfg, workdir)
  rcfg = cfg.rejection
  if not rcfg.tasks:
    raise ValueError('config.rejection.tasks is empty (task configs for `r1jax.data.tasks`)')
  records = [r for t in rcfg.tasks for r in tasks_lib.load_task(dict(to_dict(t)))]
  records = records[:rcfg.max_prompts] if rcfg.max_prompts > 0 else records
  opts = RejectionOptions.from_config(rcfg)
  if opts.system == '':
    opts = dataclasses.replace(opts, system=None)
  sampler, params, tokenizer = runner.load_policy(
      cfg, workdir, corpus=lambda: [r['question'] for r in records],
      max_new_tokens=rcfg.max_new_tokens or 512, sampler_cfg=rcfg)
  reward = dataclasses.asdict(rcfg.reward)
  chunks = max_chunks if max_chunks is not None else (rcfg.max_chunks or None)
  mode = rcfg.mode
  kwargs = dict(sampler=sampler, params=params, tokenizer=tokenizer, records=records,
                out_dir=workdir, rewards=reward, max_chunks=chunks, on_chunk_done=on_chunk_done,
                source_checkpoint=cfg.init_from)
  template = get_template(rcfg.template)
  if rcfg.question_format:
    template = get_template(template, question_format=rcfg.question_format)
  if mode == 'cold_start':
    totals = build_cold_start_data(source_template=template, options=opts,
                                   output_template=opts.output_template, **kwargs)
  elif mode == 'rejection':
    totals = rejection_sample(template=template, options=opts, **kwargs)
  else:
    raise ValueError(f"config.rejection.mode must be 'rejection' or 'cold_start', got {mode!r}")
  log.info('Rejection sampling totals: %s', totals)
  return totals
