"""`train.num_epochs`: the SFT stage runs exactly the planned epochs."""
from r1jax import config as config_lib
from r1jax.data import epochs
from r1jax.sft import trainer


def test_sft_two_epochs_sets_the_step_count(tmp_path):
  c = config_lib.base_config()
  c.stage = 'sft'
  c.model.overrides.update(dict(num_layers=1, embed_dim=32, mlp_dim=64, num_heads=2, num_kv_heads=1))
  c.tokenizer.vocab_size = 400
  c.mesh.shape = (2, 2, 2)
  c.optim.warmup_steps = 1
  c.train.update(num_steps=1000, batch_size=8, seq_len=48, log_every=1, checkpoint_every=1000, num_epochs=2)
  c.data = dict(sources=(dict(kind='procedural', task='arithmetic', num_examples=20, template='r1_zero_bare'),
                         dict(kind='procedural', task='arithmetic', num_examples=12, seed=1,
                              template='r1_zero_bare')),
                epoch_proportions=(3, 1))
  out = trainer.train(c, tmp_path)
  assert out['step'] == epochs.num_batches([20, 12], 2, 8, proportions=(3, 1)) == 8
