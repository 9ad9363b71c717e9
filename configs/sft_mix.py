"""R1 stage 4: SFT of the base model on the curated mix of reasoning and non-reasoning data.

Presets (`--config=configs/sft_mix.py:<preset>[,reasoning=PATH][,general=PATH]`):
  tiny   CPU: a tiny base workdir (`init_from`) on rejection-sampled arithmetic traces mixed
         with a non-reasoning JSONL (e.g. the chit-chat set of `r1jax.data.chitchat`)
  math   accelerator: the base model (HF dir) on rejection-sampled math traces + any
         non-reasoning JSONL (DeepSeek-R1: ~600k reasoning + ~200k non-reasoning, 2 epochs)

`data.sources[0]` is the reasoning data (a rejection-sampling stage's `sft_data.jsonl`; the
pipeline fills it through `data_from`), `data.sources[1]` the non-reasoning data; both are JSONL
files with `prompt` / `completion` fields. Both presets train for `train.num_epochs = 2` epochs
(R1: "2 epochs on the curated dataset"; `num_steps` then follows from the data,
`r1jax/data/epochs.py`) with `data.epoch_proportions` = the sources' shares of each epoch
(0.75 / 0.25, i.e. R1's 600k:200k). With `num_epochs = 0`, `num_steps` is used and `weight` is each
source's share of the examples drawn (sampled per example, with replacement).
"""
from r1jax.config import base_config


def parse_arg(arg: str, **defaults) -> tuple[str, dict]:
  """'tiny,general=/x.jsonl' -> ('tiny', {'general': '/x.jsonl', ...defaults})."""
  preset, *rest = (arg or "tiny").split(",")
  opts = dict(defaults)
  for kv in rest:
    key, _, value = kv.partition("=")
    if key not in opts:
      raise ValueError(f"Unknown option {key!r} in {arg!r}; known: {sorted(opts)}")
    opts[key] = value
  return preset, opts


def mix_sources(reasoning: str, general: str, reasoning_weight: float):
  return (dict(kind="jsonl", path=reasoning, prompt_field="prompt", completion_field="completion",
               weight=reasoning_weight),
          dict(kind="jsonl", path=general, prompt_field="prompt", completion_field="completion",
               weight=1.0 - reasoning_weight))


def get_config(arg: str = "tiny"):
  preset, opts = parse_arg(arg, reasoning="", general="")
  c = base_config()
  c.stage = "sft"
  c.model.preset = ""              # from init_from: the *base* model, not the RL checkpoint
  c.init_from = ""                 # set: the base (pretrain) workdir or a HF directory
  if preset == "tiny":
    c.data = dict(sources=mix_sources(opts["reasoning"], opts["general"], 0.75),
                  pack=False, overflow="truncate", loss_on_prompt=False, epoch_proportions=(0.75, 0.25))
    c.optim.update(learning_rate=1e-3, warmup_steps=10, schedule="cosine")
    c.train.update(num_steps=100, batch_size=16, seq_len=96, log_every=10, checkpoint_every=100,
                   num_epochs=2)
  elif preset == "math":
    # Epochs need a known step count, so no packing (R1's long CoTs fill most of a row anyway).
    c.data = dict(sources=mix_sources(opts["reasoning"], opts["general"], 0.75),
                  pack=False, overflow="truncate", loss_on_prompt=False, epoch_proportions=(0.75, 0.25))
    c.model.update(dtype="bfloat16", remat=True)
    c.mesh.shape = (1, -1, 1)
    c.optim.update(learning_rate=1e-5, warmup_steps=50, weight_decay=0.01)
    c.train.update(num_steps=2000, batch_size=64, seq_len=8192, checkpoint_every=250, num_epochs=2)
  else:
    raise ValueError(f"Unknown preset {preset!r} for configs/sft_mix.py (tiny, math)")
  return c
