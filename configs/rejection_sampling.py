"""Stage `rejection_sampling` (DeepSeek-R1 stage 3) and cold-start data generation (stage 1).

Presets (`--config=configs/rejection_sampling.py:<preset> --config.init_from=<workdir>`):
  tiny        a tiny RL workdir on procedural Countdown train prompts (CPU, minutes)
  cold_start  tiny: cold-start examples (reasoning, then a summary) from an R1-Zero-style workdir
  math        a realistic run: GSM8K train (or any JSONL) prompts, 16 samples each, a random correct one
The output (`<workdir>/sft_data.jsonl`, fields prompt/completion) feeds `configs/sft.py` via a
`jsonl` data source; `<workdir>/pass_rates.jsonl` reports per-prompt pass rates. Re-running with the
same workdir resumes where it stopped.
"""
from r1jax import stage_config as sc
from r1jax.config import base_config
from r1jax.data.templates import MATH_INSTRUCTION
from r1jax.evals import rejection_sampling as rs


def get_config(arg: str = 'tiny'):
  c = base_config()
  c.stage = 'rejection_sampling'
  c.model.preset = ''          # the architecture comes from init_from
  # Every field and default from `RejectionSection`; set here what differs.
  c.rejection = sc.configdict_of(rs.RejectionSection)
  c.rejection.tasks = [dict(name='countdown', split='train', num_examples=256)]
  c.rejection.max_new_tokens = 512
  # R1 sec. 2.3.3: drop CoTs with mixed languages, long paragraphs and code blocks
  # (r1jax/evals/curation.py); keep a random correct sample (the paper names no rule).
  c.rejection.max_paragraph_words = 300
  if arg in ('tiny', 'cold_start'):
    c.rejection.tasks = [dict(name='countdown', split='train', num_examples=128)]
    c.rejection.num_samples = 8
    c.rejection.max_new_tokens = 96
    c.rejection.max_prompt_len = 256
    c.rejection.batch_size = 16
    c.rejection.chunk_size = 32
    c.rejection.cache_dtype = 'float32'
    c.rejection.reward.num_workers = 0
    if arg == 'cold_start':
      c.rejection.mode = 'cold_start'
      c.rejection.num_samples = 4
      c.rejection.summary_format = 'The answer is {summary}.'
  elif arg == 'math':
    c.rejection.tasks = [dict(name='gsm8k', split='train')]
    c.rejection.template = 'r1_distill'
    c.rejection.question_format = MATH_INSTRUCTION   # R1-Distill: <think> ... </think> summary
    c.rejection.num_samples = 16
    c.rejection.temperature = 0.7
    c.rejection.max_new_tokens = 8192
    c.rejection.max_prompt_len = 1024
    c.rejection.max_completion_tokens = 6144
    c.rejection.batch_size = 32
    c.rejection.chunk_size = 512
    c.rejection.pass_rate_min = 0.0625   # at least one correct of 16 ...
    c.rejection.pass_rate_max = 0.9375   # ... and not trivially easy
    c.rejection.prompt_len_buckets = [256, 512, 1024]
    c.rejection.reward.num_workers = 8
    c.model.dtype = 'bfloat16'
    c.model.param_dtype = 'bfloat16'
    c.mesh.shape = (1, -1, 1)
  else:
    raise ValueError(f"Unknown preset {arg!r} for configs/rejection_sampling.py "
                     "(tiny, cold_start, math)")
  return c
