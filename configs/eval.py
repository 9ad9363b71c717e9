"""Stage `eval`: pass@1 / cons@k / pass@k of a checkpoint, with standard errors (docs/evaluation.md).

Presets (`--config=configs/eval.py:<preset> --config.init_from=<workdir or HF dir>`):
  tiny       a tiny workdir on the held-out procedural Countdown + arithmetic test split (CPU)
  math500    MATH-500, k = 4 samples per problem
  aime24     AIME 2024, k = 64 (30 problems: many samples keep the standard error small)
  gsm8k      GSM8K test, k = 4
  amc23      AMC 2023, k = 16
  humaneval  HumanEval, k = 4 (pass@1 and pass@k; no cons@k for code)
  paper      all five benchmarks with the per-benchmark k above
All sample at temperature 0.6 and top-p 0.95, as DeepSeek-R1 reports.
"""
from r1jax import stage_config as sc
from r1jax.config import base_config
from r1jax.data.templates import MATH_INSTRUCTION
from r1jax.evals import runner

_ACCEL_PRESETS = ('math500', 'aime24', 'gsm8k', 'amc23', 'humaneval', 'paper')
_PAPER_K = {'math500': 4, 'aime24': 64, 'gsm8k': 4, 'amc23': 16, 'humaneval': 4}


def get_config(arg: str = 'tiny'):
  c = base_config()
  c.stage = 'eval'
  c.model.preset = ''          # the architecture comes from init_from
  # Every field and default from `r1jax.evals.runner.EvalSection`; set here what differs.
  c.eval = sc.configdict_of(runner.EvalSection)
  c.eval.benchmarks = ['countdown']
  if arg == 'tiny':
    c.eval.benchmarks = [dict(name='countdown', num_examples=64),
                         dict(name='arithmetic', num_examples=64)]
    c.eval.max_new_tokens = 96
    c.eval.max_prompt_len = 256
    c.eval.batch_size = 16
    c.eval.pass_ks = [1, 4]
    c.eval.cache_dtype = 'float32'
    c.eval.reward_workers = 0
  elif arg in _ACCEL_PRESETS:
    names = list(_PAPER_K) if arg == 'paper' else [arg]
    # DeepSeek's recommended math instruction; HumanEval questions carry their own.
    c.eval.benchmarks = [dict(name=n, num_samples=_PAPER_K[n], pass_ks=sorted({1, _PAPER_K[n]}),
                              **({} if n == 'humaneval' else {'question_format': MATH_INSTRUCTION}))
                         for n in names]
    c.eval.template = 'r1_distill'     # DeepSeek's own prompt format; set to the model's
    c.eval.system = ''
    c.eval.max_new_tokens = 32768 if arg in ('aime24', 'paper') else 8192
    c.eval.max_prompt_len = 1024
    c.eval.batch_size = 32
    c.eval.prompt_len_buckets = [256, 512, 1024]
    c.model.dtype = 'bfloat16'
    c.model.param_dtype = 'bfloat16'
    c.mesh.shape = (1, -1, 1)          # FSDP over all devices; the sampler shards the batch
  else:
    raise ValueError(f"Unknown preset {arg!r} for configs/eval.py (tiny, {', '.join(_ACCEL_PRESETS)})")
  return c
