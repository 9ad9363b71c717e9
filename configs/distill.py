"""Distillation: SFT of a smaller student on the teacher's curated traces (DeepSeek-R1 sec. 2.4).

The data is text (`prompt` / `completion` JSONL from a rejection-sampling stage), so the student's
architecture and tokenizer need not match the teacher's.

Presets (`--config=configs/distill.py:<preset>[,traces=PATH][,general=PATH]`):
  tiny                CPU: a `tiny-student` (2 layers, d=64) trained from scratch (`init_from`
                      empty) with its own SentencePiece tokenizer trained on the traces
  qwen2.5-math-1.5b   accelerator: R1-Distill-Qwen-1.5B style; the student starts from the
                      pretrained base (`init_from` = its HF dir, with its own tokenizer)

`data.sources[0]` is the teacher's traces (the pipeline fills it through `data_from`); with
`general=PATH` a non-reasoning JSONL is mixed in (R1 distilled on the same 800k mix).
"""

from r1jax.config import base_config, sibling_config


def _sibling(name: str):
  return sibling_config(__file__, name)


def get_config(arg: str = "tiny"):
  sft_mix = _sibling("sft_mix")
  preset, opts = sft_mix.parse_arg(arg, traces="", general="")
  c = base_config()
  c.stage = "sft"
  c.init_from = ""                 # the student does not start from the teacher
  traces = dict(kind="jsonl", path=opts["traces"], prompt_field="prompt",
                completion_field="completion", weight=1.0)
  sources = (traces,) if not opts["general"] else sft_mix.mix_sources(opts["traces"],
                                                                     opts["general"], 0.75)
  c.data = dict(sources=sources, pack=False, overflow="truncate", loss_on_prompt=False)
  if preset == "tiny":
    c.model.preset = "tiny-student"
    c.tokenizer.path = ""          # '' = train a SentencePiece model on the traces
    c.tokenizer.vocab_size = 400
    c.optim.update(learning_rate=3e-3, warmup_steps=20)
    c.train.update(num_steps=300, batch_size=32, seq_len=96, log_every=25, checkpoint_every=300)
  elif preset == "qwen2.5-math-1.5b":
    c.model.preset = ""
    c.init_from = ""               # set: the student's pretrained base (a local HF directory)
    c.model.update(dtype="bfloat16", remat=True)
    c.mesh.shape = (1, -1, 1)
    c.data.pack = False            # epochs need a known step count (r1jax/data/epochs.py)
    c.optim.update(learning_rate=1e-5, warmup_steps=50, weight_decay=0.01)
    c.train.update(num_steps=2000, batch_size=64, seq_len=8192, checkpoint_every=250,
                   num_epochs=2)   # 2 epochs over the curated traces, as in R1's stage 4
  else:
    raise ValueError(f"Unknown preset {preset!r} for configs/distill.py "
                     "(tiny, qwen2.5-math-1.5b)")
  return c
