"""`train.num_epochs`: the SFT stage runs exactly the planned epochs."""
from r1jax.data import epochs
from r1jax.sft import trainer

from sft_testlib import tiny_config


def test_sft_two_epochs_sets_the_step_count(tmp_path):
  c = tiny_config('sft', (dict(kind='procedural', task='arithmetic', num_examples=20,
                               template='r1_zero_bare'),
                          dict(kind='procedural', task='arithmetic', num_examples=12, seed=1,
                               template='r1_zero_bare')),
                  num_steps=1000, batch_size=8, seq_len=48, log_every=1, checkpoint_every=1000,
                  num_epochs=2)
  c.data.epoch_proportions = (3, 1)
  out = trainer.train(c, tmp_path)
  assert out['step'] == epochs.num_batches([20, 12], 2, 8, proportions=(3, 1)) == 8
