"""Typed stage configs: frozen dataclasses built once from the ConfigDict at a stage's entry.

Every default is written once, in a dataclass below (or in `LossConfig` / its presets).
The ConfigDict sections of `configs/*.py` are *generated* from these dataclasses
(`configdict_of`), so the command line (`--config.rl.group_size=8`) can set any field and
the config files only set what differs. `build` turns a ConfigDict section back into
the dataclass: unknown fields and conflicting fields are errors that name the field. Both
live in `r1jax.config_schema` and are re-exported here.

Fields whose ConfigDict value is an unset placeholder (None) take the dataclass default,
or, for the loss fields, the preset's value (`rl.loss.preset`): explicit fields override
the preset, and the preset's fields are the defaults. A preset may also set coupled fields
outside the loss (Dr. GRPO sets `rl.advantage="dr_grpo"`, see `PRESET_RL_FIELDS`).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import ml_collections

from r1jax import paths
from r1jax.config_schema import build, configdict_of, to_dict  # noqa: F401  (re-exported)
from r1jax.data.procedural import REFLECTION_PHRASES
from r1jax.metrics import WandbConfig
from r1jax.rl import advantages as adv_lib
from r1jax.rl import losses
from r1jax.rl.async_rollout import AsyncConfig
from r1jax.rl.async_rollout import check as check_async
from r1jax.rollout.engine import DEFAULT_ENGINE, ENGINES, EngineConfig
from r1jax.rollout.sampler import SamplerConfig

log = logging.getLogger(__name__)

RESOLVED_CONFIG_FILE = "resolved_config.json"


# ---------------------------------------------------------------------------- common sections


@dataclasses.dataclass(frozen=True)
class ModelSection:
  """`config.model`: a preset (or '' to take the architecture from `init_from`) + overrides."""
  preset: str = "tiny"
  overrides: dict = dataclasses.field(default_factory=dict)  # any ModelConfig field
  dtype: str = "float32"        # compute dtype
  param_dtype: str = "float32"
  remat: bool = False

  @staticmethod
  def _configdict_field(name):
    if name == "overrides":
      from r1jax.config import model_overrides_placeholder
      return model_overrides_placeholder()
    return None


@dataclasses.dataclass(frozen=True)
class TokenizerSection:
  path: str = ""                # .model / tokenizer.json / HF dir; '' = from init_from or trained
  vocab_size: int = 512         # when a SentencePiece model is trained from the corpus


@dataclasses.dataclass(frozen=True)
class MeshSection:
  shape: tuple[int, ...] = (-1, 1, 1)   # (data, fsdp, tensor); one -1 takes the rest

  def __post_init__(self):
    if len(self.shape) != 3:
      raise ValueError(f"mesh.shape must have 3 entries (data, fsdp, tensor), got {self.shape}")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  name: str = "adamw"
  learning_rate: float = 1e-3
  schedule: str = "cosine"      # constant | cosine | linear (after linear warmup)
  warmup_steps: int = 20
  end_lr_factor: float = 0.1
  b1: float = 0.9
  b2: float = 0.95
  eps: float = 1e-8
  weight_decay: float = 0.0
  max_grad_norm: float = 1.0
  # Microbatches per update (gradients summed; the same update up to float rounding); 0 = auto:
  # 1 on GPU / TPU, on CPU as many as keep each microbatch's activations small
  # (r1jax.runtime.auto_grad_accum).
  grad_accum_steps: int = 0

  def __post_init__(self):
    n = self.grad_accum_steps
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
      raise ValueError(f"config.optim.grad_accum_steps={n!r}: expected a count >= 1, or 0 (auto)")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  num_steps: int = 200
  batch_size: int = 32
  seq_len: int = 128
  log_every: int = 20
  checkpoint_every: int = 500
  max_to_keep: int = 3
  # pretrain / SFT only: > 0 trains exactly this many epochs of a planned, finite data stream
  # (r1jax/data/epochs.py), and the step count follows from it (num_steps is then ignored).
  num_epochs: int = 0
  # pretrain / SFT only: each step runs at the smallest of this many widths (evenly spaced up to
  # seq_len, multiples of 8: r1jax.rollout.buckets.completion_widths) that holds the batch's
  # longest row, not at seq_len: the columns past it are padding in every row (right-padded,
  # causal, no loss on them). Each width compiles once, the first time a batch needs it;
  # 1 = always seq_len.
  seq_buckets: int = 4

  def __post_init__(self):
    if self.num_steps < 0:
      raise ValueError(f"num_steps={self.num_steps} must be >= 0")
    if self.seq_buckets < 1:
      raise ValueError(f"seq_buckets={self.seq_buckets} must be >= 1 (1 = always seq_len)")


@dataclasses.dataclass(frozen=True)
class LoggingSection:
  """Optional experiment trackers: Weights & Biases (`r1jax.metrics.WandbConfig`)."""
  wandb: WandbConfig = WandbConfig()


@dataclasses.dataclass(frozen=True)
class CommonConfig:
  """The fields every stage shares (model, tokenizer, mesh, init, logging)."""
  seed: int = 0
  init_from: str = ""           # '' (random init), an r1jax workdir or a HF directory
  model: ModelSection = ModelSection()
  tokenizer: TokenizerSection = TokenizerSection()
  mesh: MeshSection = MeshSection()
  # logical axis -> mesh axes overrides (--config.sharding_rules.embed=fsdp), and/or MaxText's
  # list of (logical axis, mesh axes) pairs as sharding_rules.logical_axis_rules = [...].
  sharding_rules: dict = dataclasses.field(default_factory=dict)
  # A persistent XLA compilation cache (a disk that survives restarts): a restarted or
  # preempted job reuses its compiled steps. '' = off.
  compilation_cache_dir: str = ""
  # CPU hosts (r1jax/runtime.py): 'auto' = one JAX CPU device per core (a power of two <= 8),
  # so the batch is split over a CPU mesh; a count; or 0 for JAX's single device. The
  # training programs' dots: 'eigen' (XLA's own) or 'ynnpack' (XLA:CPU's default, which the
  # sampler always uses). The host allocator: 'auto' keeps freed memory for the next step when
  # no GPU / TPU is found and the model has 10M+ non-embedding parameters (XLA:CPU's big buffers
  # are not page-faulted in again at every step; the process keeps its peak memory), 'keep'
  # always, 'system' the C library's defaults. No effect on GPU / TPU.
  cpu_devices: int | str = "auto"
  cpu_matmul: str = "eigen"
  cpu_malloc: str = "auto"
  logging: LoggingSection = LoggingSection()


def common_config(config: Any) -> CommonConfig:
  """The `CommonConfig` part of any stage's ConfigDict (other sections are ignored)."""
  if isinstance(config, CommonConfig):
    return config
  if dataclasses.is_dataclass(config):
    return CommonConfig(**{f.name: getattr(config, f.name)
                           for f in dataclasses.fields(CommonConfig)})
  d = to_dict(config) or {}
  names = {f.name for f in dataclasses.fields(CommonConfig)}
  return build(CommonConfig, {k: v for k, v in d.items() if k in names}, "config")


@dataclasses.dataclass(frozen=True)
class SamplerSection:
  """Sampler settings shared by the eval and rejection-sampling stages."""
  stop_strings: tuple[str, ...] = ()   # e.g. ('</answer>',) for R1-Zero-style models
  cache_dtype: str = "bfloat16"
  prompt_len_buckets: tuple[int, ...] = ()
  batch_buckets: tuple[int, ...] = ()
  # Rollout engine (docs/sampler.md): 'continuous' (`r1jax.rollout.engine.Engine`:
  # engine_slots decode slots, each refilled with the next row when its row ends; 0 / 'auto'
  # = a slot per row within a KV-memory budget, and a call whose rows all fit runs as one
  # static wave) or 'static' (`Sampler`: each batch decodes until its longest row ends).
  engine: str = DEFAULT_ENGINE
  engine_slots: int | str = EngineConfig.num_slots
  engine_refill_every: int = EngineConfig.refill_every
  engine_refill: str = EngineConfig.refill

  def __post_init__(self):
    _check_engine(self)


def _check_engine(section) -> None:
  if section.engine not in ENGINES:
    raise ValueError(f"engine={section.engine!r} is not one of {ENGINES}")
  EngineConfig(num_slots=section.engine_slots, refill_every=section.engine_refill_every,
               refill=section.engine_refill)


# ---------------------------------------------------------------------------- SFT sections


@dataclasses.dataclass(frozen=True)
class SFTSource:
  """One entry of `config.data.sources` (a JSONL file, chat conversations or a procedural task)."""
  kind: str = "jsonl"                 # jsonl | chat | procedural
  # chat (r1jax/data/chat.py): `messages` rows (JSONL / Parquet) rendered through a chat format;
  # `chat_template_from` (a HF model directory) wins over `chat_template` (an r1jax name).
  messages_field: str = "messages"    # chat
  turns: str = "all"                  # chat: every assistant turn, or 'last'
  chat_template: str = "qwen2.5"      # chat
  chat_template_from: str = ""        # chat
  path: str = ""                      # jsonl, chat: a file, or a local HF dataset (loader 'hf')
  loader: str = "auto"                # jsonl, chat: auto | jsonl | parquet | hf (r1jax/data/rows.py)
  prompt_field: str = "prompt"        # jsonl
  completion_field: str = "completion"  # jsonl
  task: str = "countdown"             # procedural: countdown | arithmetic
  num_examples: int = 1000            # procedural
  seed: int = 0                       # procedural
  split: str = "train"                # procedural; loader 'hf': a saved DatasetDict's split
  error_rate: float = 0.0             # procedural: share of wrong worked solutions
  template: str = "r1_zero"           # procedural
  options: dict = dataclasses.field(default_factory=dict)  # procedural: task options
  weight: float = 1.0                 # mixing weight

  def __post_init__(self):
    if self.kind not in ("jsonl", "chat", "procedural"):
      raise ValueError(f"kind={self.kind!r}: unknown (jsonl, chat or procedural)")
    from r1jax.data.rows import check_loader  # pylint: disable=import-outside-toplevel
    check_loader(self.loader, "config.data.sources[].loader")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """`config.data` of the pretrain / SFT stages."""
  sources: tuple[SFTSource, ...] = ()
  pack: bool = False
  overflow: str = "truncate"
  loss_on_prompt: bool = False        # always on for stage "pretrain"
  # With train.num_epochs > 0 (r1jax/data/epochs.py): each source's share of every epoch,
  # once for all epochs or one tuple per epoch; () = the sources' sizes. epoch_size: rows per
  # epoch (0 = the sum of the sources' sizes).
  epoch_proportions: tuple = ()
  epoch_size: int = 0


@dataclasses.dataclass(frozen=True)
class SFTConfig(CommonConfig):
  """A next-token stage (`config.stage` "pretrain" or "sft")."""
  stage: str = "sft"
  optim: OptimConfig = OptimConfig()
  train: TrainConfig = TrainConfig()
  data: DataConfig = DataConfig()

  def __post_init__(self):
    if self.stage not in ("pretrain", "sft"):
      raise ValueError(f"config.stage={self.stage!r}: the SFT trainer runs pretrain or sft")
    if self.optim.grad_accum_steps and self.train.batch_size % self.optim.grad_accum_steps:
      raise ValueError(f"config.train.batch_size={self.train.batch_size} must be a multiple of "
                       f"config.optim.grad_accum_steps={self.optim.grad_accum_steps}")
    if self.train.num_epochs and self.data.pack:
      raise ValueError("config.train.num_epochs with config.data.pack=True is not supported "
                       "(the number of packed batches is not known in advance)")


def sft_config(config: Any) -> SFTConfig:
  if isinstance(config, SFTConfig):
    return config
  d = dict(to_dict(config) or {})
  data = dict(to_dict(d.pop("data", None)) or {})
  sources = tuple(build(SFTSource, src, f"config.data.sources[{i}]")
                  for i, src in enumerate(data.pop("sources", ()) or ()))
  cfg = build(SFTConfig, d, "config")
  return dataclasses.replace(cfg, data=dataclasses.replace(
      build(DataConfig, data, "config.data"), sources=sources))


# ---------------------------------------------------------------------------- GRPO sections

LOSS_FIELDS = tuple(f.name for f in dataclasses.fields(losses.LossConfig) if f.name != "temperature")

# Fields outside `rl.loss` that a loss preset couples (applied unless set explicitly).
PRESET_RL_FIELDS: dict[str, dict[str, Any]] = {
    "dr_grpo": {"advantage": "dr_grpo"},
}


def loss_section() -> ml_collections.ConfigDict:
  """`config.rl.loss`: a preset name plus every LossConfig field as an unset placeholder."""
  out = ml_collections.ConfigDict()
  out.preset = ""
  out.update(configdict_of(losses.LossConfig, unset=LOSS_FIELDS, skip=("temperature",)))
  return out


def resolve_loss(section: Any, temperature: float, where: str = "config.rl.loss"
                 ) -> tuple[losses.LossConfig, str]:
  """(LossConfig, preset name) from `rl.loss`: preset fields are defaults, set fields win.

  `temperature` is the sampling temperature (`rl.temperature`); `rl.loss.temperature`, if
  present, must agree with it.
  """
  d = dict(to_dict(section) or {})
  preset = d.pop("preset", "") or ""
  if preset and preset not in losses.PRESETS:
    raise ValueError(f"{where}.preset={preset!r}: unknown (known: {sorted(losses.PRESETS)})")
  loss_t = d.pop("temperature", None)
  if loss_t is not None and float(loss_t) != float(temperature):
    raise ValueError(f"{where}.temperature={loss_t} conflicts with config.rl.temperature="
                     f"{temperature}: set only config.rl.temperature (the sampling temperature)")
  base = losses.PRESETS[preset] if preset else losses.LossConfig()
  explicit = build(losses.LossConfig, d, where)  # type checks + unknown-field errors
  overrides = {k: getattr(explicit, k) for k, v in d.items() if v is not None}
  try:
    return dataclasses.replace(base, temperature=float(temperature), **overrides), preset
  except (TypeError, ValueError) as e:
    raise ValueError(f"{where}: {e}") from e


@dataclasses.dataclass(frozen=True)
class RLConfig:
  """`config.rl`: rollouts, advantages and the update schedule of a GRPO stage."""
  num_prompts: int = 32          # B prompts per step
  group_size: int = 16           # G completions per prompt
  max_prompt_len: int = 256
  max_new_tokens: int = 1024
  temperature: float = 1.0       # sampling temperature; the loss divides logits by it too
  top_p: float = 1.0
  top_k: int = 0                 # 0 = off
  # top-p alone searches the nucleus among this many largest logits (0 = full sort).
  top_p_candidates: int = SamplerConfig.top_p_candidates
  num_iterations: int = 1        # mu: passes over each batch
  minibatch_size: int = 0        # rows per update; 0 = all B*G (one update per pass)
  advantage: str = "grpo"        # grpo | dr_grpo | rloo (a loss preset may set it)
  adv_ddof: int = adv_lib.DEFAULT_DDOF
  adv_eps: float = adv_lib.DEFAULT_EPS
  loss: losses.LossConfig = losses.LossConfig()
  ref_reset_every: int = 0       # R1 periodically reset the reference to the policy
  ref_ema: float = 0.0
  dynamic_sampling: bool = False  # DAPO: drop zero-variance groups, fill from oversampled ones
  dynamic_sampling_factor: int = 2
  # None = automatic: recompute pi_old with the trainer whenever the sampler's log-probs
  # differ from it (see `needs_recompute`); True / False force it.
  recompute_old_logprobs: bool | None = None
  # Run each prompt's forward once per group in the update and the reference / pi_old
  # passes, not once per row (r1jax.rl.logprobs; docs/performance.md). Used when the loss
  # sees whole groups in order: one update per step (num_iterations = 1, one minibatch).
  share_prompt_forward: bool = True
  sample_chunks: int = 1         # reward scoring of chunk k overlaps sampling of chunk k+1
  cache_dtype: str = "bfloat16"  # the sampler's KV cache
  prompt_len_buckets: tuple[int, ...] = ()  # () = (max_prompt_len,): one program
  # Choose a few prompt widths from the tokenised training prompts instead
  # (r1jax.rollout.buckets), so short prompts do not pay for max_prompt_len.
  auto_prompt_buckets: bool = False
  # The reference / pi_old passes and the update run at the smallest of this many completion
  # widths (evenly spaced up to max_new_tokens, r1jax.rollout.buckets.completion_widths) that
  # holds the step's longest completion: columns past it are padding in every row. Each width
  # compiles once, the first time a step needs it; 1 = always max_new_tokens.
  completion_buckets: int = 4
  stop_strings: tuple[str, ...] = ("</answer>",)
  # Host-side text statistics logged every step (r1jax/evals/curation.py: cot_flags): `mixing_rate`
  # (share of completions whose CoT is not in the question's language, by the language reward's
  # scorer), `reflection_rate` (share whose CoT has one of `reflection_phrases`; () = off) and
  # `summary_rate` (share with a readable summary after `</think>`, R1's cold-start format).
  cot_metrics: bool = True
  reflection_phrases: tuple[str, ...] = REFLECTION_PHRASES
  ignore_eos: bool = False       # as vLLM's ignore_eos: every completion runs to max_new_tokens
  # Rollout engine, as in `SamplerSection` (docs/sampler.md): 'continuous' or 'static'.
  engine: str = DEFAULT_ENGINE
  engine_slots: int | str = EngineConfig.num_slots
  engine_refill_every: int = EngineConfig.refill_every
  engine_refill: str = EngineConfig.refill
  # Asynchronous off-policy rollouts (r1jax/rl/async_rollout.py): step t trains on rollouts
  # up to k versions old; n > 0 samples on the last n devices, the others train.
  async_staleness: int = AsyncConfig.staleness
  async_sampler_devices: int = AsyncConfig.sampler_devices

  @staticmethod
  def _configdict_field(name):
    return loss_section() if name == "loss" else None

  def __post_init__(self):
    if self.advantage not in adv_lib.ESTIMATORS:
      raise ValueError(f"advantage={self.advantage!r} is not one of {adv_lib.ESTIMATORS}")
    rows = self.num_prompts * self.group_size
    if self.minibatch_size < 0 or (self.minibatch_size and rows % self.minibatch_size):
      raise ValueError(f"minibatch_size={self.minibatch_size} must divide "
                       f"num_prompts*group_size={rows}")
    if self.num_iterations < 1:
      raise ValueError(f"num_iterations={self.num_iterations} must be >= 1")
    if self.completion_buckets < 1:
      raise ValueError(f"completion_buckets={self.completion_buckets} must be >= 1 "
                       "(1 = always max_new_tokens)")
    _check_engine(self)
    check_async(self.async_staleness, self.async_sampler_devices)

  @property
  def rows(self) -> int:
    return self.num_prompts * self.group_size

  @property
  def num_minibatches(self) -> int:
    return self.rows // (self.minibatch_size or self.rows)


# `rl.advantage` is a placeholder in the ConfigDict so a preset can tell "unset" from "grpo".
RL_UNSET = ("advantage",)


def rl_section() -> ml_collections.ConfigDict:
  return configdict_of(RLConfig, unset=RL_UNSET)


def build_rl(section: Any, where: str = "config.rl") -> RLConfig:
  d = dict(to_dict(section) or {})
  t = d.get("temperature")
  temperature = float(t) if t is not None else RLConfig.temperature
  loss_cfg, preset = resolve_loss(d.pop("loss", None), temperature, where + ".loss")
  for k, v in PRESET_RL_FIELDS.get(preset, {}).items():
    if d.get(k) is None:
      d[k] = v
  rl = build(RLConfig, d, where)
  return dataclasses.replace(rl, loss=loss_cfg)


@dataclasses.dataclass(frozen=True)
class RewardsConfig:
  """`config.rewards`, passed to `r1jax.rewards.build_reward_system`."""
  weights: dict = dataclasses.field(default_factory=lambda: {"accuracy": 1.0, "format": 1.0})
  kwargs: dict = dataclasses.field(default_factory=dict)
  num_workers: int = 2
  timeout_s: float = 10.0


@dataclasses.dataclass(frozen=True)
class GRPOEvalConfig:
  """`config.eval` of a GRPO stage: periodic held-out pass@1 over k samples (R1 protocol)."""
  every: int = 50                # 0 = off
  num_samples: int = 4
  temperature: float = 0.6
  top_p: float = 0.95
  batch_size: int = 32
  max_new_tokens: int | None = None   # None = rl.max_new_tokens
  seed: int = 1234
  at_start: bool = True


@dataclasses.dataclass(frozen=True)
class GRPOConfig(CommonConfig):
  """A whole GRPO stage (`config.stage == "grpo"`)."""
  stage: str = "grpo"
  template: str = "r1_zero"
  optim: OptimConfig = OptimConfig()
  train: TrainConfig = TrainConfig()
  rl: RLConfig = RLConfig()
  rewards: RewardsConfig = RewardsConfig()
  eval: GRPOEvalConfig = GRPOEvalConfig()
  task: dict = dataclasses.field(default_factory=dict)       # see r1jax.rl.tasks
  eval_task: dict = dataclasses.field(default_factory=dict)  # {} = no held-out set

  def __post_init__(self):
    # Each update's minibatch is split into grad_accum_steps micro-batches.
    if (self.optim.grad_accum_steps
        and (self.rl.minibatch_size or self.rl.rows) % self.optim.grad_accum_steps):
      raise ValueError(f"config.rl.minibatch_size={self.rl.minibatch_size} (0 = num_prompts * "
                       f"group_size = {self.rl.rows}) must be a multiple of "
                       f"config.optim.grad_accum_steps={self.optim.grad_accum_steps}")


def grpo_config(config: Any) -> GRPOConfig:
  """The typed GRPO stage config from its ConfigDict (or itself if already typed)."""
  if isinstance(config, GRPOConfig):
    return config
  d = dict(to_dict(config) or {})
  rl = build_rl(d.pop("rl", None))
  cfg = build(GRPOConfig, d, "config")
  return dataclasses.replace(cfg, rl=rl)


def typed_config(config: Any):
  """The typed config of a stage, by `config.stage` (raises naming a bad field); None for
  a stage without one (`r1jax.config.validate` checks the stage name itself)."""
  stage = config.stage if hasattr(config, "stage") else dict(config)["stage"]
  if stage in ("pretrain", "sft"):
    return sft_config(config)
  if stage == "grpo":
    return grpo_config(config)
  if stage == "eval":
    from r1jax.evals import runner
    return runner.eval_config(config)
  if stage == "rejection_sampling":
    from r1jax.evals import rejection_sampling
    return rejection_sampling.rejection_config(config)
  if stage in ("quickstart", "pipeline"):
    from r1jax import pipeline
    return pipeline.pipeline_config(config)
  return None


# ---------------------------------------------------------------------------- resolved config


def resolved_dict(cfg: Any) -> dict:
  """A JSON-ready dict of a typed config (tuples as lists)."""
  return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def announce(cfg: Any, workdir: str | os.PathLike | None = None) -> dict:
  """Logs the resolved config and writes `workdir/resolved_config.json` (process 0)."""
  d = resolved_dict(cfg)
  text = json.dumps(d, indent=1, sort_keys=True)
  log.warning("Resolved %s:\n%s", type(cfg).__name__, text)
  if workdir is not None:
    import jax
    if jax.process_index() == 0:
      (paths.makedirs(workdir) / RESOLVED_CONFIG_FILE).write_text(text + "\n")
  return d
