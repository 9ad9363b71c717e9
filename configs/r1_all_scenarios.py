"""R1 stage 5, RL for all scenarios: rule-based rewards for reasoning prompts, a pluggable scorer
for general prompts, prompt sources mixed with configured proportions.

Presets (`--config=configs/r1_all_scenarios.py:<preset>[,general=PATH][,helpful_rm=DIR]
[,harmless_rm=DIR][,helpful_scorer=MOD:FN][,harmless_scorer=MOD:FN] --config.init_from=...`):
  tiny   CPU: from a tiny curated-mix SFT workdir; arithmetic prompts mixed with general prompts
         from a JSONL (`question` field; e.g. `r1jax.data.chitchat.write_chitchat`), scored by the
         TOY scorers of `r1jax.rewards.general` (length/keyword helpfulness, blocklist harm) unless
         reward models or scorers are given
  math   accelerator: math prompts + a general-prompt JSONL. Needs, for helpfulness and for
         harmlessness each, a reward model (`*_rm=`: a `reward_model` stage workdir, scored on the
         mesh by `r1jax.rm.scorer:RewardModelScorer`) or a scorer import path (`*_scorer=`);
         without one the config is an error (no silent fallback to the toy scorers)

`config.task.sources` are task configs (a general one is `{'name': 'jsonl', 'task': 'general',
'path': ...}`) and `config.task.weights` their proportions in every batch of prompts. Rewards
(see docs/pipeline.md, "All-scenario RL"):
  reasoning rows: accuracy + format + language   (helpfulness / harmlessness give 0)
  general rows:   format + language + helpfulness (summary only) + harmlessness (whole response)
                  (accuracy gives 0)
A scorer is any `fn(prompts: list[str], responses: list[str]) -> list[float]`: set
`rewards.kwargs.helpfulness.scorer` to an import path `"pkg.module:function"`, a name registered
with `r1jax.rewards.register_scorer`, or a factory path plus `scorer_init` kwargs for a
model-based scorer (built once per process).
"""

import ml_collections

from r1jax.config import sibling_config


def _sibling(name: str):
  return sibling_config(__file__, name)


TOY_HELPFULNESS = "r1jax.rewards.general:toy_helpfulness"
TOY_HARMLESSNESS = "r1jax.rewards.general:toy_harmlessness"


def all_scenario_rewards(num_workers: int = 0, helpfulness_scorer: str = TOY_HELPFULNESS,
                         harmlessness_scorer: str = TOY_HARMLESSNESS):
  r = _sibling("r1_reasoning_rl").reasoning_rewards(num_workers=num_workers)
  r.weights = {**r.weights, "helpfulness": 1.0, "harmlessness": 0.5}
  r.kwargs = {**r.kwargs, "helpfulness": {"scorer": helpfulness_scorer},
              "harmlessness": {"scorer": harmlessness_scorer}}
  return r


RM_SCORER = "r1jax.rm.scorer:RewardModelScorer"


def _scorer(kind: str, opts: dict, preset: str, toy: str) -> dict:
  """Reward kwargs for helpfulness / harmlessness: a reward model, a scorer path, or (tiny only) the toy."""
  rm, path = opts[f"{kind}_rm"], opts[f"{kind}_scorer"]
  if rm and path:
    raise ValueError(f"give {kind}_rm or {kind}_scorer, not both")
  if rm:
    return {"scorer": RM_SCORER, "scorer_init": {"path": rm}}
  if path:
    return {"scorer": path}
  if preset != "tiny":
    raise ValueError(f"configs/r1_all_scenarios.py:{preset} needs {kind}_rm=<reward_model workdir> or "
                     f"{kind}_scorer=<module:function>; the toy scorers are for the tiny preset only")
  return {"scorer": toy}


def get_config(arg: str = "tiny"):
  rr = _sibling("r1_reasoning_rl")
  preset, opts = _sibling("sft_mix").parse_arg(arg, general="", helpful_rm="", harmless_rm="",
                                                helpful_scorer="", harmless_scorer="")
  c = rr.get_config("tiny" if preset == "tiny" else "math")
  c.init_from = ""                  # set: the curated-mix SFT workdir (stage 4)
  general = dict(name="jsonl", task="general", path=opts["general"], question_field="question")
  if preset == "tiny":
    c.task = ml_collections.ConfigDict(dict(
        sources=(dict(rr.ARITH, num_examples=6000, seed=0), general), weights=(0.75, 0.25)))
    c.rewards = all_scenario_rewards()
    c.rewards.kwargs.helpfulness = _scorer("helpful", opts, preset, TOY_HELPFULNESS)
    c.rewards.kwargs.harmlessness = _scorer("harmless", opts, preset, TOY_HARMLESSNESS)
  elif preset == "math":
    c.task = ml_collections.ConfigDict(dict(
        sources=(dict(name="jsonl", path="", question_field="problem", answer_field="answer"),
                 general), weights=(0.75, 0.25)))
    c.rewards = all_scenario_rewards(num_workers=8)
    c.rewards.kwargs.helpfulness = _scorer("helpful", opts, preset, TOY_HELPFULNESS)
    c.rewards.kwargs.harmlessness = _scorer("harmless", opts, preset, TOY_HARMLESSNESS)
  else:
    raise ValueError(f"Unknown preset {preset!r} for configs/r1_all_scenarios.py (tiny, math)")
  return c
