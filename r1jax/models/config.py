"""Model configuration and presets (as code, checked against published counts).

One `ModelConfig` covers the decoder-only families that R1 reproductions start
from. The differences between them are a handful of switches:

  family   qkv_bias  qk_norm  rope scaling  tied (small sizes)
  qwen2    yes       no       none          yes (0.5B/1.5B), no (7B, R1-Distill)
  llama    no        no       llama3        yes (3.2-1B), no (3.1-8B)
  qwen3    no        yes      none          yes
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax.numpy as jnp

FAMILIES = ("qwen2", "llama", "qwen3")
ATTENTION_IMPLS = ("reference", "blocked", "xla", "cudnn", "splash")  # see r1jax/models/attention.py


@dataclasses.dataclass(frozen=True)
class RopeScaling:
  """Llama 3 style frequency-dependent RoPE scaling ("rope_type": "llama3")."""
  factor: float = 8.0
  low_freq_factor: float = 1.0
  high_freq_factor: float = 4.0
  original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture hyper-parameters, in Hugging Face terms where they exist."""
  family: str = "qwen2"
  vocab_size: int = 512
  embed_dim: int = 128          # hidden_size
  mlp_dim: int = 384            # intermediate_size
  num_layers: int = 4
  num_heads: int = 4
  num_kv_heads: int = 2
  head_dim: int = 32
  rope_theta: float = 10_000.0
  rope_scaling: RopeScaling | None = None
  rms_norm_eps: float = 1e-6
  qkv_bias: bool = False
  qk_norm: bool = False
  tie_embeddings: bool = True
  max_position_embeddings: int = 2048
  # Storage dtype of parameters and dtype of the matmuls/activations. Norms,
  # softmax and logits always run in float32.
  param_dtype: str = "float32"
  dtype: str = "float32"
  remat: bool = False           # rematerialise each layer in the backward pass
  # Attention implementation (r1jax/models/attention.py, docs/sampler.md): "reference"
  # ([T, S] fp32 scores), "blocked" (flash-style over [attention_block]^2 tiles, skipping
  # those above the causal diagonal; decode reads only the filled blocks), "xla" / "cudnn"
  # (jax.nn.dot_product_attention), "splash" (Pallas splash kernel for TPU, r1jax/models/
  # splash.py: the full-sequence forward and backward; calls with a KV cache use "blocked";
  # off TPU it runs the Pallas interpreter, for tests only).
  attention: str = "reference"
  attention_block: int = 512

  def __post_init__(self):
    if self.family not in FAMILIES:
      raise ValueError(f"Unknown model family {self.family!r}; expected one of {FAMILIES}")
    if self.num_heads % self.num_kv_heads:
      raise ValueError(f"num_heads={self.num_heads} must be a multiple of "
                       f"num_kv_heads={self.num_kv_heads}")
    if self.attention not in ATTENTION_IMPLS or self.attention_block < 1:
      raise ValueError(f"attention={self.attention!r} must be one of {ATTENTION_IMPLS} and "
                       f"attention_block={self.attention_block} >= 1")
    for name in ("param_dtype", "dtype"):
      if getattr(self, name) not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"{name} must be float32, bfloat16 or float16, got {getattr(self, name)!r}")

  @property
  def jnp_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def jnp_param_dtype(self):
    return jnp.dtype(self.param_dtype)

  def replace(self, **kw) -> "ModelConfig":
    if isinstance(kw.get("rope_scaling"), Mapping):
      kw["rope_scaling"] = RopeScaling(**kw["rope_scaling"])
    return dataclasses.replace(self, **kw)

  def num_params(self) -> int:
    """Closed-form parameter count (tests compare it with `jax.eval_shape`)."""
    d, f, n, k, h, v = (self.embed_dim, self.mlp_dim, self.num_heads, self.num_kv_heads,
                        self.head_dim, self.vocab_size)
    attn = d * n * h + 2 * d * k * h + n * h * d
    if self.qkv_bias:
      attn += n * h + 2 * k * h
    if self.qk_norm:
      attn += 2 * h
    layer = attn + 3 * d * f + 2 * d
    emb = v * d * (1 if self.tie_embeddings else 2)
    return self.num_layers * layer + emb + d


_QWEN25_SMALL = dict(family="qwen2", vocab_size=151_936, qkv_bias=True, rope_theta=1_000_000.0,
                     max_position_embeddings=32_768, rms_norm_eps=1e-6, head_dim=128)

PRESETS: dict[str, ModelConfig] = {
    # Fast on CPU: for tests, demos and the quickstart.
    "tiny": ModelConfig(family="qwen2", vocab_size=512, embed_dim=128, mlp_dim=384, num_layers=4,
                        num_heads=4, num_kv_heads=2, head_dim=32, qkv_bias=True,
                        max_position_embeddings=1024),
    # A smaller student for distillation demos.
    "tiny-student": ModelConfig(family="qwen2", vocab_size=512, embed_dim=64, mlp_dim=192,
                                num_layers=2, num_heads=2, num_kv_heads=1, head_dim=32,
                                qkv_bias=True, max_position_embeddings=1024),
    "qwen2.5-0.5b": ModelConfig(**{**_QWEN25_SMALL, "head_dim": 64}, embed_dim=896, mlp_dim=4864,
                                num_layers=24, num_heads=14, num_kv_heads=2, tie_embeddings=True),
    "qwen2.5-1.5b": ModelConfig(**_QWEN25_SMALL, embed_dim=1536, mlp_dim=8960, num_layers=28,
                                num_heads=12, num_kv_heads=2, tie_embeddings=True),
    "qwen2.5-7b": ModelConfig(**{**_QWEN25_SMALL, "vocab_size": 152_064}, embed_dim=3584,
                              mlp_dim=18_944, num_layers=28, num_heads=28, num_kv_heads=4,
                              tie_embeddings=False),
    "qwen2.5-math-1.5b": ModelConfig(**{**_QWEN25_SMALL, "rope_theta": 10_000.0,
                                        "max_position_embeddings": 4096},
                                     embed_dim=1536, mlp_dim=8960, num_layers=28, num_heads=12,
                                     num_kv_heads=2, tie_embeddings=True),
    "deepseek-r1-distill-qwen-1.5b": ModelConfig(
        **{**_QWEN25_SMALL, "rope_theta": 10_000.0, "max_position_embeddings": 131_072},
        embed_dim=1536, mlp_dim=8960, num_layers=28, num_heads=12, num_kv_heads=2,
        tie_embeddings=False),
    "llama3.2-1b": ModelConfig(family="llama", vocab_size=128_256, embed_dim=2048, mlp_dim=8192,
                               num_layers=16, num_heads=32, num_kv_heads=8, head_dim=64,
                               rope_theta=500_000.0, rms_norm_eps=1e-5,
                               rope_scaling=RopeScaling(factor=32.0),
                               max_position_embeddings=131_072, tie_embeddings=True),
    "llama3.1-8b": ModelConfig(family="llama", vocab_size=128_256, embed_dim=4096, mlp_dim=14_336,
                               num_layers=32, num_heads=32, num_kv_heads=8, head_dim=128,
                               rope_theta=500_000.0, rms_norm_eps=1e-5,
                               rope_scaling=RopeScaling(factor=8.0),
                               max_position_embeddings=131_072, tie_embeddings=False),
    "qwen3-0.6b": ModelConfig(family="qwen3", vocab_size=151_936, embed_dim=1024, mlp_dim=3072,
                              num_layers=28, num_heads=16, num_kv_heads=8, head_dim=128,
                              qk_norm=True, rope_theta=1_000_000.0, max_position_embeddings=40_960,
                              tie_embeddings=True),
    "qwen3-1.7b": ModelConfig(family="qwen3", vocab_size=151_936, embed_dim=2048, mlp_dim=6144,
                              num_layers=28, num_heads=16, num_kv_heads=8, head_dim=128,
                              qk_norm=True, rope_theta=1_000_000.0, max_position_embeddings=40_960,
                              tie_embeddings=True),
}

# Published totals (Hugging Face model cards / safetensors metadata, tied weights once).
PUBLISHED_PARAM_COUNTS = {
    "qwen2.5-0.5b": 494_032_768,
    "qwen2.5-1.5b": 1_543_714_304,
    "qwen2.5-7b": 7_615_616_512,
    "qwen2.5-math-1.5b": 1_543_714_304,
    "deepseek-r1-distill-qwen-1.5b": 1_777_088_000,
    "llama3.2-1b": 1_235_814_400,
    "llama3.1-8b": 8_030_261_248,
    "qwen3-0.6b": 596_049_920,
    # The Qwen3 card rounds to "1.7B, 1.4B non-embedding"; exact from its config.json.
    "qwen3-1.7b": 1_720_574_976,
}


def get_model_config(name: str, **overrides: Any) -> ModelConfig:
  """A preset by name, with field overrides (e.g. vocab_size from the tokenizer)."""
  if name not in PRESETS:
    raise ValueError(f"Unknown model preset {name!r}; available: {sorted(PRESETS)}")
  overrides = {k: v for k, v in overrides.items() if v is not None}
  fields = {f.name for f in dataclasses.fields(ModelConfig)}
  unknown = sorted(set(overrides) - fields)
  if unknown:
    raise ValueError(f"Unknown model config fields {unknown}; known: {sorted(fields)}")
  return PRESETS[name].replace(**overrides)
