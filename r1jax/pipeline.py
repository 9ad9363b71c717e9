"""Chains of stages (`stage = "pipeline"` or `"quickstart"`): R1 in miniature.

A pipeline config holds one full stage config per step and how they connect:

  config.order       ("pretrain", "r1_zero", ...)      stages in run order
  config.stages.<n>  a complete stage config (sft / pretrain / grpo / rejection_sampling)
  config.init_from   {"r1_zero": "pretrain"}           `init_from` = that stage's workdir
  config.data_from   {"sft_mix": "rejection"}          SFT data = that stage's sft_data.jsonl
  config.eval        held-out evaluation after chosen stages (pass@1 over k, cons@k);
                     `eval.templates` {stage: template} overrides `eval.template` per stage
  config.prepare     optional hooks run before the stages: ({"fn": "module:function",
                     "kwargs": {...}},), called as fn(workdir=<pipeline workdir>, **kwargs)
                     (e.g. to write a data file the stages read)

String fields of a stage config may contain `{workdir}`: it becomes the pipeline's workdir.

Each stage runs in `workdir/<name>` and leaves `workdir/<name>/DONE` when it has
finished, so re-running a pipeline resumes at the first unfinished stage (and an
interrupted stage resumes from its own checkpoints).
"""
from __future__ import annotations

import copy
import json
import logging
import os
import time
from typing import Any

import jax
import ml_collections
from etils import epath

import dataclasses

from r1jax import experiment, paths, stage_config
from r1jax.metrics import plot_curves, read_metrics
from r1jax.stage_config import to_dict

log = logging.getLogger(__name__)

_CURVES = {"grpo": ["reward/mean", "accuracy_rate", "format_rate", "completion_len/mean"],
           "sft": ["loss", "token_accuracy"], "pretrain": ["loss", "token_accuracy"]}


@dataclasses.dataclass(frozen=True)
class PipelineEvalConfig:
  """`config.eval` of a pipeline: held-out pass@1 / cons@k after chosen stages."""
  after: tuple[str, ...] = ()        # stages to evaluate after
  template: str = "r1_zero"
  templates: dict = dataclasses.field(default_factory=dict)  # per-stage template overrides
  task: dict = dataclasses.field(default_factory=dict)       # held-out task config
  num_samples: int = 4
  temperature: float = 0.6
  top_p: float = 0.95
  max_new_tokens: int = 128
  batch_size: int = 64
  max_prompt_len: int = 128
  seed: int = 1234
  rewards: dict = dataclasses.field(default_factory=dict)    # {} = the evaluator's default


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """A pipeline (`config.stage` "quickstart" or "pipeline"); `config.stages` stay ConfigDicts
  (each is typed and validated by its own stage when it runs)."""
  stage: str = "pipeline"
  seed: int = 0
  mesh: stage_config.MeshSection = stage_config.MeshSection()
  order: tuple[str, ...] = ()
  init_from: dict = dataclasses.field(default_factory=dict)  # stage -> parent stage
  data_from: dict = dataclasses.field(default_factory=dict)  # stage -> stage with sft_data
  prepare: tuple = ()                # ({"fn": "module:function", "kwargs": {...}}, ...)
  eval: PipelineEvalConfig | None = None


def pipeline_config(config) -> PipelineConfig:
  d = dict(to_dict(config) or {})
  d.pop("stages", None)
  return stage_config.build(PipelineConfig, d, "config")


def _stage_config(config, name: str, workdir: str) -> ml_collections.ConfigDict:
  if name not in config.stages:
    raise ValueError(f"config.order names stage {name!r}, but config.stages has only "
                     f"{sorted(config.stages.keys())}")
  c = copy.deepcopy(config.stages[name])
  c.unlock()
  _substitute_workdir(c, workdir)
  pcfg = pipeline_config(config)
  parent = pcfg.init_from.get(name)
  if parent:
    c.init_from = paths.join(workdir, parent)
  data_parent = pcfg.data_from.get(name)
  if data_parent:
    path = paths.join(workdir, data_parent, "sft_data.jsonl")
    sources = list(to_dict(c.data.sources))
    # The first jsonl source without a path takes the parent's curated data.
    for i, src in enumerate(sources):
      if src.get("kind", "jsonl") == "jsonl" and not src.get("path"):
        sources[i] = {**src, "path": path}
        break
    else:
      raise ValueError(f"Stage {name!r} has data_from={data_parent!r} but no jsonl source "
                       "with an empty path to receive it")
    c.data.sources = tuple(sources)
  return c


def _substitute_workdir(c: ml_collections.ConfigDict, workdir: str) -> None:
  """Replaces `{workdir}` in every string field (also inside tuples/lists of dicts), in place."""
  def sub(v):
    if isinstance(v, str):
      return v.replace("{workdir}", workdir)
    if isinstance(v, (list, tuple)):
      return type(v)(sub(x) for x in v)
    if isinstance(v, dict):
      return {k: sub(x) for k, x in v.items()}
    return v
  for key in list(c.keys()):
    value = c[key]
    if isinstance(value, ml_collections.ConfigDict):
      _substitute_workdir(value, workdir)
    elif isinstance(value, (str, list, tuple, dict)):
      new = sub(value)
      if new != value:
        c[key] = new


def _prepare(config, workdir: str) -> None:
  """Runs `config.prepare` hooks (import path + kwargs) before the stages, on process 0."""
  import importlib
  for hook in pipeline_config(config).prepare:
    hook = to_dict(hook)
    module, _, attr = hook["fn"].partition(":")
    fn = getattr(importlib.import_module(module), attr)
    if jax.process_index() == 0:
      fn(workdir=workdir, **dict(hook.get("kwargs") or {}))


def evaluate_workdir(config, stage_dir: str, eval_cfg: PipelineEvalConfig,
                     template: str | None = None) -> dict[str, float]:
  """Held-out pass@1 / cons@k of the checkpoint in `stage_dir` (sampler on the mesh)."""
  return evaluate_stage(config, stage_dir, eval_cfg, template).summary


def evaluate_stage(config, stage_dir: str, eval_cfg: PipelineEvalConfig,
                   template: str | None = None):
  """`evaluate_workdir`'s `r1jax.evals.evaluator.EvalResult`, with every sample."""
  from r1jax.data.templates import get_template
  from r1jax.evals.evaluator import evaluate
  from r1jax.rl.tasks import _load
  from r1jax.rollout.sampler import Sampler, SamplerConfig
  pcfg = pipeline_config(config)
  c = stage_config.CommonConfig(seed=pcfg.seed, init_from=stage_dir, mesh=pcfg.mesh,
                                model=stage_config.ModelSection(preset=""))
  mesh, rules = experiment.mesh_and_rules(c)
  tokenizer = experiment.get_tokenizer(c, stage_dir)
  model_cfg, graphdef, params = experiment.init_model(c, mesh, rules, tokenizer)
  template = get_template(template or eval_cfg.template)
  records = _load(eval_cfg.task)
  sampler = Sampler(graphdef, model_cfg, SamplerConfig(), mesh, rules)
  res = evaluate(sampler=sampler, params=params, tokenizer=tokenizer, template=template,
                 records=records, num_samples=eval_cfg.num_samples,
                 temperature=eval_cfg.temperature, top_p=eval_cfg.top_p,
                 max_new_tokens=eval_cfg.max_new_tokens, batch_size=eval_cfg.batch_size,
                 max_prompt_len=eval_cfg.max_prompt_len, seed=eval_cfg.seed,
                 rewards=eval_cfg.rewards or None)
  return res


def format_table(rows: list[dict[str, Any]], k: int) -> str:
  head = f"| stage | pass@1 (k={k}) | ± se | cons@{k} | format rate | mean length |"
  lines = [head, "|" + "---|" * 6]
  for r in rows:
    s = r["summary"]
    lines.append(f"| {r['stage']} | {100 * s.get('pass@1', 0):.1f} | {100 * s.get('pass@1_se', 0):.1f} "
                 f"| {100 * s.get(f'cons@{k}', 0):.1f} | {100 * s.get('format_rate', 0):.1f} "
                 f"| {s.get('mean_length', 0):.1f} |")
  return "\n".join(lines)


@paths.resolves_paths
def run(config, workdir: str | os.PathLike) -> dict[str, Any]:
  """Runs the stages in `config.order`; returns {"table": rows, "stages": results}."""
  from r1jax import run as run_lib
  run_lib.refuse_in_spawned_import()   # before anything is written (a notebook may call this directly)
  workdir = paths.as_str(workdir)
  root = paths.makedirs(workdir)
  pcfg = pipeline_config(config)
  stage_config.announce(pcfg, workdir)
  eval_cfg = pcfg.eval
  eval_after = eval_cfg.after if eval_cfg is not None else ()
  k = eval_cfg.num_samples if eval_cfg is not None else 0
  summary_path = root / "pipeline_summary.json"
  rows = []
  if summary_path.exists():
    rows = json.loads(summary_path.read_text()).get("table", [])
  done_evals = {r["stage"] for r in rows}
  results = {}
  _prepare(config, workdir)
  for name in pcfg.order:
    stage_dir = paths.join(workdir, name)
    marker = epath.Path(stage_dir) / "DONE"
    if not marker.exists():
      c = _stage_config(config, name, workdir)
      t0 = time.time()
      print(f"\n=== stage {name} ({c.stage}) -> {stage_dir}", flush=True)
      experiment.clear_stopped_early()
      out = run_lib.run(c, stage_dir)
      if experiment.stopped_early():
        # A termination signal (preemption): the stage saved a checkpoint and returned before
        # its last step. It is not DONE; the same command resumes it.
        print(f"\n=== stage {name} stopped on a termination signal before its last step "
              "(checkpoint saved; not marked DONE). Run the same command again to resume.",
              flush=True)
        return {"table": rows, "stages": results, "stopped": name}
      results[name] = {k2: v for k2, v in (out or {}).items()
                       if isinstance(v, (int, float, str))} if isinstance(out, dict) else {}
      if jax.process_index() == 0:
        marker.write_text(f"{time.time() - t0:.1f}s\n")
      # A stage trained (again) in this call, e.g. after its directory was removed to re-run it
      # with a new config, is evaluated again: an earlier row is of another checkpoint.
      rows = [r for r in rows if r["stage"] != name]
      done_evals.discard(name)
    if name in eval_after and name not in done_evals:
      summary = evaluate_workdir(config, stage_dir, eval_cfg,
                                 template=eval_cfg.templates.get(name))
      rows.append({"stage": name, "summary": summary})
      done_evals.add(name)
      print(f"[eval] {name}: pass@1 {100 * summary['pass@1']:.1f}% "
            f"(± {100 * summary['pass@1_se']:.1f}), cons@{k} "
            f"{100 * summary.get(f'cons@{k}', 0):.1f}%, format {100 * summary['format_rate']:.1f}%",
            flush=True)
      if jax.process_index() == 0:
        paths.write_atomic(summary_path, json.dumps({"table": rows}, indent=1))
  table = format_table(rows, k) if rows else ""
  if jax.process_index() == 0:
    _plot_stages(config, workdir)
    if table:
      (root / "pipeline_summary.md").write_text(table + "\n")
  if table:
    print("\nHeld-out evaluation after each stage "
          f"({len(_eval_records_hint(eval_cfg))} problems, temperature "
          f"{eval_cfg.temperature}, top-p {eval_cfg.top_p}):\n"
          + table, flush=True)
  return {"table": rows, "stages": results}


def _eval_records_hint(eval_cfg: PipelineEvalConfig) -> range:
  n = eval_cfg.task.get("num_examples") or eval_cfg.task.get("max_examples") or 0
  return range(int(n))


def _plot_stages(config, workdir: str) -> None:
  for name in config.order:
    stage_dir = paths.join(workdir, name)
    recs = read_metrics(stage_dir)
    if not recs:
      continue
    kind = config.stages[name].stage
    keys = _CURVES.get(kind, ["loss"])
    plot_curves(recs, keys, paths.join(workdir, f"curves_{name}.png"), title=f"{name} ({kind})",
                smooth=5 if kind == "grpo" else 1)
