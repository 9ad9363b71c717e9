"""Stage `reward_model`: a Transformer with a scalar head trained on preference pairs (Bradley-Terry).

Presets (`--config=configs/reward_model.py:<preset>[,train=PATH][,eval=PATH]`):
  tiny   CPU: a tiny model from scratch (or `init_from` a tiny workdir) on a JSONL of pairs
  qwen   accelerator: initialised from a Hugging Face checkpoint (`init_from` = its directory),
         sharded like the policy (fsdp)

Data: JSONL rows `{prompt, chosen, rejected[, margin]}`. The workdir feeds all-scenario RL through
`r1jax.rm.scorer:RewardModelScorer` (configs/r1_all_scenarios.py, `helpful_rm=` / `harmless_rm=`).
Held-out pair accuracy is in `<workdir>/rm_eval.json`.
"""
from r1jax.config import base_config, sibling_config


def get_config(arg: str = "tiny"):
  preset, opts = sibling_config(__file__, "sft_mix").parse_arg(arg, train="", eval="")
  c = base_config()
  c.stage = "reward_model"
  c.reward_model = dict(train_path=opts["train"], eval_path=opts["eval"], eval_fraction=0.1,
                        prompt_field="prompt", chosen_field="chosen", rejected_field="rejected",
                        margin_field="", margin_scale=1.0, template="", max_len=512, batch_size=32,
                        num_steps=0, num_epochs=1, learning_rate=1e-5, warmup_steps=10,
                        weight_decay=0.0, max_grad_norm=1.0, eval_every=0, checkpoint_every=500,
                        log_every=10, seed=0)
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
