"""A one-layer SFT / pretrain config on the 8-device test mesh, for the loop's tests."""
from r1jax import config as config_lib


def tiny_config(stage: str, sources: tuple, **train):
  """`stage` ('sft' or 'pretrain') on procedural `sources`, `train` fields overriding the base."""
  c = config_lib.base_config()
  c.stage = stage
  c.model.overrides.update(dict(num_layers=1, embed_dim=32, mlp_dim=64, num_heads=2, num_kv_heads=1))
  c.tokenizer.vocab_size = 400
  c.mesh.shape = (2, 2, 2)
  c.optim.warmup_steps = 1
  c.train.update(**train)
  c.data = dict(sources=sources)
  return c
