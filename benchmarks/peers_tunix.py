"""Tunix's side of benchmarks/peers.py (run with .venv-tunix/bin/python; see that file).

google-tunix's Qwen2 (loaded from the safetensors peers.py wrote), its vanilla rollout
engine and GRPOLearner, actor / reference / rollout colocated on one mesh. Phase times
come from wrapping the cluster's own calls: `generate` (sampling) and
`get_ref_per_token_logps` (reference, waited on). A step is the time from one
`generate` call to the next (the last one ends when `train` returns);
update = step - sample - reference. The sampler is given an EOS id outside the
vocabulary, so every completion runs to max_tokens_to_generate.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--files", required=True)
  ap.add_argument("--B", type=int, default=8)
  ap.add_argument("--G", type=int, default=8)
  ap.add_argument("--steps", type=int, default=6)
  ap.add_argument("--out", required=True)
  args = ap.parse_args()
  with open(args.files) as f:
    files = json.load(f)
  import importlib.metadata
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx
  from transformers import PreTrainedTokenizerFast
  from tunix.models.qwen2 import model as qwen2_lib
  from tunix.models.qwen2 import params as qwen2_params
  from tunix.rl import rl_cluster as rl_cluster_lib
  from tunix.rl.grpo import grpo_learner
  from tunix.rl.rollout import base_rollout

  with open(f"{files['ckpt']}/config.json") as f:
    hf = json.load(f)
  cfg = qwen2_lib.ModelConfig(
      num_layers=hf["num_hidden_layers"], vocab_size=hf["vocab_size"],
      embed_dim=hf["hidden_size"], hidden_dim=hf["intermediate_size"],
      num_heads=hf["num_attention_heads"], head_dim=hf.get("head_dim") or
      hf["hidden_size"] // hf["num_attention_heads"], num_kv_heads=hf["num_key_value_heads"],
      rope_theta=int(hf["rope_theta"]), norm_eps=hf["rms_norm_eps"],
      use_tied_embedding=hf["tie_word_embeddings"])
  mesh = jax.make_mesh((1, 1), ("fsdp", "tp"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
  with mesh:
    actor = qwen2_params.create_model_from_safe_tensors(files["ckpt"], cfg, mesh)
    ref = qwen2_params.create_model_from_safe_tensors(files["ckpt"], cfg, mesh)

  ids = np.load(files["logit_ids"])
  t = ids.shape[1]
  pos = jnp.broadcast_to(jnp.arange(t), ids.shape)
  causal = jnp.broadcast_to(jnp.tril(jnp.ones((t, t), bool)), (ids.shape[0], t, t))
  with jax.set_mesh(mesh):
    logits, _ = ref(jnp.asarray(ids), pos, None, causal)
  np.save(args.out + ".logits.npy", np.asarray(logits, np.float32))

  tok = PreTrainedTokenizerFast.from_pretrained(files["ckpt"])
  encode = tok.encode
  # Tunix hands the tokenizer numpy string scalars, which transformers 5 rejects.
  tok.encode = lambda text, *a, **k: encode(text if type(text) is str else str(text), *a, **k)
  with open(files["prompts"]) as f:
    qs = [json.loads(line)["question"] + "\n" for line in f]
  # As a grain batch of a dataset of {"prompts": str} records: a [B] string array.
  batches = [{"prompts": np.array([qs[(s * args.B + i) % len(qs)] for i in range(args.B)])}
             for s in range(args.steps)]

  def reward(prompts, completions, **kw):
    return [float("</answer>" in c) for c in completions]

  rows = args.B * args.G
  with tempfile.TemporaryDirectory() as tmp:
    cluster_cfg = rl_cluster_lib.ClusterConfig(
        role_to_mesh={rl_cluster_lib.Role.ACTOR: mesh, rl_cluster_lib.Role.REFERENCE: mesh,
                      rl_cluster_lib.Role.ROLLOUT: mesh},
        rollout_engine="vanilla", offload_to_cpu=False,
        training_config=rl_cluster_lib.RLTrainingConfig(
            actor_optimizer=optax.chain(optax.clip_by_global_norm(1.0),
                                        optax.adamw(1e-5, weight_decay=0.0)),
            eval_every_n_steps=10 ** 6, max_steps=args.steps, checkpoint_root_directory=None,
            metrics_logging_options=None),
        rollout_config=base_rollout.RolloutConfig(
            max_tokens_to_generate=64, max_prompt_length=16, kv_cache_size=16 + 64 + 16,
            temperature=1.0, top_p=1.0, top_k=None, eos_tokens=[hf["vocab_size"] + 7]))
    cluster = rl_cluster_lib.RLCluster(actor=actor, reference=ref, tokenizer=tok,
                                       cluster_config=cluster_cfg)
    learner = grpo_learner.GRPOLearner(
        rl_cluster=cluster, reward_fns=reward,
        algo_config=grpo_learner.GRPOConfig(num_generations=args.G, num_iterations=1, beta=0.04,
                                            epsilon=0.2))
    marks, sample, reference, lens = [], [], [], []
    gen, refl = cluster.generate, cluster.get_ref_per_token_logps

    def timed_gen(*a, **k):
      t0 = time.perf_counter()
      marks.append(t0)
      out = gen(*a, **k)
      sample.append(time.perf_counter() - t0)
      lens.extend(len(x) for x in out.tokens)
      return out

    def timed_ref(*a, **k):
      t0 = time.perf_counter()
      out = jax.block_until_ready(refl(*a, **k))
      reference.append(time.perf_counter() - t0)
      return out
    cluster.generate, cluster.get_ref_per_token_logps = timed_gen, timed_ref
    learner.train(batches)
    marks.append(time.perf_counter())
  n = len(sample)
  step = [marks[i + 1] - marks[i] for i in range(n)]
  res = {"step": step, "sample": sample, "reference": reference[:n],
         "update": [s - a - r for s, a, r in zip(step, sample, reference)],
         "tokens": [float(sum(lens[i * rows:(i + 1) * rows])) for i in range(n)],
         "min_len": min(lens), "max_len": max(lens),
         "version": f"Tunix {importlib.metadata.version('google-tunix')} (jax {jax.__version__})"}
  with open(args.out, "w") as f:
    json.dump(res, f)


if __name__ == "__main__":
  main()
