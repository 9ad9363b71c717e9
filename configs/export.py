"""Export: an r1jax workdir (any stage) -> a Hugging Face directory for transformers and vLLM.

  python -m r1jax.main --config=configs/export.py --config.init_from=runs/quickstart/r1_zero \
      --workdir=runs/export

The workdir *is* the exported directory (config.json, safetensors, tokenizer files, chat
template, generation_config.json); the stage prints the `vllm serve` command. See
docs/checkpoints.md. Presets: '' (as trained) and 'bf16' (weights cast to bfloat16).
"""
import ml_collections

from r1jax.export import ExportConfig
from r1jax.stage_config import configdict_of


def get_config(arg: str = ""):
  c = ml_collections.ConfigDict()
  c.stage = "export"
  c.init_from = ""                 # the r1jax workdir to export (required)
  c.mesh = ml_collections.ConfigDict(dict(shape=(1, -1, 1)))  # FSDP: big models fit to gather
  c.sharding_rules = ml_collections.ConfigDict()
  # Every field and default from `r1jax.export.ExportConfig`: dtype ('' = as trained),
  # max_shard_size_gb, step (None = latest), template ('' = the source stage's), stop_strings
  # (None = the source stage's), temperature / top_p (generation_config.json), served_model_name.
  c.export = configdict_of(ExportConfig)
  if arg == "bf16":
    c.export.dtype = "bfloat16"
  elif arg:
    raise ValueError(f"Unknown export preset {arg!r}; known: '', 'bf16'")
  return c
