"""The logical-axis rules' replication fallback is visible at the default verbosity."""
import logging

from r1jax import sharding


def test_indivisible_dim_is_replicated_with_a_warning(caplog, monkeypatch):
  monkeypatch.setattr(sharding, "_WARNED", set())  # other tests may have warned already
  mesh = sharding.make_mesh((2, 1, 4))
  rules = sharding.ShardingRules()
  with caplog.at_level(logging.WARNING, logger="r1jax.sharding"):
    spec = sharding.logical_to_spec(("embed", "heads", "head_dim"), (64, 14, 16), rules, mesh)
    again = sharding.logical_to_spec(("embed", "heads", "head_dim"), (64, 14, 16), rules, mesh)
  assert spec == again and spec[1] is None  # 14 heads do not split 4 ways: replicated
  warned = [r for r in caplog.records if r.levelno == logging.WARNING and "14" in r.getMessage()]
  assert len(warned) == 1  # once per (axis, dim, mesh axes), not at every trace
  assert "heads" in warned[0].getMessage() and "tensor" in warned[0].getMessage()
