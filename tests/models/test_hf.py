"""Hugging Face checkpoint I/O: tiny random checkpoints written here, in HF names and layouts.

The reference forward below is written directly in the HF layout ([out, in]
weights, `x @ W.T + b`, rotate-half RoPE, repeat_kv GQA), independently of the
model code, so a transposed or mis-reshaped tensor shows up as wrong logits.
"""
import json
import math
import os

import jax
import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from r1jax import sharding
from r1jax.models import abstract_model, create_model, param_shardings, split_params
from r1jax.models.config import PRESETS, RopeScaling
from r1jax.models import hf as hf_module
from r1jax.models.hf import (CheckpointError, config_from_hf, config_to_hf, copy_tokenizer_files,
                             load_pretrained, save_pretrained)

BF16 = np.dtype(ml_dtypes.bfloat16)
_BASE = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, hidden_act="silu",
             max_position_embeddings=4096, rms_norm_eps=1e-6, torch_dtype="float32")
HF_CONFIGS = {
    # Qwen2: q/k/v biases, tied embeddings, head_dim implied (hidden / heads).
    "qwen2": dict(_BASE, architectures=["Qwen2ForCausalLM"], model_type="qwen2",
                  rope_theta=1_000_000.0, tie_word_embeddings=True, use_sliding_window=False,
                  sliding_window=4096, rope_scaling=None),
    # Llama 3: untied, llama3 RoPE scaling (all three frequency regimes at head_dim 8).
    "llama": dict(_BASE, architectures=["LlamaForCausalLM"], model_type="llama", head_dim=8,
                  rope_theta=500_000.0, tie_word_embeddings=False, attention_bias=False,
                  mlp_bias=False, rms_norm_eps=1e-5,
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 16}),
    # Qwen3: q/k norm, head_dim (16) != hidden / heads (8), tied.
    "qwen3": dict(_BASE, architectures=["Qwen3ForCausalLM"], model_type="qwen3", head_dim=16,
                  rope_theta=1_000_000.0, tie_word_embeddings=True, attention_bias=False),
}
FAMILIES = sorted(HF_CONFIGS)


def _dims(c):
  h = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
  return (c["hidden_size"], c["intermediate_size"], c["num_attention_heads"],
          c["num_key_value_heads"], h, c["vocab_size"])


def make_hf_tensors(c, seed=0, dtype=np.float32):
  """Random tensors with HF names and [out, in] layouts."""
  rng = np.random.default_rng(seed)
  d, f, n, k, h, v = _dims(c)
  w = lambda *s: (rng.standard_normal(s) * 0.2).astype(dtype)  # noqa: E731
  norm = lambda s: (1.0 + 0.2 * rng.standard_normal(s)).astype(dtype)  # noqa: E731
  t = {"model.embed_tokens.weight": w(v, d), "model.norm.weight": norm(d)}
  for i in range(c["num_hidden_layers"]):
    p = f"model.layers.{i}."
    t.update({p + "self_attn.q_proj.weight": w(n * h, d),
              p + "self_attn.k_proj.weight": w(k * h, d),
              p + "self_attn.v_proj.weight": w(k * h, d),
              p + "self_attn.o_proj.weight": w(d, n * h),
              p + "mlp.gate_proj.weight": w(f, d), p + "mlp.up_proj.weight": w(f, d),
              p + "mlp.down_proj.weight": w(d, f), p + "input_layernorm.weight": norm(d),
              p + "post_attention_layernorm.weight": norm(d)})
    if c["model_type"] == "qwen2":
      t.update({p + "self_attn.q_proj.bias": w(n * h), p + "self_attn.k_proj.bias": w(k * h),
                p + "self_attn.v_proj.bias": w(k * h)})
    if c["model_type"] == "qwen3":
      t.update({p + "self_attn.q_norm.weight": norm(h), p + "self_attn.k_norm.weight": norm(h)})
  if not c["tie_word_embeddings"]:
    t["lm_head.weight"] = w(v, d)
  return t


def write_hf_checkpoint(path, c, tensors, num_files=1):
  """config.json + safetensors written with the `safetensors` library (not our writer)."""
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "config.json"), "w") as fh:
    json.dump(c, fh)
  names = list(tensors)
  if num_files == 1:
    save_file(tensors, os.path.join(path, "model.safetensors"))
    return
  weight_map = {}
  for j, chunk in enumerate(np.array_split(np.arange(len(names)), num_files)):
    fname = f"model-{j + 1:05d}-of-{num_files:05d}.safetensors"
    save_file({names[i]: tensors[names[i]] for i in chunk}, os.path.join(path, fname))
    weight_map.update({names[i]: fname for i in chunk})
  with open(os.path.join(path, "model.safetensors.index.json"), "w") as fh:
    json.dump({"metadata": {"total_size": sum(x.nbytes for x in tensors.values())},
               "weight_map": weight_map}, fh)


def reference_logits(c, t, tokens, positions):
  """The HF forward in numpy, float64, straight from HF-layout tensors."""
  d, _, n, k, h, _ = _dims(c)
  g = {name: np.asarray(x, np.float64) for name, x in t.items()}
  eps = c["rms_norm_eps"]

  def rms(x, wt):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * wt

  inv = 1.0 / c["rope_theta"] ** (np.arange(0, h, 2) / h)
  rs = c.get("rope_scaling")
  if rs:  # transformers' _compute_llama3_parameters
    old, lo, hi, fac = (rs["original_max_position_embeddings"], rs["low_freq_factor"],
                        rs["high_freq_factor"], rs["factor"])
    wl = 2 * math.pi / inv
    scaled = np.where(wl > old / lo, inv / fac, inv)
    smooth = (old / wl - lo) / (hi - lo)
    medium = ~(wl < old / hi) & ~(wl > old / lo)
    inv = np.where(medium, (1 - smooth) * scaled / fac + smooth * scaled, scaled)
  emb = np.concatenate([positions[..., None] * inv] * 2, axis=-1)[:, :, None, :]  # [B,T,1,H]
  cos, sin = np.cos(emb), np.sin(emb)

  def rope(x):
    rot = np.concatenate([-x[..., h // 2:], x[..., :h // 2]], axis=-1)  # rotate_half
    return x * cos + rot * sin

  b, s = tokens.shape
  x = g["model.embed_tokens.weight"][tokens]
  causal = np.tril(np.ones((s, s), bool))
  for i in range(c["num_hidden_layers"]):
    p = f"model.layers.{i}."
    lin = lambda z, name: z @ g[p + name + ".weight"].T + g.get(p + name + ".bias", 0.0)  # noqa
    y = rms(x, g[p + "input_layernorm.weight"])
    q = lin(y, "self_attn.q_proj").reshape(b, s, n, h)
    kk = lin(y, "self_attn.k_proj").reshape(b, s, k, h)
    vv = lin(y, "self_attn.v_proj").reshape(b, s, k, h)
    if c["model_type"] == "qwen3":
      q, kk = rms(q, g[p + "self_attn.q_norm.weight"]), rms(kk, g[p + "self_attn.k_norm.weight"])
    q, kk = rope(q), rope(kk)
    kk, vv = np.repeat(kk, n // k, axis=2), np.repeat(vv, n // k, axis=2)  # repeat_kv
    sc = np.einsum("bqnh,bknh->bnqk", q, kk) / math.sqrt(h)
    sc = np.where(causal, sc, -np.inf)
    pr = np.exp(sc - sc.max(-1, keepdims=True))
    pr /= pr.sum(-1, keepdims=True)
    att = np.einsum("bnqk,bknh->bqnh", pr, vv).reshape(b, s, n * h)
    x = x + lin(att, "self_attn.o_proj")
    y = rms(x, g[p + "post_attention_layernorm.weight"])
    gate = lin(y, "mlp.gate_proj")
    x = x + lin(gate / (1 + np.exp(-gate)) * lin(y, "mlp.up_proj"), "mlp.down_proj")
  x = rms(x, g["model.norm.weight"])
  head = g["model.embed_tokens.weight"] if c["tie_word_embeddings"] else g["lm_head.weight"]
  return x @ head.T


def _inputs(c, b=2, s=9, offset=500):
  tokens = np.random.default_rng(1).integers(0, c["vocab_size"], (b, s))
  # Large positions so every RoPE frequency (and the llama3 smoothing) matters.
  positions = np.arange(s)[None, :] + offset + np.arange(b)[:, None] * 37
  return tokens, positions


def _logits(model, tokens, positions):
  logits, _ = model(jax.numpy.asarray(tokens), jax.numpy.asarray(positions))
  return np.asarray(logits)


@pytest.fixture
def ckpt(tmp_path):
  def make(family, dtype=np.float32, num_files=1, **cfg_updates):
    c = dict(HF_CONFIGS[family], **cfg_updates)
    if dtype == BF16:
      c["torch_dtype"] = "bfloat16"
    t = make_hf_tensors(c, dtype=dtype)
    path = str(tmp_path / f"{family}-{np.dtype(dtype).name}-{num_files}")
    write_hf_checkpoint(path, c, t, num_files)
    return path, c, t
  return make


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("family", FAMILIES)
def test_config_from_hf_and_back(family):
  c = HF_CONFIGS[family]
  cfg = config_from_hf(c)
  d, f, n, k, h, v = _dims(c)
  assert (cfg.family, cfg.embed_dim, cfg.mlp_dim, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
          cfg.vocab_size) == (family, d, f, n, k, h, v)
  assert cfg.qkv_bias == (family == "qwen2") and cfg.qk_norm == (family == "qwen3")
  assert cfg.tie_embeddings == c["tie_word_embeddings"]
  assert cfg.rope_theta == c["rope_theta"] and cfg.rms_norm_eps == c["rms_norm_eps"]
  if family == "llama":
    assert cfg.rope_scaling == RopeScaling(8.0, 1.0, 4.0, 16)
  else:
    assert cfg.rope_scaling is None
  assert config_from_hf(config_to_hf(cfg)) == cfg
  assert config_from_hf(c, remat=True, dtype="bfloat16").remat
  assert config_from_hf(dict(c, torch_dtype="bfloat16")).param_dtype == "bfloat16"


def test_config_to_hf_dtype_keys_and_unexpressible_configs(tmp_path):
  cfg = config_from_hf(HF_CONFIGS["qwen2"])
  out = config_to_hf(cfg)
  assert out["dtype"] == out["torch_dtype"] == "float32" and "head_dim" not in out
  assert config_to_hf(cfg, torch_dtype="bfloat16")["dtype"] == "bfloat16"
  assert config_to_hf(cfg, dtype="bfloat16")["torch_dtype"] == "bfloat16"
  assert config_from_hf({k: v for k, v in dict(out, dtype="bfloat16").items()
                         if k != "torch_dtype"}).param_dtype == "bfloat16"
  # HF's Qwen2 ignores head_dim: a qwen2 whose head_dim isn't hidden/heads is refused.
  bad = cfg.replace(head_dim=16)
  with pytest.raises(ValueError, match="Qwen2 ignores head_dim"):
    config_to_hf(bad)
  with pytest.raises(ValueError, match="Qwen2 ignores head_dim"):
    save_pretrained(create_model(bad, 0), str(tmp_path / "x"))
  assert not (tmp_path / "x").exists()
  assert config_to_hf(config_from_hf(HF_CONFIGS["qwen3"]))["head_dim"] == 16


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_hf_config(name):
  assert config_from_hf(config_to_hf(PRESETS[name])) == PRESETS[name]


def test_published_config_json_matches_presets():
  # Key fields of the published config.json files (bf16 checkpoints).
  qwen = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896,
          "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
          "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768,
          "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "tie_word_embeddings": True,
          "torch_dtype": "bfloat16", "use_sliding_window": False, "sliding_window": 32768,
          "max_window_layers": 21, "hidden_act": "silu", "bos_token_id": 151643}
  llama = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
           "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
           "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256,
           "max_position_embeddings": 131072, "rope_theta": 500000.0, "rms_norm_eps": 1e-05,
           "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                            "original_max_position_embeddings": 8192, "rope_type": "llama3"},
           "tie_word_embeddings": True, "attention_bias": False, "mlp_bias": False,
           "torch_dtype": "bfloat16"}
  qwen3 = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 1024,
           "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16,
           "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
           "max_position_embeddings": 40960, "rope_theta": 1000000, "rms_norm_eps": 1e-06,
           "rope_scaling": None, "tie_word_embeddings": True, "attention_bias": False,
           "torch_dtype": "bfloat16"}
  for hf, name in ((qwen, "qwen2.5-0.5b"), (llama, "llama3.2-1b"), (qwen3, "qwen3-0.6b")):
    assert config_from_hf(hf, param_dtype="float32", dtype="float32") == PRESETS[name], name


def test_config_errors():
  with pytest.raises(ValueError, match="MistralForCausalLM"):
    config_from_hf(dict(HF_CONFIGS["llama"], architectures=["MistralForCausalLM"]))
  with pytest.raises(ValueError, match="yarn"):
    config_from_hf(dict(HF_CONFIGS["qwen2"], rope_scaling={"type": "yarn", "factor": 4.0}))
  with pytest.raises(ValueError, match="attention_bias"):
    config_from_hf(dict(HF_CONFIGS["llama"], attention_bias=True))
  with pytest.raises(ValueError, match="hidden_size"):
    config_from_hf({k: v for k, v in HF_CONFIGS["qwen3"].items() if k != "hidden_size"})
  # transformers v5 style rope_parameters, model_type without architectures.
  c = {k: v for k, v in HF_CONFIGS["qwen2"].items() if k not in ("architectures", "rope_theta")}
  assert config_from_hf(dict(c, rope_parameters={"rope_type": "default",
                                                 "rope_theta": 1234.0})).rope_theta == 1234.0


# ----------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_hf_layout_reference(ckpt, family):
  path, c, t = ckpt(family)
  model = load_pretrained(path)
  tokens, positions = _inputs(c)
  np.testing.assert_allclose(_logits(model, tokens, positions),
                             reference_logits(c, t, tokens, positions), rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_mesh_load_shardings_and_forward(ckpt, family):
  path, c, _ = ckpt(family, num_files=2)
  mesh, rules = sharding.make_mesh((2, 2, 2)), sharding.ShardingRules()
  model = load_pretrained(path, mesh, rules)
  expected = param_shardings(abstract_model(model.cfg, mesh, rules), mesh, rules)
  _, params = split_params(model)
  specs = jax.tree.leaves(jax.tree.map(lambda s: s.spec, expected))
  got = jax.tree.leaves(jax.tree.map(lambda a: a.sharding.spec, params))
  assert got == specs and any(s != jax.sharding.PartitionSpec() for s in specs)
  assert model.mesh is mesh and model.rules == rules
  tokens, positions = _inputs(c)
  np.testing.assert_allclose(_logits(model, tokens, positions),
                             _logits(load_pretrained(path), tokens, positions),
                             rtol=1e-5, atol=1e-5)


def test_each_device_reads_only_its_shard(ckpt, monkeypatch):
  """The loader hands every device just its slice (never the whole tensor when sharded)."""
  path, _, _ = ckpt("llama")
  seen, original = [], jax.make_array_from_callback

  def spy(shape, sharding_, callback, *args, **kw):
    def wrapped(index):
      out = callback(index)
      seen.append((shape, sharding_.shard_shape(shape), out.shape))
      return out
    return original(shape, sharding_, wrapped, *args, **kw)

  monkeypatch.setattr(jax, "make_array_from_callback", spy)
  load_pretrained(path, sharding.make_mesh((2, 2, 2)))
  assert seen and all(got == shard for _, shard, got in seen)
  assert any(math.prod(shard) * 4 == math.prod(full) for full, shard, _ in seen)  # q_proj etc.


# ----------------------------------------------------------------------------- round trip


def _assert_same_tensors(a, b):
  assert sorted(a) == sorted(b)
  for name in a:
    assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
    assert a[name].tobytes() == b[name].tobytes(), name


@pytest.mark.parametrize("family,dtype", [(f, np.float32) for f in FAMILIES] + [("llama", BF16),
                                                                                ("qwen3", BF16)])
def test_round_trip_is_bitwise_exact(ckpt, tmp_path, family, dtype):
  path, c, t = ckpt(family, dtype)
  model = load_pretrained(path)
  assert model.embedding[...].dtype == dtype  # torch_dtype decides the default
  out = str(tmp_path / "export")
  files = save_pretrained(model, out, eos_token_id=7)
  assert [os.path.basename(f) for f in files] == ["model.safetensors"]
  _assert_same_tensors(load_file(files[0]), t)  # the reference library reads our files
  with open(os.path.join(out, "config.json")) as fh:
    exported = json.load(fh)
  assert config_from_hf(exported) == model.cfg and exported["eos_token_id"] == 7
  assert exported["torch_dtype"] == np.dtype(dtype).name
  # Load -> save again gives byte-identical files.
  again = str(tmp_path / "again")
  save_pretrained(load_pretrained(out), again, eos_token_id=7)
  for name in ("model.safetensors", "config.json", "generation_config.json"):
    with open(os.path.join(out, name), "rb") as f1, open(os.path.join(again, name), "rb") as f2:
      assert f1.read() == f2.read(), name


def test_sharded_save_from_mesh_and_index(ckpt, tmp_path, monkeypatch):
  monkeypatch.setattr(hf_module, "_WRITE_BLOCK", 100)  # many row blocks per tensor
  path, c, t = ckpt("llama")
  model = load_pretrained(path, sharding.make_mesh((2, 2, 2)))
  out = str(tmp_path / "sharded")
  files = save_pretrained(model, out, max_shard_size_bytes=20_000)
  assert len(files) > 2 and not os.path.exists(os.path.join(out, "model.safetensors"))
  with open(os.path.join(out, "model.safetensors.index.json")) as fh:
    index = json.load(fh)
  assert index["metadata"]["total_size"] == sum(x.nbytes for x in t.values())
  assert set(index["weight_map"]) == set(t)
  assert {os.path.join(out, f) for f in index["weight_map"].values()} == set(files)
  loaded = {}
  for f in files:
    assert os.path.getsize(f) <= 20_000 + 4096 or len(load_file(f)) == 1  # header slack
    loaded.update(load_file(f))
  _assert_same_tensors(loaded, t)
  # The sharded export loads back (tensor by tensor across files) identically.
  _assert_same_tensors(load_file(save_pretrained(load_pretrained(out), str(tmp_path / "one"))[0]),
                       t)
  # Re-saving unsharded into the same directory removes the stale shards.
  save_pretrained(load_pretrained(out), out)
  assert sorted(f for f in os.listdir(out) if "safetensors" in f) == ["model.safetensors"]


def test_save_params_dict_with_cast(ckpt, tmp_path):
  path, c, t = ckpt("qwen2")
  model = load_pretrained(path)
  _, params = split_params(model)
  params = dict(params, layers={str(i): v for i, v in params["layers"].items()})  # as restored
  out = str(tmp_path / "bf16")
  with pytest.raises(ValueError, match="cfg"):
    save_pretrained(params, out)
  save_pretrained(params, out, cfg=model.cfg, dtype="bfloat16")
  got = load_file(os.path.join(out, "model.safetensors"))
  _assert_same_tensors(got, {k: v.astype(BF16) for k, v in t.items()})
  assert load_pretrained(out).embedding[...].dtype == BF16
  assert load_pretrained(out, dtype="float32").embedding[...].dtype == np.float32
  m = load_pretrained(out, param_dtype="bfloat16", compute_dtype="float32")
  assert (m.cfg.param_dtype, m.cfg.dtype) == ("bfloat16", "float32")


def test_tied_lm_head_and_harmless_extras(ckpt, tmp_path):
  c = HF_CONFIGS["qwen2"]
  t = make_hf_tensors(c)
  extras = {"lm_head.weight": t["model.embed_tokens.weight"].copy(),
            "model.layers.0.self_attn.rotary_emb.inv_freq": np.ones(4, np.float32)}
  path = str(tmp_path / "tied")
  write_hf_checkpoint(path, c, {**t, **extras})
  tokens, positions = _inputs(c)
  np.testing.assert_allclose(_logits(load_pretrained(path), tokens, positions),
                             reference_logits(c, t, tokens, positions), rtol=2e-4, atol=2e-4)
  extras["lm_head.weight"][3, 1] += 1.0
  write_hf_checkpoint(path, c, {**t, **extras})
  with pytest.raises(CheckpointError, match="lm_head.weight"):
    load_pretrained(path)


# ----------------------------------------------------------------------------- errors


def test_error_messages_name_the_tensor(tmp_path):
  c = HF_CONFIGS["qwen3"]
  t = make_hf_tensors(c)

  def attempt(name, tensors, config=c, num_files=1):
    path = str(tmp_path / name)
    write_hf_checkpoint(path, config, tensors, num_files)
    return path

  missing = "model.layers.1.self_attn.k_norm.weight"
  path = attempt("missing", {k: v for k, v in t.items() if k != missing}, num_files=2)
  with pytest.raises(CheckpointError, match=missing.replace(".", r"\.")):
    load_pretrained(path)
  extra = "model.layers.0.self_attn.o_proj.bias"
  path = attempt("extra", {**t, extra: np.zeros(32, np.float32)})
  with pytest.raises(CheckpointError, match=r"o_proj\.bias.*model\.safetensors"):
    load_pretrained(path)
  bad = "model.layers.1.mlp.down_proj.weight"
  path = attempt("shape", {**t, bad: t[bad].T.copy()}, num_files=3)
  with pytest.raises(CheckpointError,
                     match=r"down_proj\.weight.*model-0000\d-of-00003.*\(64, 32\)"):
    load_pretrained(path)
  path = attempt("arch", t, dict(c, architectures=["GemmaForCausalLM"]))
  with pytest.raises(ValueError, match="GemmaForCausalLM"):
    load_pretrained(path)
  with pytest.raises(FileNotFoundError):
    load_pretrained(str(tmp_path / "nowhere"))


def test_copy_tokenizer_files(tmp_path):
  src, dst = tmp_path / "src", tmp_path / "dst"
  src.mkdir()
  for name in ("tokenizer.json", "tokenizer_config.json", "sp.model", "notes.txt"):
    (src / name).write_text(name)
  assert sorted(copy_tokenizer_files(str(src), str(dst))) == sorted(
      ["tokenizer.json", "tokenizer_config.json", "sp.model"])
  assert (dst / "sp.model").read_text() == "sp.model" and not (dst / "notes.txt").exists()


# ----------------------------------------------------------------------------- transformers


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_transformers(ckpt, family):
  torch = pytest.importorskip("torch", reason="torch not installed (optional cross-check)")
  transformers = pytest.importorskip("transformers",
                                     reason="transformers not installed (optional cross-check)")
  path, c, _ = ckpt(family)
  hf_model = transformers.AutoModelForCausalLM.from_pretrained(
      path, torch_dtype=torch.float32, attn_implementation="eager").eval()
  tokens, positions = _inputs(c)
  with torch.no_grad():
    ref = hf_model(input_ids=torch.tensor(tokens), position_ids=torch.tensor(positions)).logits
  np.testing.assert_allclose(_logits(load_pretrained(path), tokens, positions), ref.numpy(),
                             rtol=2e-4, atol=2e-4)
