"""Writing Hugging Face checkpoints (`r1jax.models.hf.save_pretrained`): config.json and
(sharded) safetensors, tensor by tensor; `r1jax.models.hf` has the layouts and the reader."""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
from etils import epath
from flax import nnx
from jax.experimental import multihost_utils

from r1jax.models import hf as hf_lib
from r1jax.models.config import ModelConfig


def _to_host(x: Any) -> np.ndarray:
  """Whole array on the host; a collective when it spans several processes."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))


def _shard_plan(sizes: list[int], max_bytes: int) -> list[list[int]]:
  """Groups consecutive tensor indices into files of at most max_bytes (or one tensor)."""
  groups: list[list[int]] = [[]]
  total = 0
  for i, size in enumerate(sizes):
    if groups[-1] and total + size > max_bytes:
      groups.append([])
      total = 0
    groups[-1].append(i)
    total += size
  return groups


def _header_bytes(names: list[str], dtypes: list[np.dtype], shapes: list[tuple]) -> bytes:
  header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
  offset = 0
  for name, dt, shape in zip(names, dtypes, shapes):
    size = int(np.prod(shape)) * dt.itemsize
    header[name] = {"dtype": hf_lib._ST_NAMES[dt], "shape": list(shape),
                    "data_offsets": [offset, offset + size]}
    offset += size
  raw = json.dumps(header, separators=(",", ":")).encode()
  raw += b" " * (-len(raw) % 8)  # keep the data 8-byte aligned, as safetensors does
  return len(raw).to_bytes(8, "little") + raw


def _clean_old_weights(path: epath.Path) -> None:
  """Removes weight files of an earlier save, so loaders never see a stale mix."""
  old = [path / hf_lib.SINGLE_FILE, path / hf_lib.INDEX_FILE]
  for f in old + list(path.glob("model-*-of-*.safetensors")):
    if f.exists():
      f.unlink()


def save_pretrained(model_or_params: Any, path: str | os.PathLike, cfg: ModelConfig | None = None,
                    max_shard_size_bytes: int = hf_lib.DEFAULT_MAX_SHARD_BYTES,
                    dtype: str | None = None,
                    eos_token_id: int | list[int] | None = None,
                    bos_token_id: int | None = None) -> list[str]:
  """Writes a Hugging Face directory (config.json + safetensors); returns the weight files.

  Args:
    model_or_params: a `Transformer`, or its params (pure dict / nnx.State) with `cfg`.
    path: output directory (created). Earlier weight files there are replaced.
    cfg: required with params; defaults to `model.cfg`.
    max_shard_size_bytes: above this total, write model-0000i-of-0000n.safetensors
      files of at most this size (a single larger tensor gets its own file) and
      model.safetensors.index.json.
    dtype: cast floating tensors (e.g. "bfloat16"); default: each parameter's dtype.
    eos_token_id, bos_token_id: also written to config.json and generation_config.json.

  In multi-process runs every process must call this (tensors are gathered one by
  one with a collective); only process 0 writes.
  """
  if isinstance(model_or_params, nnx.Module):
    cfg = cfg or model_or_params.cfg
    params = nnx.to_pure_dict(nnx.state(model_or_params, nnx.Param))
  else:
    if cfg is None:
      raise ValueError("save_pretrained needs `cfg` when given params instead of a model")
    params = model_or_params
    if isinstance(params, nnx.State):
      params = nnx.to_pure_dict(params)
  hf_lib.check_exportable(cfg)
  path = epath.Path(path)
  specs = hf_lib.tensor_specs(cfg)
  arrays = [hf_lib._lookup(params, s.path) for s in specs]
  for s, a in zip(specs, arrays):
    if tuple(a.shape) != s.shape:
      raise hf_lib.CheckpointError(
          f"Parameter {'.'.join(map(str, s.path))} has shape {a.shape}, "
          f"expected {s.shape} for {s.hf_name}")
  out_dtypes = [np.dtype(jax.numpy.dtype(dtype)) if dtype else np.dtype(a.dtype) for a in arrays]
  sizes = [int(np.prod(s.hf_shape)) * dt.itemsize for s, dt in zip(specs, out_dtypes)]
  groups = _shard_plan(sizes, max_shard_size_bytes)
  if len(groups) == 1:
    files = [hf_lib.SINGLE_FILE]
  else:
    files = [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
  writer = jax.process_index() == 0
  if writer:
    path.mkdir(parents=True, exist_ok=True)
    _clean_old_weights(path)
    extra = {k: v for k, v in (("eos_token_id", eos_token_id), ("bos_token_id", bos_token_id))
             if v is not None}
    hf_cfg = hf_lib.config_to_hf(cfg, dtype=str(out_dtypes[0]), **extra)
    (path / "config.json").write_text(json.dumps(hf_cfg, indent=2))
    if extra:
      (path / "generation_config.json").write_text(json.dumps(extra, indent=2))

  weight_map = {}
  for fname, group in zip(files, groups):
    fh = (path / fname).open("wb") if writer else None
    try:
      if fh:
        fh.write(_header_bytes([specs[i].hf_name for i in group],
                               [out_dtypes[i] for i in group],
                               [specs[i].hf_shape for i in group]))
      for i in group:
        host = _to_host(arrays[i])  # all processes take part in the gather
        if fh:  # convert and write a block of rows at a time: no second full copy
          hf = specs[i].to_hf(host)
          rows = max(1, hf_lib._WRITE_BLOCK // max(1, hf[:1].nbytes))
          for r in range(0, hf.shape[0], rows):  # .tobytes: fh may be a remote file object
            fh.write(np.ascontiguousarray(hf[r:r + rows]).astype(out_dtypes[i],
                                                                 copy=False).tobytes())
        weight_map[specs[i].hf_name] = fname
        del host
    finally:
      if fh:
        fh.close()
  if writer and len(files) > 1:
    (path / hf_lib.INDEX_FILE).write_text(json.dumps(
        {"metadata": {"total_size": sum(sizes)}, "weight_map": weight_map}, indent=2))
  return [str(path / f) for f in files]

