"""Typed stage configs: presets, unknown / conflicting fields, one place for defaults."""
import dataclasses
import pathlib
import re

import pytest
from absl import flags
from ml_collections import config_flags

from r1jax import config as config_lib
from r1jax import stage_config as sc
from r1jax.rl import advantages as adv_lib
from r1jax.rl import losses
from r1jax.rl.trainer import loss_config

ROOT = pathlib.Path(__file__).resolve().parents[1]


def r1_zero(arg="tiny"):
  return config_lib.sibling_config(str(ROOT / "configs" / "x.py"), "r1_zero").get_config(arg)


@pytest.mark.parametrize("preset", sorted(losses.PRESETS))
def test_loss_config_with_each_preset_yields_the_preset(preset):
  rl = sc.rl_section()
  rl.loss.preset = preset
  got = loss_config(rl)
  assert got == dataclasses.replace(losses.PRESETS[preset], temperature=1.0)


@pytest.mark.parametrize("preset", sorted(losses.PRESETS))
def test_r1_zero_config_does_not_override_the_preset(preset):
  # Old bug: configs/r1_zero.py set every loss field, so preset="gspo" trained token-level
  # GRPO with eps 0.2/0.2. Only the tiny preset's explicit beta=0 may differ now.
  c = r1_zero("qwen2.5-0.5b-gsm8k")
  c.rl.loss.preset = preset
  assert sc.grpo_config(c).rl.loss == losses.PRESETS[preset]


def test_explicit_fields_override_the_preset():
  rl = sc.rl_section()
  rl.loss.preset = "gspo"
  rl.loss.clip_eps_high = 1e-3
  got = loss_config(rl)
  assert got.ratio_level == "sequence" and got.clip_eps_low == 3e-4 and got.clip_eps_high == 1e-3
  c = r1_zero("tiny")              # preset "grpo" (beta 0.001) with an explicit beta = 0
  assert sc.grpo_config(c).rl.loss.beta == 0.0


def test_dr_grpo_preset_sets_the_advantage_unless_explicit():
  rl = sc.rl_section()
  rl.loss.preset = "dr_grpo"
  assert sc.build_rl(rl).advantage == "dr_grpo"
  rl.advantage = "rloo"
  assert sc.build_rl(rl).advantage == "rloo"
  assert sc.build_rl(sc.rl_section()).advantage == "grpo"


def test_temperature_in_loss_section():
  # Old bug: rl.loss.temperature raised "got multiple values for keyword 'temperature'".
  rl = sc.rl_section().to_dict()
  rl["temperature"] = 0.7
  rl["loss"]["temperature"] = 0.7
  assert sc.build_rl(rl).loss.temperature == 0.7
  rl["loss"]["temperature"] = 1.0
  with pytest.raises(ValueError, match=r"config\.rl\.loss\.temperature"):
    sc.build_rl(rl)
  rl = sc.rl_section()
  rl.temperature = 0.6
  assert sc.build_rl(rl).loss.temperature == 0.6


@pytest.mark.parametrize("path,value,match", [
    (("rl", "loss", "bogus"), 1, r"config\.rl\.loss\.bogus"),
    (("rl", "bogus"), 1, r"config\.rl\.bogus"),
    (("bogus",), 1, r"config\.bogus"),
    (("eval", "evry"), 1, r"config\.eval\.evry"),
    (("rl", "group_size"), "ten", r"config\.rl\.group_size"),
    (("rl", "loss", "preset"), "ppo", r"config\.rl\.loss\.preset"),
    (("rl", "advantage"), "gae", r"advantage"),
    (("rl", "minibatch_size"), 7, r"minibatch_size"),
])
def test_unknown_and_bad_fields_name_themselves(path, value, match):
  d = r1_zero("tiny").to_dict()
  node = d
  for k in path[:-1]:
    node = node[k]
  node[path[-1]] = value
  with pytest.raises(ValueError, match=match):
    sc.grpo_config(d)


def _parse(argv):
  """The command line's parse (as r1jax.main: config_flags, lock_config=True)."""
  fv = flags.FlagValues()
  argv = ["prog", f"--config={ROOT / 'configs' / 'r1_zero.py'}:tiny", *argv]
  holder = config_flags.DEFINE_config_file("config", None, "", flag_values=fv,
                                           lock_config=True, sys_argv=argv)
  fv(argv)
  return holder.value


def test_command_line_overrides_reach_the_typed_config():
  cfg = sc.grpo_config(_parse([
      "--config.rl.loss.preset=gspo", "--config.rl.loss.clip_eps_high=0.001",
      "--config.rl.group_size=4", "--config.rl.recompute_old_logprobs=False",
      "--config.eval.max_new_tokens=16", "--config.rl.stop_strings=('</answer>', '<|im_end|>')"]))
  assert cfg.rl.loss.ratio_level == "sequence" and cfg.rl.loss.clip_eps_high == 0.001
  assert cfg.rl.group_size == 4 and cfg.rl.recompute_old_logprobs is False
  assert cfg.eval.max_new_tokens == 16 and cfg.rl.stop_strings == ("</answer>", "<|im_end|>")
  with pytest.raises(Exception, match="bogus"):
    _parse(["--config.rl.bogus=1"])


def test_advantage_defaults_are_written_once():
  # Old bug: advantages.py defaulted to ddof 1 / eps 1e-6, ExperienceMaker and the trainer
  # to ddof 0 / eps 1e-4. Now the RLConfig defaults are advantages.py's constants, and the
  # ConfigDict a stage config starts from is generated from RLConfig.
  rl = sc.RLConfig()
  assert (rl.adv_ddof, rl.adv_eps) == (adv_lib.DEFAULT_DDOF, adv_lib.DEFAULT_EPS)
  sec = sc.rl_section()
  assert (sec.adv_ddof, sec.adv_eps) == (rl.adv_ddof, rl.adv_eps)
  import inspect
  sig = inspect.signature(adv_lib.compute_advantages)
  assert sig.parameters["ddof"].default == rl.adv_ddof
  assert sig.parameters["eps"].default == rl.adv_eps


def _doc_table(section: str) -> dict[str, str]:
  text = (ROOT / "docs" / "grpo.md").read_text()
  start = text.index(section)
  rows = {}
  for line in text[start:].splitlines()[1:]:
    if line.startswith("#"):
      break
    m = re.match(r"\|\s*`([a-z_0-9]+)`\s*\|\s*`?([^|`]*)`?\s*\|", line)
    if m:
      rows[m.group(1)] = m.group(2).strip()
  return rows


def _fmt(v) -> str:
  return repr(v)


def test_docs_defaults_match_the_code():
  rows = _doc_table("## Stage config defaults")
  rl = sc.RLConfig()
  loss = losses.LossConfig()
  want = {f.name: getattr(rl, f.name) for f in dataclasses.fields(rl) if f.name != "loss"}
  want.update({f"loss.{f.name}"[5:]: getattr(loss, f.name) for f in dataclasses.fields(loss)
               if f.name != "temperature"})
  want["preset"] = ""
  assert set(rows) == set(want), set(rows) ^ set(want)
  for k, v in want.items():
    assert rows[k] == _fmt(v), (k, rows[k], v)


def test_every_stage_config_has_no_default_outside_the_dataclasses():
  # Each config file's sections are generated from the dataclasses, so the typed config of
  # a bare base config equals the dataclass defaults.
  c = config_lib.base_config()
  c.data = {"sources": ({"kind": "procedural"},)}
  cfg = sc.sft_config(c)
  assert cfg.optim == sc.OptimConfig() and cfg.train == sc.TrainConfig()
  assert cfg.model == sc.ModelSection(overrides=cfg.model.overrides)


def test_resolved_config_is_saved(tmp_path):
  cfg = sc.grpo_config(r1_zero("tiny"))
  d = sc.announce(cfg, tmp_path)
  import json
  saved = json.loads((tmp_path / sc.RESOLVED_CONFIG_FILE).read_text())
  assert saved == d and saved["rl"]["loss"]["clip_eps_low"] == 0.2
