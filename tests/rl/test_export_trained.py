"""Export of a workdir that a real stage wrote (the session's tiny pretrain, `base_workdir`):
the template comes from the stage's saved config and the logits survive the round trip."""
import json

import jax
import numpy as np

from r1jax import experiment, sharding
from r1jax.checkpoint import restore_params
from r1jax.data.templates import get_template, render_chat
from r1jax.export import export
from r1jax.models import hf
from r1jax.models.factory import abstract_model, merge_params, param_shardings, split_params
from r1jax.tokenizer import load_tokenizer


def test_export_a_trained_workdir(base_workdir, tmp_path):
  out = tmp_path / "export"
  res = export(base_workdir, out)
  assert res.template == "r1_zero_bare"  # from config.data.sources of the pretrain stage
  cfg = experiment.load_model_config(base_workdir)
  mesh, rules = sharding.make_mesh((1, -1, 1)), sharding.ShardingRules()
  abstract = abstract_model(cfg, mesh, rules)
  graphdef, abs_params = split_params(abstract)
  target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abs_params, param_shardings(abstract, mesh, rules))
  params, meta = restore_params(base_workdir, target)
  assert meta["stage"] == "pretrain"
  tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 12)).astype(np.int32)
  positions = np.tile(np.arange(12), (2, 1))
  ref, _ = merge_params(graphdef, jax.device_get(params))(tokens, positions, None)
  got, _ = hf.load_pretrained(str(out))(tokens, positions, None)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))
  tok = load_tokenizer(base_workdir / "tokenizer" / "tokenizer.model")
  text = render_chat((out / "chat_template.jinja").read_text(),
                     [{"role": "user", "content": "What is 2 + 3?"}], bos_token="<s>")
  assert text == "<s>" + get_template("r1_zero_bare").render_prompt("What is 2 + 3?")
  gen = json.loads((out / "generation_config.json").read_text())
  assert tok.token_to_id("</answer>") in gen["eos_token_id"]
