"""The SFT loop's `steps_per_s` / `tokens_per_s`: wall time of the steps, waits included."""
import json
import time

import jax

from r1jax.sft import trainer

from sft_testlib import tiny_config


def test_steps_per_s_counts_the_wait_for_the_steps(tmp_path, monkeypatch):
  """Dispatch is asynchronous, so the loop can run ahead of the steps; the rate must count the
  wait for their metrics too (session 17: it did not, and a 1-device base read 3.6 steps/s while
  its log's timestamps said 2.3). Fetching is made slow here: 0.5 s per fetch."""
  c = tiny_config('pretrain', (dict(kind='procedural', task='arithmetic', num_examples=20,
                                    template='r1_zero_bare'),),
                  num_steps=4, batch_size=8, seq_len=48, log_every=2, checkpoint_every=1000)
  get = jax.device_get
  monkeypatch.setattr(jax, 'device_get', lambda x: (time.sleep(0.5), get(x))[1])
  trainer.train(c, tmp_path)
  rows = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  rates = [r['steps_per_s'] for r in rows if 'steps_per_s' in r]
  assert len(rates) == 2 and max(rates) < 2 / 0.5, rates   # 2 steps per window, >= 0.5 s each
