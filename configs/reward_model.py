"""Stage `reward_model`: a Transformer with a scalar head trained on preference pairs (Bradley-Terry).

Presets (`--config=configs/reward_model.py:<preset>[,train=PATH][,eval=PATH]`):
  tiny   CPU: a tiny model from scratch (or `init_from` a tiny workdir) on a JSONL of pairs
  qwen   accelerator: initialised from a Hugging Face checkpoint (`init_from` = its directory),
         sharded like the policy (fsdp)

Data: rows `{prompt, chosen, rejected[, margin]}` in a JSONL / Parquet file or a local Hugging Face dataset
(`reward_model.loader`, `train_split` / `eval_split`; r1jax/data/rows.py). The workdir feeds all-scenario RL through
`r1jax.rm.scorer:RewardModelScorer` (configs/r1_all_scenarios.py, `helpful_rm=` / `harmless_rm=`).
Held-out pair accuracy is in `<workdir>/rm_eval.json`.
"""
from r1jax.config import base_config, sibling_config
from r1jax.rm.train import RewardModelOptions
from r1jax.stage_config import configdict_of


def get_config(arg: str = "tiny"):
  preset, opts = sibling_config(__file__, "sft_mix").parse_arg(arg, train="", eval="")
  c = base_config()
  c.stage = "reward_model"
  c.reward_model = configdict_of(RewardModelOptions)   # the defaults live in RewardModelOptions
  c.reward_model.update(train_path=opts["train"], eval_path=opts["eval"])
  if preset == "tiny":
    c.model.preset = "tiny"
    c.tokenizer.vocab_size = 320
    c.reward_model.update(max_len=64, batch_size=16, learning_rate=3e-3, num_epochs=4)
  elif preset == "qwen":
    c.model.preset = ""
    c.init_from = ""                 # set: a Hugging Face directory (e.g. Qwen2.5-1.5B-Instruct)
    c.model.update(dtype="bfloat16", remat=True)
    c.mesh.shape = (1, -1, 1)
    c.reward_model.update(max_len=2048, batch_size=64, learning_rate=5e-6, num_epochs=1,
                          template="qwen2.5")
  else:
    raise ValueError(f"Unknown preset {preset!r} for configs/reward_model.py (tiny, qwen)")
  return c
