"""Stage `generate_responses` (DeepSeek-R1 stage 3, non-reasoning data): a teacher answers general prompts.

Presets (`--config=configs/generate_responses.py:<preset>[,prompts=PATH] --config.init_from=<teacher>`):
  tiny   CPU: a tiny teacher workdir on a JSONL of general prompts (`question` field; e.g. the chit-chat
         prompts of `r1jax.data.chitchat.write_chitchat`)
  large  accelerator: any teacher (r1jax workdir or Hugging Face directory) in the R1-Distill format

Each row is answered with a CoT, or without one for short questions ("hello"; `no_cot_max_words`) or
rows whose `cot` field is false, as R1 did with DeepSeek-V3. The output `<workdir>/sft_data.jsonl`
(prompt/completion + provenance) is a `jsonl` source of `configs/sft_mix.py`. Resumable.
"""
from r1jax.config import base_config, sibling_config


def get_config(arg: str = "tiny"):
  preset, opts = sibling_config(__file__, "sft_mix").parse_arg(arg, prompts="")
  c = base_config()
  c.stage = "generate_responses"
  c.model.preset = ""                # from init_from (the teacher)
  c.responses = dict(
      tasks=[dict(name="jsonl", task="general", path=opts["prompts"], question_field="question")],
      template="r1_cold_start", output_template="r1_cold_start", system="",
      num_samples=2, temperature=0.7, top_p=0.95, max_new_tokens=256, max_prompt_len=256,
      batch_size=8, chunk_size=64, seed=0, cot_field="cot", default_cot=True, no_cot_max_words=3,
      filters=dict(target_language="auto", min_language_share=0.95, max_paragraph_words=300,
                   max_code_blocks=0),
      stop_strings=[], cache_dtype="bfloat16")
  if preset == "tiny":
    c.responses.update(max_new_tokens=64, max_prompt_len=64, batch_size=16, cache_dtype="float32")
  elif preset == "large":
    c.responses.update(template="r1_distill", output_template="r1_distill", max_new_tokens=4096,
                       max_prompt_len=1024, batch_size=32, chunk_size=512, cache_dtype="bfloat16")
    c.model.update(dtype="bfloat16", param_dtype="bfloat16")
    c.mesh.shape = (1, -1, 1)
  else:
    raise ValueError(f"Unknown preset {preset!r} for configs/generate_responses.py (tiny, large)")
  return c
