"""Stage `eval`: evaluate a checkpoint on benchmarks, the way the R1 paper reports them.

  python -m r1jax.main --config=configs/eval.py:math500 --config.init_from=<workdir or HF dir> \\
      --workdir=/tmp/eval_math500

Loads the model and tokenizer from `config.init_from` (an r1jax workdir or a Hugging Face
directory; with neither, a random model of `config.model.preset`, for smoke tests), samples
`config.eval.num_samples` completions per problem with the sharded sampler (T = 0.6, top-p = 0.95
by default) and writes, under `workdir/eval/`:
  <benchmark>_samples.jsonl  every sample: id, completion, extracted answer, verdict, length, ...
  <benchmark>_problems.jsonl per problem: pass rate, voted answer, cons verdict
  summary.json              {benchmark: {pass@1, pass@1_se, cons@k, ...}} plus the settings
  summary.md                the same as a markdown table (also printed)
"""
from __future__ import annotations

import json
import logging
import math
import os
import pathlib
from typing import Any

import jax
from etils import epath

import dataclasses

from r1jax import experiment, paths, stage_config
from r1jax.data import tasks
from r1jax.data.templates import get_template
from r1jax.evals import evaluator
from r1jax.metrics import WandbConfig, WandbLogger
from r1jax.rewards.registry import build_reward_system
from r1jax.rollout import Sampler, SamplerConfig
from r1jax.rollout.engine import make_sampler
from r1jax.rollout.stops import stop_token_sequences
from r1jax.stage_config import to_dict

log = logging.getLogger(__name__)

BENCHMARKS = ('aime24', 'math500', 'gsm8k', 'amc23', 'humaneval', 'countdown', 'arithmetic')
# Per-benchmark eval options that a benchmark entry may override.
EVAL_KEYS = ('num_samples', 'temperature', 'top_p', 'top_k', 'max_new_tokens', 'batch_size',
             'max_prompt_len', 'pass_ks', 'template', 'question_format', 'system', 'seed')


@dataclasses.dataclass(frozen=True)
class BenchmarkOptions:
  """Per-benchmark sampling options (`config.eval.<key>`, or a benchmark entry's override)."""
  num_samples: int = 4           # k samples per problem
  temperature: float = 0.6       # DeepSeek-R1's evaluation protocol
  top_p: float = 0.95
  top_k: int = 0
  max_new_tokens: int = 512
  batch_size: int = 8
  max_prompt_len: int = 512
  pass_ks: tuple[int, ...] = (1,)
  template: str = 'r1_zero'
  question_format: str = ''      # e.g. DeepSeek's 'Please reason step by step ...'
  system: str = ''               # '' = the template's default system prompt
  seed: int | None = None        # None = config.seed


@dataclasses.dataclass(frozen=True)
class EvalSection(BenchmarkOptions, stage_config.SamplerSection):
  """`config.eval` of the eval stage."""
  benchmarks: tuple = ()         # names, .jsonl paths or dicts (see `benchmark_spec`)
  max_examples: int = 0          # 0 = every problem
  reward_workers: int = 2
  reward_timeout_s: float = 10.0
  reward_kwargs: dict = dataclasses.field(default_factory=dict)
  vote_equivalence: bool = True  # merge equivalent math answers in the vote with the verifier


@dataclasses.dataclass(frozen=True)
class EvalConfig(stage_config.CommonConfig):
  """A whole eval stage (`config.stage == "eval"`)."""
  stage: str = 'eval'
  eval: EvalSection = EvalSection()


def eval_config(config: Any) -> EvalConfig:
  if isinstance(config, EvalConfig):
    return config
  d = dict(to_dict(config) or {})
  for k in ('optim', 'train'):   # base_config sections the eval stage does not use
    d.pop(k, None)
  return stage_config.build(EvalConfig, d, 'config')


def benchmark_spec(entry: Any) -> tuple[str, dict, dict]:
  """(label, task config for `tasks.load_task`, eval overrides) of one `config.eval.benchmarks`
  entry: a name ('math500', 'countdown', ...), a `.jsonl` path, or a dict with `name` (and
  `label`, task fields such as `path`/`split`/`num_examples`, and any of EVAL_KEYS)."""
  if isinstance(entry, (str, os.PathLike)):
    entry = str(entry)
    if entry.endswith('.jsonl'):
      entry = {'name': 'jsonl', 'path': entry, 'label': pathlib.Path(entry).stem}
    else:
      entry = {'name': entry}
  entry = dict(to_dict(entry))
  if 'name' not in entry:
    raise ValueError(f'benchmark entry {entry} needs a name (one of {BENCHMARKS} or jsonl)')
  name = entry['name']
  if name not in BENCHMARKS and name != 'jsonl':
    raise ValueError(f'Unknown benchmark {name!r}; known: {BENCHMARKS} or a JSONL task config')
  label = str(entry.pop('label', '') or (pathlib.Path(entry['path']).stem
                                         if name == 'jsonl' else name))
  overrides = {k: entry.pop(k) for k in EVAL_KEYS if k in entry}
  if name in ('countdown', 'arithmetic', 'gsm8k'):
    entry.setdefault('split', 'test')   # held-out problems, never seen in training
  if name in ('countdown', 'arithmetic'):
    entry.setdefault('num_examples', 100)
  return label, entry, overrides


def markdown_table(summaries: dict[str, dict[str, float]]) -> str:
  """One row per benchmark: metric ± standard error."""
  def cell(s, key):
    if key not in s:
      return 'n/a'
    v, se = s[key], s.get(f'{key}_se')
    if key.startswith(('pass@', 'cons@', 'format', 'trunc')):
      return f'{100 * v:.1f}' + (f' ± {100 * se:.1f}' if se is not None and math.isfinite(se)
                                 else '')
    return f'{v:.1f}'
  rows = []
  for name, s in summaries.items():
    n = int(s.get('num_samples', 1))
    ks = [k for k in s if k.startswith('pass@') and not k.endswith('_se') and k != 'pass@1']
    top = max(ks, key=lambda k: int(k[5:]), default='')
    cols = ['pass@1', f'cons@{n}', top or 'pass@k', 'format_rate', 'mean_length',
            'truncation_rate']
    rows.append((name, n, int(s.get('num_problems', 0)), [cell(s, c) for c in cols]))
  header = ('| benchmark | k | problems | pass@1 (%) | cons@k (%) | pass@k (%) | format (%) '
            '| mean len | truncated (%) |')
  lines = [header, '|' + '---|' * 9]
  for name, n, p, cells in rows:
    lines.append(f'| {name} | {n} | {p} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def _write_json(path: epath.Path, obj: Any) -> None:
  paths.write_atomic(path, json.dumps(obj, indent=1, default=str))


def load_policy(config, workdir: str | os.PathLike, corpus, max_new_tokens: int,
                sampler_cfg: Any) -> tuple[Sampler, Any, Any]:
  """(sampler, params, tokenizer) of `config.init_from` on the mesh of `config.mesh`.

  Without init_from, a random `config.model.preset` model and (unless `config.tokenizer.path`) a
  tokenizer trained on `corpus()`: smoke tests only. `sampler_cfg` (a `SamplerSection` or a
  mapping of its fields) supplies stop_strings, cache_dtype and the prompt-length / batch
  buckets of the `SamplerConfig`, and the rollout engine (`engine`, `engine_*`).
  """
  common = stage_config.common_config(config)
  if not isinstance(sampler_cfg, stage_config.SamplerSection):
    sampler_cfg = stage_config.build(stage_config.SamplerSection, sampler_cfg, 'sampler')
  mesh, rules = experiment.mesh_and_rules(common)
  tokenizer = experiment.get_tokenizer(common, workdir, corpus=corpus)
  if not common.init_from:
    log.warning('config.init_from is empty: using a randomly initialised %r model.',
                common.model.preset)
  model_cfg, graphdef, params = experiment.init_model(common, mesh, rules, tokenizer)
  eos, stops = stop_token_sequences(tokenizer, sampler_cfg.stop_strings)
  base = SamplerConfig(
      max_new_tokens=int(max_new_tokens),
      eos_ids=tuple(dict.fromkeys(tuple(tokenizer.eos_ids) + eos)),
      pad_id=int(tokenizer.pad_id), stop_sequences=stops, cache_dtype=sampler_cfg.cache_dtype,
      prompt_len_buckets=sampler_cfg.prompt_len_buckets,
      batch_buckets=sampler_cfg.batch_buckets)
  # sampler_cfg.engine picks the static `Sampler` or the continuous-batching `Engine`.
  return make_sampler(graphdef, model_cfg, base, mesh, rules, section=sampler_cfg), params, tokenizer


@paths.resolves_paths
def run(config, workdir: str | os.PathLike) -> dict[str, dict[str, float]]:
  """Evaluates `config.init_from` on `config.eval.benchmarks`; returns {benchmark: summary}."""
  workdir = epath.Path(workdir)
  cfg = eval_config(config)
  stage_config.announce(cfg, workdir)
  ecfg = cfg.eval
  entries = [benchmark_spec(e) for e in ecfg.benchmarks]
  if not entries:
    raise ValueError('config.eval.benchmarks is empty')
  labels = [e[0] for e in entries]
  if len(set(labels)) != len(labels):
    raise ValueError(f'benchmark labels must be unique, got {labels}: set `label` in the entries')
  data = {}
  for label, task_cfg, _ in entries:
    recs = tasks.load_task(task_cfg)
    data[label] = recs[:ecfg.max_examples] if ecfg.max_examples > 0 else recs

  sampler, params, tokenizer = load_policy(
      cfg, workdir, corpus=lambda: [r['question'] for recs in data.values() for r in recs],
      max_new_tokens=ecfg.max_new_tokens, sampler_cfg=ecfg)
  reward_cfg = {'weights': {'accuracy': 1.0}, 'kwargs': dict(ecfg.reward_kwargs),
                'num_workers': ecfg.reward_workers, 'timeout_s': ecfg.reward_timeout_s}
  out_dir = workdir / 'eval'
  write = jax.process_index() == 0
  if write:
    out_dir.mkdir(parents=True, exist_ok=True)

  summaries: dict[str, dict[str, float]] = {}
  settings: dict[str, dict] = {}
  wb_cfg = WandbConfig.from_config(config)
  wandb = WandbLogger(wb_cfg, workdir, run_config=config) if write and wb_cfg.enabled else None
  base_opts = {f.name: getattr(ecfg, f.name) for f in dataclasses.fields(BenchmarkOptions)}
  with build_reward_system(reward_cfg) as rewards:
    for label, task_cfg, overrides in entries:
      opts = stage_config.build(BenchmarkOptions, {**base_opts, **overrides},
                                f'config.eval.benchmarks[{label}]')
      kwargs = dict(
          num_samples=opts.num_samples, temperature=opts.temperature, top_p=opts.top_p,
          top_k=opts.top_k, max_new_tokens=opts.max_new_tokens, batch_size=opts.batch_size,
          max_prompt_len=opts.max_prompt_len,
          seed=cfg.seed if opts.seed is None else opts.seed,
          pass_ks=opts.pass_ks, system=opts.system or None)
      template = opts.template
      if opts.question_format:   # e.g. DeepSeek's 'Please reason step by step ...'
        template = get_template(template, question_format=opts.question_format)
      log.info('Evaluating %s: %d problems x %d samples', label, len(data[label]),
               kwargs['num_samples'])
      res = evaluator.evaluate(sampler=sampler, params=params, tokenizer=tokenizer,
                               template=template, records=data[label], rewards=rewards,
                               vote_equivalence=ecfg.vote_equivalence, **kwargs)
      summaries[label] = res.summary
      settings[label] = {'task': task_cfg, 'template': get_template(template).name,
                         'question_format': get_template(template).question_format, **kwargs}
      if write:
        evaluator.write_samples(out_dir / f'{label}_samples.jsonl', res.samples)
        evaluator.write_samples(out_dir / f'{label}_problems.jsonl', res.problems)
        if wandb is not None:  # the summary and a samples table per benchmark
          wandb.log(0, {f'eval/{label}/{k}': float(v) for k, v in res.summary.items()})
          wandb.log_table(f'eval/{label}/samples', res.samples, step=0)
        _write_json(out_dir / 'summary.json',
                    {'init_from': cfg.init_from, 'summaries': summaries, 'settings': settings})
      log.info('%s: %s', label, {k: round(v, 4) for k, v in res.summary.items()})
  table = markdown_table(summaries)
  if write:
    (out_dir / 'summary.md').write_text(table + '\n')
  print(table)
  return summaries
