"""Hugging Face checkpoints in and out: config.json + (sharded) safetensors.

Loading never builds the whole model on one host buffer or one device: each HF
tensor is memory-mapped from its file, its layout is converted with numpy
*views* (transpose + reshape, no copy), and `jax.make_array_from_callback` asks
for one shard at a time, so only the slices a device owns are ever read and
cast. Peak host memory is about one shard of one tensor (plus the page cache).

Saving (`hf_write.py`) goes tensor by tensor: the safetensors header of every output file is
known from shapes and dtypes alone, so each tensor is gathered, converted to
the HF layout, streamed to disk and dropped before the next one.

Paths go through `etils.epath`, so a `gs://` directory works for both: local
files are memory-mapped, remote ones are read tensor by tensor.

Layouts (ours -> HF, see `r1jax.models.transformer`):
  q_proj [D,N,H] -> q_proj.weight [N*H, D]     o_proj [N,H,D] -> o_proj.weight [D, N*H]
  q_bias [N,H]   -> q_proj.bias [N*H]          gate/up [D,F]  -> weight [F, D]
  down [F,D]     -> down_proj.weight [D, F]    lm_head [D,V]  -> lm_head.weight [V, D]
RoPE uses the HF "rotate half" convention, so q/k need no permutation.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Mapping

import jax
import ml_dtypes
import numpy as np
from etils import epath
from flax import nnx
from jax.sharding import Mesh, SingleDeviceSharding

from r1jax.models.config import ModelConfig, RopeScaling
from r1jax.models.factory import abstract_model, param_shardings
from r1jax.models.transformer import Transformer
from r1jax.sharding import ShardingRules
from r1jax.tokenizer import TOKENIZER_FILES, copy_tokenizer_files  # noqa: F401 (re-exported)

_ARCH_TO_FAMILY = {"Qwen2ForCausalLM": "qwen2", "LlamaForCausalLM": "llama",
                   "Qwen3ForCausalLM": "qwen3"}
_FAMILY_TO_ARCH = {v: k for k, v in _ARCH_TO_FAMILY.items()}
_ST_DTYPES = {"F64": np.dtype(np.float64), "F32": np.dtype(np.float32),
              "F16": np.dtype(np.float16), "BF16": np.dtype(ml_dtypes.bfloat16)}
_ST_NAMES = {v: k for k, v in _ST_DTYPES.items()}
# Buffers some exporters write that carry no learned state.
_HARMLESS = re.compile(r"(^|\.)rotary_emb\.inv_freq$")
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_WRITE_BLOCK = 1 << 24  # bytes converted per write
DEFAULT_MAX_SHARD_BYTES = 5 * 2**30  # transformers' default for save_pretrained


class CheckpointError(ValueError):
  """A checkpoint that does not match the model (names the tensor and the file)."""


# ----------------------------------------------------------------------------- config


def _torch_dtype_name(hf: Mapping[str, Any]) -> str | None:
  name = hf.get("torch_dtype", hf.get("dtype"))  # transformers v5 renamed it "dtype"
  if isinstance(name, str):
    name = name.removeprefix("torch.")
    if name in ("float32", "bfloat16", "float16"):
      return name
  return None


def config_from_hf(hf_config: Mapping[str, Any], **overrides: Any) -> ModelConfig:
  """`ModelConfig` from a Hugging Face config.json dict, then field `overrides`."""
  hf = dict(hf_config)
  archs = hf.get("architectures") or []
  arch = archs[0] if archs else None
  if arch is not None:
    if arch not in _ARCH_TO_FAMILY:
      raise ValueError(f"Unsupported architecture {arch!r}; supported: {sorted(_ARCH_TO_FAMILY)}")
    family = _ARCH_TO_FAMILY[arch]
  elif hf.get("model_type") in _FAMILY_TO_ARCH:
    family = hf["model_type"]
  else:
    raise ValueError(f"Unsupported model_type {hf.get('model_type')!r} (no architectures "
                     f"given); supported: {sorted(_FAMILY_TO_ARCH)}")

  def req(key):
    if key not in hf:
      raise ValueError(f"{arch or family} config lacks required key {key!r}")
    return hf[key]

  hidden, heads = int(req("hidden_size")), int(req("num_attention_heads"))
  if hf.get("hidden_act", "silu") != "silu":
    raise ValueError(f"hidden_act={hf['hidden_act']!r} is not supported (only 'silu')")
  if hf.get("mlp_bias"):
    raise ValueError("mlp_bias=True is not supported")
  if hf.get("use_sliding_window"):
    raise ValueError("use_sliding_window=True is not supported (full attention only)")
  if family == "qwen2":
    qkv_bias = True  # HF Qwen2 always has q/k/v biases (and no o_proj bias)
  elif hf.get("attention_bias"):
    # Llama/Qwen3 `attention_bias` also adds an o_proj bias, which the model lacks.
    raise ValueError(f"attention_bias=True ({arch or family}: q/k/v *and* o_proj biases) "
                     "is not supported")
  else:
    qkv_bias = False

  # Legacy top-level keys, or transformers v5 "rope_parameters".
  rope = hf.get("rope_parameters") or {}
  rope_theta = float(rope.get("rope_theta", hf.get("rope_theta", 10_000.0)))
  scaling_dict = hf.get("rope_scaling") or (rope if rope.get("rope_type") else None)
  scaling = None
  if scaling_dict:
    kind = scaling_dict.get("rope_type", scaling_dict.get("type"))
    if kind == "llama3":
      fields = {f.name for f in dataclasses.fields(RopeScaling)}
      scaling = RopeScaling(**{k: (int(v) if k == "original_max_position_embeddings" else float(v))
                               for k, v in scaling_dict.items() if k in fields})
    elif kind not in (None, "default"):
      raise ValueError(f"rope_scaling type {kind!r} is not supported (only 'llama3')")

  dtype = _torch_dtype_name(hf) or "float32"
  cfg = ModelConfig(
      family=family, vocab_size=int(req("vocab_size")), embed_dim=hidden,
      mlp_dim=int(req("intermediate_size")), num_layers=int(req("num_hidden_layers")),
      num_heads=heads, num_kv_heads=int(hf.get("num_key_value_heads") or heads),
      head_dim=int(hf.get("head_dim") or hidden // heads), rope_theta=rope_theta,
      rope_scaling=scaling, rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)), qkv_bias=qkv_bias,
      qk_norm=family == "qwen3", tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
      max_position_embeddings=int(hf.get("max_position_embeddings",
                                         2048 if family == "llama" else 32_768)),
      param_dtype=dtype, dtype=dtype)
  return cfg.replace(**overrides) if overrides else cfg


def check_exportable(cfg: ModelConfig) -> None:
  """Raises ValueError for a `cfg` that its Hugging Face family cannot express exactly."""
  if cfg.qkv_bias != (cfg.family == "qwen2") or cfg.qk_norm != (cfg.family == "qwen3"):
    raise ValueError(f"family={cfg.family!r} with qkv_bias={cfg.qkv_bias}, "
                     f"qk_norm={cfg.qk_norm} has no Hugging Face equivalent")
  if cfg.family == "qwen2" and cfg.head_dim * cfg.num_heads != cfg.embed_dim:
    # transformers' Qwen2 (and vLLM's) compute head_dim = hidden_size // num_attention_heads
    # and ignore a head_dim key: such a model would load without error and compute garbage.
    raise ValueError(f"A qwen2 model with head_dim={cfg.head_dim} != embed_dim / num_heads = "
                     f"{cfg.embed_dim}/{cfg.num_heads} cannot be exported: Hugging Face's Qwen2 "
                     "ignores head_dim. Use family='qwen3' (with qk_norm) or 'llama' "
                     "architectures for a free head_dim, or change the dimensions.")


def config_to_hf(cfg: ModelConfig, **extra: Any) -> dict[str, Any]:
  """config.json dict for `cfg` (the fields transformers and vLLM read); `extra` keys win.

  The dtype is written both as `dtype` (transformers >= 4.56 / v5) and as the deprecated
  `torch_dtype` (older transformers, vLLM versions that read only it); `extra` may set
  either and both follow.
  """
  check_exportable(cfg)
  out: dict[str, Any] = {
      "architectures": [_FAMILY_TO_ARCH[cfg.family]], "model_type": cfg.family,
      "vocab_size": cfg.vocab_size, "hidden_size": cfg.embed_dim,
      "intermediate_size": cfg.mlp_dim, "num_hidden_layers": cfg.num_layers,
      "num_attention_heads": cfg.num_heads, "num_key_value_heads": cfg.num_kv_heads,
      "head_dim": cfg.head_dim, "hidden_act": "silu",
      "max_position_embeddings": cfg.max_position_embeddings, "rms_norm_eps": cfg.rms_norm_eps,
      "rope_theta": cfg.rope_theta, "rope_scaling": None,
      "tie_word_embeddings": cfg.tie_embeddings, "dtype": cfg.param_dtype,
      "torch_dtype": cfg.param_dtype,
      "use_cache": True, "attention_dropout": 0.0, "initializer_range": 0.02,
  }
  if cfg.family == "qwen2":
    del out["head_dim"]  # checked equal to hidden/heads above; Qwen2's config has no such key
  if cfg.rope_scaling is not None:
    out["rope_scaling"] = {"rope_type": "llama3", **dataclasses.asdict(cfg.rope_scaling)}
  if cfg.family in ("llama", "qwen3"):
    out["attention_bias"] = False
  if cfg.family == "llama":
    out.update(mlp_bias=False, pretraining_tp=1)
  else:
    out.update(use_sliding_window=False, sliding_window=None, max_window_layers=cfg.num_layers)
  dtype = extra.pop("dtype", None) or extra.pop("torch_dtype", None)
  extra.pop("torch_dtype", None)
  if dtype is not None:
    out["dtype"] = out["torch_dtype"] = str(dtype)
  out.update(extra)
  return out


# ----------------------------------------------------------------------------- names


@dataclasses.dataclass(frozen=True)
class _Spec:
  """One parameter: where it lives in our params dict and its HF name/shape."""
  path: tuple[Any, ...]
  hf_name: str
  hf_shape: tuple[int, ...]
  shape: tuple[int, ...]
  transpose: bool  # ours = hf.T.reshape(shape); hf = ours.reshape(hf_shape[::-1]).T

  def to_ours(self, hf: np.ndarray) -> np.ndarray:
    return (hf.T if self.transpose else hf).reshape(self.shape)  # a view for every spec here

  def to_hf(self, ours: np.ndarray) -> np.ndarray:
    if self.transpose:
      return ours.reshape(self.hf_shape[::-1]).T
    return ours.reshape(self.hf_shape)


def tensor_specs(cfg: ModelConfig) -> list[_Spec]:
  """Every parameter of `cfg` with its HF tensor name, in HF checkpoint order."""
  d, f, n, k, h, v = (cfg.embed_dim, cfg.mlp_dim, cfg.num_heads, cfg.num_kv_heads,
                      cfg.head_dim, cfg.vocab_size)
  specs = [_Spec(("embedding",), "model.embed_tokens.weight", (v, d), (v, d), False)]
  for i in range(cfg.num_layers):
    p, a = f"model.layers.{i}.", ("layers", i, "attn")
    specs += [_Spec(a + ("q_proj",), p + "self_attn.q_proj.weight", (n * h, d), (d, n, h), True),
              _Spec(a + ("k_proj",), p + "self_attn.k_proj.weight", (k * h, d), (d, k, h), True),
              _Spec(a + ("v_proj",), p + "self_attn.v_proj.weight", (k * h, d), (d, k, h), True),
              _Spec(a + ("o_proj",), p + "self_attn.o_proj.weight", (d, n * h), (n, h, d), True)]
    if cfg.qkv_bias:
      specs += [_Spec(a + ("q_bias",), p + "self_attn.q_proj.bias", (n * h,), (n, h), False),
                _Spec(a + ("k_bias",), p + "self_attn.k_proj.bias", (k * h,), (k, h), False),
                _Spec(a + ("v_bias",), p + "self_attn.v_proj.bias", (k * h,), (k, h), False)]
    if cfg.qk_norm:
      specs += [_Spec(a + ("q_norm", "scale"), p + "self_attn.q_norm.weight", (h,), (h,), False),
                _Spec(a + ("k_norm", "scale"), p + "self_attn.k_norm.weight", (h,), (h,), False)]
    m = ("layers", i, "mlp")
    specs += [_Spec(m + ("gate_proj",), p + "mlp.gate_proj.weight", (f, d), (d, f), True),
              _Spec(m + ("up_proj",), p + "mlp.up_proj.weight", (f, d), (d, f), True),
              _Spec(m + ("down_proj",), p + "mlp.down_proj.weight", (d, f), (f, d), True),
              _Spec(("layers", i, "input_norm", "scale"), p + "input_layernorm.weight",
                    (d,), (d,), False),
              _Spec(("layers", i, "post_attn_norm", "scale"), p + "post_attention_layernorm.weight",
                    (d,), (d,), False)]
  specs.append(_Spec(("final_norm", "scale"), "model.norm.weight", (d,), (d,), False))
  if not cfg.tie_embeddings:
    specs.append(_Spec(("lm_head",), "lm_head.weight", (v, d), (d, v), True))
  return specs


# ----------------------------------------------------------------------------- reading


def _local(path: epath.Path) -> str | None:
  """The local file name of `path`, or None for a remote (gs://, ...) path."""
  try:
    name = os.fspath(path)
  except TypeError:
    return None
  return name if "://" not in name and os.path.exists(name) else None


def read_safetensors_header(file: str | os.PathLike) -> tuple[dict[str, Any], int]:
  """(header dict without __metadata__, byte offset where the data starts)."""
  with epath.Path(file).open("rb") as fh:
    raw = fh.read(8)
    if len(raw) != 8:
      raise CheckpointError(f"{file}: not a safetensors file (too short)")
    n = int.from_bytes(raw, "little")
    try:
      header = json.loads(fh.read(n))
    except ValueError as e:
      raise CheckpointError(f"{file}: corrupt safetensors header: {e}") from None
  header.pop("__metadata__", None)
  return header, 8 + n


class _Reader:
  """Name -> memory-mapped numpy array over the files of one checkpoint directory."""

  def __init__(self, path: str | os.PathLike):
    path = epath.Path(path)
    index = path / INDEX_FILE
    if index.exists():
      weight_map = json.loads(index.read_text())["weight_map"]
      files = sorted(set(weight_map.values()))
    elif (path / SINGLE_FILE).exists():
      weight_map, files = None, [SINGLE_FILE]
    else:
      files = sorted(f.name for f in path.glob("*.safetensors"))
      weight_map = None
      if not files:
        raise FileNotFoundError(f"No *.safetensors files in {path}")
    self.entries: dict[str, tuple[epath.Path, dict, int]] = {}
    for name in files:
      file = path / name
      if not file.exists():
        raise FileNotFoundError(f"{INDEX_FILE} in {path} names missing file {name}")
      header, start = read_safetensors_header(file)
      for tname, info in header.items():
        if tname in self.entries:
          raise CheckpointError(f"Tensor {tname!r} appears in both {self.entries[tname][0]} "
                                f"and {file}")
        self.entries[tname] = (file, info, start)
    if weight_map is not None:
      for tname, fname in weight_map.items():
        got = self.entries.get(tname)
        if got is None or got[0].name != fname:
          raise CheckpointError(f"{INDEX_FILE} maps tensor {tname!r} to {fname}, "
                                "but that file does not contain it")

  def file(self, name: str) -> epath.Path:
    return self.entries[name][0]

  def array(self, name: str, expected_shape: tuple[int, ...] | None = None) -> np.ndarray:
    file, info, start = self.entries[name]
    if info["dtype"] not in _ST_DTYPES:
      raise CheckpointError(f"Tensor {name!r} in {file} has unsupported dtype {info['dtype']}")
    shape, dtype = tuple(info["shape"]), _ST_DTYPES[info["dtype"]]
    if expected_shape is not None and shape != tuple(expected_shape):
      raise CheckpointError(f"Tensor {name!r} in {file} has shape {shape}, "
                            f"expected {tuple(expected_shape)}")
    begin, end = info["data_offsets"]
    if end - begin != int(np.prod(shape)) * dtype.itemsize:
      raise CheckpointError(f"Tensor {name!r} in {file}: byte range does not match its shape")
    if not shape or 0 in shape:
      return np.zeros(shape, dtype)
    local = _local(file)
    if local is not None:  # only the slices a device asks for are ever paged in
      return np.memmap(local, dtype=dtype, mode="r", offset=start + begin, shape=shape)
    with file.open("rb") as fh:  # remote: one ranged read of this tensor
      fh.seek(start + begin)
      return np.frombuffer(fh.read(end - begin), dtype=dtype).reshape(shape)


def _equal_rows(a: np.ndarray, b: np.ndarray, chunk: int = 4096) -> bool:
  """Exact equality of two large (memory-mapped) matrices, a few rows at a time."""
  if a.shape != b.shape:
    return False
  return all(np.array_equal(np.asarray(a[i:i + chunk], np.float32),
                            np.asarray(b[i:i + chunk], np.float32))
             for i in range(0, a.shape[0], chunk))


def load_pretrained(path: str | os.PathLike, mesh: Mesh | None = None, rules: ShardingRules | None = None,
                    dtype: str | None = None, param_dtype: str | None = None,
                    compute_dtype: str | None = None,
                    config_overrides: Mapping[str, Any] | None = None) -> Transformer:
  """Loads a local Hugging Face directory into a (sharded) NNX `Transformer`.

  Args:
    path: directory with config.json and model.safetensors, or sharded
      *.safetensors with model.safetensors.index.json.
    mesh, rules: place every parameter on its shards (as `create_model` does);
      without a mesh, parameters go to the default device.
    dtype: shorthand for both `param_dtype` and `compute_dtype`.
    param_dtype: storage dtype; default the checkpoint's torch_dtype (else float32).
    compute_dtype: matmul/activation dtype; default the parameter dtype.
    config_overrides: other `ModelConfig` fields (e.g. remat=True).
  """
  hf_config = json.loads((epath.Path(path) / "config.json").read_text())
  overrides = dict(config_overrides or {})
  pdt = param_dtype or dtype
  if pdt is not None:
    overrides["param_dtype"] = pdt
  cdt = compute_dtype or dtype or pdt
  if cdt is not None:
    overrides["dtype"] = cdt
  cfg = config_from_hf(hf_config, **overrides)

  if mesh is not None:
    rules = rules or ShardingRules()
  abstract = abstract_model(cfg, mesh, rules)
  graphdef, _ = nnx.split(abstract)
  shardings = param_shardings(abstract, mesh, rules) if mesh is not None else None
  reader = _Reader(path)
  specs = tensor_specs(cfg)
  expected = {s.hf_name for s in specs}
  extra = [n for n in reader.entries if n not in expected and not _HARMLESS.search(n)
           and not (cfg.tie_embeddings and n == "lm_head.weight")]
  if extra:
    raise CheckpointError(f"Unexpected tensor {extra[0]!r} in {reader.file(extra[0])} "
                          f"({len(extra)} unexpected in all: {extra[:5]}) for a {cfg.family} "
                          f"model with qkv_bias={cfg.qkv_bias}, qk_norm={cfg.qk_norm}, "
                          f"tie_embeddings={cfg.tie_embeddings}")
  missing = [n for n in sorted(expected) if n not in reader.entries]
  if missing:
    raise CheckpointError(f"Missing tensor {missing[0]!r} in {path} ({len(missing)} missing "
                          f"in all: {missing[:5]})")
  if cfg.tie_embeddings and "lm_head.weight" in reader.entries:
    head = reader.array("lm_head.weight")
    if not _equal_rows(head, reader.array("model.embed_tokens.weight")):
      raise CheckpointError(f"Tensor 'lm_head.weight' in {reader.file('lm_head.weight')} "
                            "differs from model.embed_tokens.weight, but "
                            "tie_word_embeddings=True")

  target = cfg.jnp_param_dtype
  single = SingleDeviceSharding(jax.local_devices()[0])
  params: dict[Any, Any] = {}
  for spec in specs:
    view = spec.to_ours(reader.array(spec.hf_name, spec.hf_shape))
    sharding = single
    if shardings is not None:
      sharding = _lookup(shardings, spec.path)
    # Each device asks only for its slice: read (page in) and cast just that.
    arr = jax.make_array_from_callback(
        spec.shape, sharding, lambda i, view=view: np.array(view[i], dtype=target, copy=True))
    _assign(params, spec.path, arr)
    del view
  return nnx.merge(graphdef, params)


def _lookup(tree: Mapping, path: tuple) -> Any:
  for key in path:
    if key not in tree and isinstance(key, int):
      key = str(key)  # checkpoint restores may turn layer indices into strings
    tree = tree[key]
  return tree


def _assign(tree: dict, path: tuple, value: Any) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


# Writing lives in hf_write.py (it reads this module's layouts and constants).
from r1jax.models.hf_write import save_pretrained  # noqa: E402,F401  pylint: disable=wrong-import-position
