"""r1jax: DeepSeek-R1 (GRPO with rule-based rewards) in JAX/Flax NNX."""
from setuptools import find_packages, setup

# Ranges are the ones tested together on CPU Python 3.11 (jax 0.10.2, flax 0.12.8,
# optax 0.2.8, orbax-checkpoint 0.12.8, grain 0.2.18). Upper bounds keep a fresh
# install on the tested minor versions; widen them after re-running the tests.
CORE = [
    "jax>=0.10.2,<0.11",
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
]

EXTRAS = {
    "dev": [
        "pytest>=8,<10",
        "pytest-xdist>=3.5,<4",
        "hypothesis>=6.100,<7",
        "nbclient>=0.10,<0.12",
        "nbformat>=5.10,<6",
        "ipykernel>=6.29,<8",
    ],
    # tfds.data_source reads ArrayRecord datasets without TensorFlow.
    "tfds": ["tensorflow-datasets>=4.9.7,<5", "array-record>=0.5"],
    # Chat data: Parquet files (r1jax/data/chat.py) and Hugging Face chat templates (jinja2).
    "data": ["pyarrow>=14", "jinja2>=3.1"],
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
