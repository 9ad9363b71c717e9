#!/usr/bin/env bash
# Makes the two optional peer venvs that benchmarks/peers.py runs:
#   .venv-trl   : CPU torch + transformers + trl (TRL's GRPOTrainer, HF generate)
#   .venv-tunix : google-tunix (its Qwen2, vanilla sampler and GRPOLearner on JAX)
# Both install from the package index. The test suite and CI never need them.
# Usage: bash benchmarks/make_peer_venvs.sh [trl|tunix]   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
want=${1:-all}

if [[ $want == all || $want == trl ]]; then
  $PY -m venv .venv-trl
  .venv-trl/bin/pip install -q --upgrade pip
  .venv-trl/bin/pip install -q torch
  .venv-trl/bin/pip install -q transformers trl tokenizers safetensors accelerate datasets
  .venv-trl/bin/python -c "import torch, transformers, trl; print('trl venv:', torch.__version__, transformers.__version__, trl.__version__)"
fi

if [[ $want == all || $want == tunix ]]; then
  $PY -m venv .venv-tunix
  .venv-tunix/bin/pip install -q --upgrade pip
  .venv-tunix/bin/pip install -q google-tunix tokenizers safetensors
  .venv-tunix/bin/python -c "import jax, tunix; print('tunix venv: jax', jax.__version__)"
fi
