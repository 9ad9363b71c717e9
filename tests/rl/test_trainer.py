"""End-to-end tests of the GRPO stage (`r1jax.rl.trainer`) on a tiny model, 8 CPU devices.

One tiny base model is pre-trained once per session (`base_workdir` in
conftest.py: the SFT trainer, stage 'pretrain', arithmetic with the bare R1-Zero
template); every GRPO run starts from it with `init_from`. Runs are shared
between tests through module-scoped fixtures: each `train()` call pays its own
compilation (~10 s on 2 cores).
"""
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import grpo_testlib as lib
from r1jax.checkpoint import Checkpointer
from r1jax.metrics import read_metrics
from r1jax.rl import experience as experience_lib
from r1jax.rl import trainer as rl_trainer
from r1jax.rl.experience import select_groups
from r1jax.rl.logprobs import completion_logprobs


class Probe:
  """Instruments one `rl_trainer.train` call through monkeypatching.

  Records the GRPOSetup, the jitted update / log-prob functions (for their
  compilation caches), the experience of every step, and optionally a copy of
  the parameters after every update.
  """

  def __init__(self, mp: pytest.MonkeyPatch, record_params: bool = False):
    self.setup = self.update = self.logprob = None
    self.logprob_calls = 0
    self.params_after_update = []
    self.experiences = []
    self.compiles = []  # per step: (sampler traces, update programs, log-prob programs)
    self.records = []   # the metrics passed to on_step

    orig_setup, orig_update, orig_logprob = (rl_trainer.setup, rl_trainer._make_update,
                                             rl_trainer._make_logprob_fn)

    def setup(config, workdir):
      self.setup = orig_setup(config, workdir)
      return self.setup

    def make_update(*args, **kwargs):
      self.update = orig_update(*args, **kwargs)

      def update(state, batch, rows):
        state, metrics = self.update(state, batch, rows)
        if record_params:
          self.params_after_update.append([np.asarray(x) for x in jax.tree.leaves(state.params)])
        return state, metrics
      return update

    def make_logprob(*args, **kwargs):
      self.logprob = orig_logprob(*args, **kwargs)

      def logprob(params, batch):
        self.logprob_calls += 1
        return self.logprob(params, batch)
      return logprob

    class Maker(rl_trainer.ExperienceMaker):
      def make(inner, params, batch, rng):  # noqa: N805 - `self` is the probe
        exp = super().make(params, batch, rng)
        self.experiences.append(exp)
        return exp

    mp.setattr(rl_trainer, "setup", setup)
    mp.setattr(rl_trainer, "_make_update", make_update)
    mp.setattr(rl_trainer, "_make_logprob_fn", make_logprob)
    mp.setattr(rl_trainer, "ExperienceMaker", Maker)

  def on_step(self, step, metrics):
    self.records.append(dict(metrics))
    self.compiles.append((self.setup.sampler.num_traces, self.update._cache_size(),
                          self.logprob._cache_size() if self.logprob_calls else 0))


def _train(config, workdir, record_params=False, on_step=None):
  with pytest.MonkeyPatch.context() as mp:
    probe = Probe(mp, record_params)

    def hook(step, metrics):
      probe.on_step(step, metrics)
      if on_step is not None:
        on_step(step, metrics)
    out = rl_trainer.train(config, workdir, on_step=hook)
  return out, probe


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _restore(workdir, out):
  """(step, tree) of the latest GRPO checkpoint: {'train': state[, 'ref': ref params]}."""
  s = out["setup"]
  target = {"train": out["state"], **({"ref": s.ref_params} if s.ref_params is not None else {})}
  with Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False) as ck:
    step, tree, _, meta = ck.restore_latest(target)
  return step, tree, meta


@pytest.fixture(scope="module")
def base_params(base_workdir):
  s = rl_trainer.setup(lib.grpo_config(base_workdir), base_workdir / "unused")
  params = _leaves(s.state.params)
  s.reward_system.close()
  return params


# 4 steps, beta > 0, two minibatches per step (so the minibatch permutation is exercised).
RESUME_KW = dict(num_steps=4, beta=0.05, minibatch_size=8)


@pytest.fixture(scope="module")
def straight(base_workdir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("straight")
  out, probe = _train(lib.grpo_config(base_workdir, **RESUME_KW), workdir)
  return workdir, out, probe


@pytest.fixture(scope="module")
def preempted(base_workdir, tmp_path_factory):
  """A run that receives SIGTERM during step 2, then the same command again (the resume)."""
  workdir = tmp_path_factory.mktemp("preempted")
  config = lib.grpo_config(base_workdir, **RESUME_KW)

  def sigterm_at_2(step, metrics):
    if step == 2:
      os.kill(os.getpid(), signal.SIGTERM)  # what a TPU preemption sends

  handler_before = signal.getsignal(signal.SIGTERM)
  first, _ = _train(config, workdir, on_step=sigterm_at_2)
  # The guard's handler is uninstalled on exit (else a later SIGTERM would be swallowed).
  assert signal.getsignal(signal.SIGTERM) == handler_before
  steps_after_stop = Checkpointer(workdir / "checkpoints").all_steps()
  metrics_after_stop = read_metrics(workdir)
  resumed, probe = _train(config, workdir)
  return workdir, first, steps_after_stop, metrics_after_stop, resumed, probe


def test_sigterm_writes_checkpoint_and_stops(preempted):
  workdir, first, steps_after_stop, metrics_after_stop, _, _ = preempted
  assert steps_after_stop == [2]  # checkpoint_every=100: only the stop wrote one
  assert [r["step"] for r in metrics_after_stop] == [1, 2]
  assert int(first["state"].step) == 2 * 2  # 2 GRPO steps x 2 minibatch updates


def test_resume_after_sigterm_is_exact(straight, preempted):
  wa, a, _ = straight
  wb, _, _, _, b, probe_b = preempted
  ra, rb = read_metrics(wa), read_metrics(wb)
  assert [r["step"] for r in ra] == [r["step"] for r in rb] == [1, 2, 3, 4]
  assert len(probe_b.records) == 2  # the resume really started at step 2
  for x, y in zip(ra, rb):
    # Every logged value but the wall-clock ones is bitwise equal (JSON floats round-trip).
    assert lib.deterministic(x) == lib.deterministic(y), x["step"]
  # The run learns something (else the comparison above would be vacuous).
  assert any(r["grad_norm"] > 0 for r in ra)
  for x, y in zip(_leaves(a["state"]), _leaves(b["state"])):
    np.testing.assert_array_equal(x, y)  # params, Adam moments, step
  _, ta, _ = _restore(wa, a)
  _, tb, _ = _restore(wb, b)
  for x, y in zip(_leaves(ta["ref"]), _leaves(tb["ref"])):
    np.testing.assert_array_equal(x, y)


def test_no_recompilation_between_steps(straight):
  _, _, probe = straight
  assert len(probe.compiles) == 4
  sampler_traces, update_programs, logprob_programs = probe.compiles[0]
  # 2 sample chunks of the same shape: one prefill + one decode; one update; one ref log-prob.
  assert (sampler_traces, update_programs, logprob_programs) == (2, 1, 1)
  assert probe.compiles[-1] == probe.compiles[0], probe.compiles


def test_beta_positive_uses_frozen_reference(straight, base_params):
  workdir, out, probe = straight
  assert out["setup"].ref_params is not None
  # Two minibatches per step: pi_old is recomputed (automatically), plus one reference
  # forward per step; both through one compiled program.
  assert out["setup"].recompute_old
  assert probe.logprob_calls == 8
  records = read_metrics(workdir)
  # The sampler-trainer gap is logged every step (fp32 cache and compute: tiny).
  assert all(0.0 <= r["pi_old/gap_max"] < 1e-3 and r["pi_old/seq_ratio_out_of_clip"] == 0.0
             for r in records)
  # Step 1's first minibatch sees ref == policy (kl 0), its second one an updated policy.
  assert all(r["kl"] > 1e-6 for r in records)
  _, tree, meta = _restore(workdir, out)
  # The resolved typed config is saved with the checkpoint and in the workdir.
  assert meta["config"]["rl"]["loss"]["beta"] == 0.05
  assert meta["config"]["rl"]["minibatch_size"] == 8
  assert (workdir / "resolved_config.json").exists()
  for ref, base in zip(_leaves(tree["ref"]), base_params):
    np.testing.assert_array_equal(ref, base)                # frozen (no ref_reset_every)
  assert any(not np.array_equal(p, b) for p, b in zip(_leaves(tree["train"].params), base_params))


def test_beta_zero_has_no_reference(base_workdir, tmp_path):
  s = rl_trainer.setup(lib.grpo_config(base_workdir, beta=0.0), tmp_path)
  s.reward_system.close()
  assert s.ref_params is None
  assert s.loss_cfg.beta == 0.0


@pytest.fixture(scope="module")
def dynamic(base_workdir, tmp_path_factory):
  lib.registry.register("test_even_answers", _even_answer_length_reward, overwrite=True)
  config = lib.grpo_config(base_workdir, num_steps=3, beta=0.05, dynamic_sampling=True,
                           dynamic_sampling_factor=2, ref_reset_every=1)
  config.rewards.weights = {"accuracy": 1.0, "format": 1.0, "test_even_answers": 1.0}
  workdir = tmp_path_factory.mktemp("dynamic")
  out, probe = _train(config, workdir)
  return workdir, out, probe


def _even_answer_length_reward(completions, answer=None, completion_lengths=None, **_):
  """Varies within the group for prompts with an even answer, constant 0 otherwise."""
  out = lib.length_reward(completions, completion_lengths)
  even = np.asarray([str(a).lstrip("-").isdigit() and int(a) % 2 == 0 for a in answer])
  return np.where(even, out, 0.0).astype(np.float32)


def test_dynamic_sampling_static_shapes_and_counts(dynamic):
  workdir, out, probe = dynamic
  assert [e.rewards.shape[0] for e in probe.experiences] == [2 * 4 * 4] * 3  # oversampled x2
  assert probe.compiles[-1] == probe.compiles[0], probe.compiles
  for exp, rec in zip(probe.experiences, read_metrics(workdir)):
    groups = exp.rewards.reshape(-1, 4)
    informative = int(np.sum(groups.max(axis=1) != groups.min(axis=1)))
    assert rec["dynamic_sampling/informative_groups"] == min(informative, 4)
    assert rec["zero_variance_groups"] == pytest.approx(1 - informative / 8)
  counts = [r["dynamic_sampling/informative_groups"] for r in read_metrics(workdir)]
  assert any(0 < c for c in counts), counts  # the reward makes some groups informative
  # ref_reset_every=1 with one update per step: every update starts at ref == policy.
  assert all(r["kl"] == pytest.approx(0.0, abs=1e-5) for r in read_metrics(workdir))
  # And after the last step the reference is the policy itself.
  _, tree, _ = _restore(workdir, out)
  for ref, p in zip(_leaves(tree["ref"]), _leaves(tree["train"].params)):
    np.testing.assert_array_equal(ref, p)


def test_select_groups_prefers_informative_groups():
  g = 2
  rewards = np.asarray([1, 1, 0, 1, 0, 0, 1, 0, 3, 3], np.float32)  # groups 1 and 3 informative
  rows, n = select_groups(rewards, g, 3, np.random.default_rng(0))
  assert n == 2 and rows.shape == (6,)
  chosen = sorted(set(rows // g))
  assert {1, 3} <= set(chosen) and len(chosen) == 3
  rows, n = select_groups(rewards, g, 1, np.random.default_rng(0))
  assert n == 1 and set(rows // g) <= {1, 3}


def test_nonfinite_loss_skips_update(base_workdir, base_params, tmp_path, monkeypatch):
  orig = experience_lib.adv_lib.compute_advantages
  calls = []

  def nan_first(rewards, *args, **kwargs):  # NaN advantages on the first step only
    calls.append(1)
    adv = np.asarray(orig(rewards, *args, **kwargs))
    return np.full_like(adv, np.nan) if len(calls) == 1 else adv
  monkeypatch.setattr(experience_lib.adv_lib, "compute_advantages", nan_first)
  out, probe = _train(lib.grpo_config(base_workdir, num_steps=2, beta=0.0), tmp_path,
                      record_params=True)
  recs = read_metrics(tmp_path)
  assert [r["skipped"] for r in recs] == [1.0, 0.0]
  assert [r["skipped_updates_total"] for r in recs] == [1.0, 1.0]
  assert recs[0]["loss"] == "nan"  # logged as such, not dropped
  after_nan, after_ok = probe.params_after_update
  for p, b in zip(after_nan, base_params):
    np.testing.assert_array_equal(p, b)  # the NaN update was not applied
  assert any(not np.array_equal(p, b) for p, b in zip(after_ok, base_params))
  assert np.all([np.isfinite(p).all() for p in after_ok])
  # beta = 0: no reference params, no reference forward pass, nothing in the checkpoint.
  # One update per step, fp32 cache: pi_old is the sampler's (no recompute); the gap is
  # read off the first update.
  assert out["setup"].ref_params is None and probe.logprob_calls == 0
  assert not out["setup"].recompute_old and all("pi_old/gap_mean" in r for r in recs)
  assert all(r["kl"] == 0.0 for r in recs)
  _, tree, meta = _restore(tmp_path, out)
  assert set(tree) == {"train"} and meta["skipped_updates_total"] == 1


def test_failing_rewards_score_zero_and_are_counted(base_workdir, tmp_path):
  config = lib.grpo_config(base_workdir, num_steps=1)
  config.rewards.weights = {"accuracy": 1.0, "format": 1.0, "test_length": 1.0,
                            "test_raise": 1.0, "test_hang": 1.0}
  config.rewards.kwargs = {"test_hang": {"marker": str(tmp_path / "hang_marker")}}
  config.rewards.num_workers = 1  # pooled rewards in a worker process, with a hard timeout
  config.rewards.timeout_s = 2.0
  _, probe = _train(config, tmp_path / "run")
  (exp,) = probe.experiences
  (rec,) = read_metrics(tmp_path / "run")
  raising = np.asarray([any(ch in t for ch in "02468") for t in exp.texts])
  assert 0 < raising.sum() < len(raising), exp.texts  # the test needs both kinds
  np.testing.assert_array_equal(exp.components["test_raise"], (~raising).astype(np.float32))
  hang = exp.components["test_hang"]
  assert np.sum(hang == 0) == 1 and np.sum(hang == 1) == len(hang) - 1
  assert rec["reward/timeouts"] == 1.0
  assert rec["reward/errors"] == float(raising.sum())
  assert np.isfinite(rec["loss"]) and rec["skipped"] == 0.0


def test_kl_in_reward_and_tis_step(base_workdir, tmp_path):
  # KL in the reward (k1 summed per sequence, before the advantages) and truncated IS
  # (which forces a pi_old recompute): one step runs and logs both.
  config = lib.grpo_config(base_workdir, num_steps=1, beta=0.05)
  config.rl.loss.kl_in_reward = True
  config.rl.loss.is_correction = "tis"
  out, probe = _train(config, tmp_path)
  rec = read_metrics(tmp_path)[-1]
  assert out["setup"].recompute_old and probe.logprob_calls == 2   # pi_old + reference
  assert "kl_in_reward/seq_mean" in rec and rec["kl"] == 0.0
  assert 0.0 < rec["is_weight_mean"] <= 2.0


def test_continuous_engine_reproduces_static_rollouts(base_workdir, tmp_path, straight):
  """rl.engine='continuous' (4 slots for 8 rows per chunk): the first step's rollouts and
  rewards equal the static sampler's, and nothing recompiles from step to step."""
  from r1jax.rollout.engine import Engine
  config = lib.grpo_config(base_workdir, **{**RESUME_KW, "num_steps": 2}, engine="continuous",
                           engine_slots=4, engine_refill_every=2)
  _, probe = _train(config, tmp_path)
  assert isinstance(probe.setup.sampler, Engine)
  ours, ref = probe.experiences[0], straight[2].experiences[0]
  np.testing.assert_array_equal(np.asarray(ours.rollout.completion_ids),
                                np.asarray(ref.rollout.completion_ids))
  np.testing.assert_allclose(np.asarray(ours.rollout.logprobs), np.asarray(ref.rollout.logprobs),
                             atol=1e-5)
  np.testing.assert_array_equal(ours.rewards, ref.rewards)
  assert probe.compiles[0][0] == 3 and probe.compiles[-1] == probe.compiles[0], probe.compiles


def test_shared_prompt_forward_only_on_whole_groups_in_order():
  """The update's loss runs each prompt once per group only when it sees whole groups in
  order; the reference / pi_old passes (the step's batch) always can; the switch turns both off."""
  from r1jax import stage_config
  rl = lambda **kw: stage_config.RLConfig(num_prompts=4, group_size=4, **kw)
  assert rl_trainer._shared_groups(rl(), 1) == (4, 4)
  assert rl_trainer._shared_groups(rl(), 2) == (4, 4)        # microbatches of 2 groups
  assert rl_trainer._shared_groups(rl(), 8) == (1, 4)        # microbatches of 2 rows
  assert rl_trainer._shared_groups(rl(minibatch_size=8), 1) == (1, 4)   # shuffled rows
  assert rl_trainer._shared_groups(rl(num_iterations=2), 1) == (1, 4)
  assert rl_trainer._shared_groups(rl(share_prompt_forward=False), 1) == (1, 1)
  assert rl_trainer._shared_groups(stage_config.RLConfig(num_prompts=4, group_size=1), 1) == (1, 1)


def test_default_engine_is_bitwise_the_static_sampler(base_workdir, tmp_path, straight):
  """The default rollout engine ('continuous', slots 'auto') gives every row of a sample
  chunk its own slot, so each chunk runs as one static wave: the rollouts, rewards and
  every logged value equal engine='static' bitwise (the quickstart's results do not move)."""
  from r1jax.rollout.engine import Engine
  default = straight[2]
  assert isinstance(default.setup.sampler, Engine) and default.setup.sampler.last_static
  _, probe = _train(lib.grpo_config(base_workdir, **{**RESUME_KW, "num_steps": 2},
                                    engine="static"), tmp_path)
  assert not isinstance(probe.setup.sampler, Engine)
  for ours, ref in zip(default.experiences, probe.experiences, strict=False):
    for a, b in zip(jax.tree.leaves(ours.rollout), jax.tree.leaves(ref.rollout), strict=True):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(ours.rewards, ref.rewards)
  assert len(probe.records) == 2
  assert ([lib.deterministic(r) for r in default.records[:2]]
          == [lib.deterministic(r) for r in probe.records])


@pytest.mark.parametrize("aggregation", ["seq_mean_token_mean", "token_mean",
                                         "seq_mean_token_sum_norm"])
def test_cut_completions_keep_the_full_width_loss_and_gradients(aggregation):
  """A step's completion arrays cut to the bucket that holds its longest completion give the
  full width's loss and gradients (every aggregation, Dr. GRPO's normaliser fixed at
  max_new_tokens), with rows sharded over the 8-device mesh; a step whose longest completion
  needs the full width is left alone."""
  from r1jax.models.config import get_model_config
  from r1jax.models.factory import create_model, split_params
  from r1jax.rl import losses
  from r1jax.rollout import buckets
  from r1jax.sharding import ShardingRules, batch_sharding, make_mesh, replicated
  v, b, g, p, l = 61, 4, 2, 5, 32
  cfg = get_model_config("tiny", num_layers=2, vocab_size=v, embed_dim=32, mlp_dim=64,
                         num_heads=4, num_kv_heads=2, head_dim=8)
  graphdef, params = split_params(create_model(cfg, 0))
  _, ref_params = split_params(create_model(cfg, 1))
  rng = np.random.default_rng(0)
  lengths = np.array([3, 9, 5, 4, 7, 6, 3, 8])              # longest 9: bucket 16 of (8, 16, 24, 32)
  mask = (np.arange(l)[None] < lengths[:, None]).astype(np.int32)
  mesh = make_mesh((8, 1, 1))
  put = lambda x: jax.device_put(jnp.asarray(x), batch_sharding(mesh, ShardingRules(), x.shape))
  batch = {"prompt_ids": put(np.repeat(rng.integers(1, v, (b, p)), g, 0)),
           "prompt_mask": put(np.ones((b * g, p), np.int32)),
           "completion_ids": put(rng.integers(1, v, (b * g, l)) * mask),
           "completion_mask": put(mask),
           "old_logprobs": put((rng.normal(size=(b * g, l)) - 4.0).astype(np.float32) * mask),
           "advantages": put(rng.normal(size=b * g).astype(np.float32))}
  lcfg = losses.width_independent(
      losses.LossConfig(beta=0.04, aggregation=aggregation), max_new_tokens=l)
  params, ref_params = (jax.device_put(x, replicated(mesh)) for x in (params, ref_params))

  def loss_and_grads(batch):
    batch = dict(batch, ref_logprobs=completion_logprobs(
        (graphdef, ref_params), *(batch[k] for k in rl_trainer.LOGPROB_KEYS), group_size=g)[0])
    batch.update(losses.global_counts(batch, lcfg))
    return jax.jit(jax.value_and_grad(lambda q: losses.grpo_loss(q, batch, lcfg, graphdef, g)[0])
                   )(params)

  widths = buckets.completion_widths(l, 4)
  cut, width = experience_lib.cut_completions(batch, lengths, widths)
  assert width == 16 and cut["completion_ids"].shape == cut["old_logprobs"].shape == (b * g, 16)
  assert cut["completion_ids"].addressable_shards[0].data.shape == (1, 16)   # rows stay sharded
  full_loss, full_grads = loss_and_grads(batch)
  cut_loss, cut_grads = loss_and_grads(cut)
  assert float(full_loss) != 0.0
  np.testing.assert_allclose(float(cut_loss), float(full_loss), rtol=1e-5)
  jax.tree.map(lambda a, c: np.testing.assert_allclose(c, a, rtol=1e-4, atol=1e-6),
               full_grads, cut_grads)
  same, width = experience_lib.cut_completions(batch, np.full(b * g, l), widths)
  assert width == l and same is batch
