"""Reward models: a Transformer with a scalar head trained on preference pairs (`r1jax.rm.train`), and a batched
on-mesh scorer for all-scenario RL (`r1jax.rm.scorer.RewardModelScorer`). See docs/pipeline.md."""
