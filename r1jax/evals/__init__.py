"""Evaluation (pass@1, cons@k, pass@k with standard errors) and rejection sampling.

  from r1jax.evals import evaluate, metrics
  result = evaluate(sampler=sampler, params=params, tokenizer=tok, template='r1_zero',
                    records=records, num_samples=4)
  result.summary['pass@1'], result.summary['cons@4']

Stages: `eval` (`r1jax.evals.runner.run`) and `rejection_sampling`
(`r1jax.evals.rejection_sampling.run`). See docs/evaluation.md.
"""
from r1jax.evals import metrics
from r1jax.evals.metrics import majority_vote, mean_and_se, pass_at_k, summarize

__all__ = ['metrics', 'majority_vote', 'mean_and_se', 'pass_at_k', 'summarize', 'evaluate',
           'EvalResult']


def __getattr__(name):
  # The evaluator imports JAX and the sampler; keep `r1jax.evals.metrics` importable without them.
  if name in ('evaluate', 'EvalResult'):
    from r1jax.evals import evaluator
    return getattr(evaluator, name)
  raise AttributeError(name)
