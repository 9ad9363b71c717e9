"""Export: an r1jax workdir (any stage) -> a Hugging Face directory for transformers and vLLM.

  python -m r1jax.main --config=configs/export.py --config.init_from=runs/quickstart/r1_zero \
      --workdir=runs/export

The workdir *is* the exported directory (config.json, safetensors, tokenizer files, chat
template, generation_config.json); the stage prints the `vllm serve` command. See
docs/checkpoints.md. Presets: '' (as trained) and 'bf16' (weights cast to bfloat16).
"""
import ml_collections
from ml_collections import config_dict


def get_config(arg: str = ""):
  c = ml_collections.ConfigDict()
  c.stage = "export"
  c.init_from = ""                 # the r1jax workdir to export (required)
  c.mesh = ml_collections.ConfigDict(dict(shape=(1, -1, 1)))  # FSDP: big models fit to gather
  c.sharding_rules = ml_collections.ConfigDict()
  c.export = ml_collections.ConfigDict(dict(
      dtype="",                    # '' = as trained; e.g. 'bfloat16'
      max_shard_size_gb=5.0,       # larger weights go to model-0000i-of-0000n.safetensors
      step=-1,                     # checkpoint step; -1 = latest
      template="",                 # '' = the template the source stage trained with
      stop_strings=config_dict.placeholder(tuple),  # None = the source stage's ('</answer>')
      temperature=0.6,             # generation_config defaults: R1's evaluation sampling
      top_p=0.95,
      served_model_name="",        # '' = the workdir's name
  ))
  if arg == "bf16":
    c.export.dtype = "bfloat16"
  elif arg:
    raise ValueError(f"Unknown export preset {arg!r}; known: '', 'bf16'")
  return c
