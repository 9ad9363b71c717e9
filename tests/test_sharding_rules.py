"""`config.sharding_rules` in r1jax's dict form and in MaxText's list-of-pairs form."""
import pytest

from r1jax import experiment
from r1jax.config import base_config
from r1jax.sharding import ShardingRules

# An excerpt of MaxText's base.yml `logical_axis_rules`, pasted as is.
MAXTEXT_RULES = [
    ["activation_batch", ["data", "fsdp", "fsdp_transpose", "expert"]],
    ["activation_heads", ["tensor", "tensor_transpose", "sequence", "tensor_sequence"]],
    ["activation_length", ["sequence", "context"]],
    ["activation_embed", ["tensor", "tensor_transpose"]],
    ["activation_mlp", ["tensor", "tensor_transpose", "tensor_sequence"]],
    ["activation_vocab", ["tensor", "tensor_transpose", "sequence", "tensor_sequence"]],
    ["activation_vocab", "tensor"],
    ["activation_stage", "stage"],
    ["mlp", ["fsdp_transpose", "tensor", "tensor_sequence", "autoregressive"]],
    ["vocab", ["tensor", "tensor_transpose", "tensor_sequence", "autoregressive"]],
    ["q_heads", ["tensor", "tensor_transpose", "tensor_sequence", "autoregressive"]],
    ["kv_heads", ["tensor", "tensor_transpose", "tensor_sequence", "autoregressive"]],
    ["embed", ["fsdp", "fsdp_transpose", "sequence", "tensor_transpose", "context", "expert"]],
    ["embed", ["fsdp", "sequence", "tensor_transpose", "context", "expert"]],
    ["norm", ["tensor", "tensor_transpose", "tensor_sequence"]],
    ["layers", "stage"],
    ["kv", []],
    ["cache_batch", []],
    ["exp", "expert"],
]


def test_maxtext_pairs():
  rules = ShardingRules.from_dict(MAXTEXT_RULES)
  assert rules.batch == ("data", "fsdp")            # activation_batch; expert etc. dropped
  assert rules.act_heads == "tensor" and rules.act_embed == "tensor"
  assert rules.seq is None                          # sequence/context: not mesh axes here
  assert rules.mlp == "tensor" and rules.heads == "tensor" and rules.embed == "fsdp"
  assert rules.norm == "tensor" and rules.head_dim is None
  assert rules.act_kv_heads == ShardingRules().act_kv_heads  # not named: the default
  assert ShardingRules.from_pairs([("embed", ["tensor"]), ("embed", "fsdp")]).embed == "tensor"
  with pytest.raises(ValueError, match="pairs"):
    ShardingRules.from_pairs([("embed",)])


def test_config_field_accepts_both_forms():
  c = base_config()
  c.sharding_rules.logical_axis_rules = MAXTEXT_RULES
  c.sharding_rules.batch = "data"                   # dict keys apply on top of the pairs
  _, rules = experiment.mesh_and_rules(c)
  assert rules.batch == "data" and rules.act_embed == "tensor" and rules.embed == "fsdp"
  c = base_config()
  c.sharding_rules.mlp = None
  assert experiment.mesh_and_rules(c)[1].mlp is None
  with pytest.raises(ValueError, match="Unknown logical axis"):
    ShardingRules.from_dict({"logical_axis_rules": MAXTEXT_RULES, "hidden": "tensor"})
