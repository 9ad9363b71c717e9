"""The `export` stage: an r1jax workdir (any stage) -> a Hugging Face directory.

  python -m r1jax.main --config=configs/export.py --config.init_from=runs/quickstart/r1_zero \
      --workdir=runs/export
  vllm serve runs/export        # the stage prints the full command

The output directory holds what transformers' `AutoModelForCausalLM` / `AutoTokenizer` and vLLM
read: config.json (the family's fields, `dtype` and `torch_dtype`), model.safetensors (or shards
with an index above `max_shard_size_bytes`), every tokenizer file (a SentencePiece tokenizer is
converted to tokenizer.json), a chat template that renders exactly the training prompts, and
generation_config.json with the stage's eos and stop token ids and R1's evaluation sampling
(temperature 0.6, top-p 0.95). Notebooks call `export(init_from, out_dir)`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Sequence

import jax
from etils import epath

from r1jax import experiment, paths, sharding, stage_config
from r1jax.data.templates import Template, for_tokenizer, get_template
from r1jax.models import hf
from r1jax.models.factory import abstract_model, param_shardings, split_params
from r1jax.tokenizer import (SentencePieceTokenizer, Tokenizer, copy_tokenizer_files,
                             load_tokenizer, sentencepiece_to_hf)

log = logging.getLogger(__name__)

CHAT_TEMPLATE_FILE = "chat_template.jinja"
EXPORT_INFO_FILE = "r1jax_export.json"


@dataclasses.dataclass(frozen=True)
class ExportConfig:
  """What `export` writes (the `export` block of configs/export.py).

  Attributes:
    dtype: cast floating weights to this dtype ('' = as trained, e.g. 'bfloat16').
    max_shard_size_gb: above this (GiB), weights go to model-0000i-of-0000n.safetensors files.
    step: checkpoint step to export (None or < 0 = the latest readable one).
    template: the prompt template ('' = the one the source stage trained with).
    stop_strings: strings that end a response (None = the source stage's, else '</answer>' for
      templates with answer tags); single-token ones become generation stop ids.
    temperature, top_p: the default sampling of generation_config.json (R1's evaluation).
    served_model_name: the name in the printed vLLM command ('' = the directory name).
  """
  dtype: str = ""
  max_shard_size_gb: float = hf.DEFAULT_MAX_SHARD_BYTES / 2**30
  step: int | None = None
  template: str = ""
  stop_strings: tuple[str, ...] | None = None
  temperature: float = 0.6
  top_p: float = 0.95
  served_model_name: str = ""

  @property
  def max_shard_size_bytes(self) -> int:
    return int(self.max_shard_size_gb * 2**30)

  @classmethod
  def from_config(cls, block: Any) -> "ExportConfig":
    d = dict(experiment.to_dict(block) or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise ValueError(f"Unknown config.export fields {unknown}; known: {sorted(known)}")
    if d.get("step") is not None and int(d["step"]) < 0:
      d["step"] = None
    if d.get("stop_strings") is not None:
      d["stop_strings"] = tuple(d["stop_strings"])
    return cls(**{k: v for k, v in d.items() if v is not None or k == "stop_strings"})


@dataclasses.dataclass
class ExportResult:
  path: str
  files: list[str]
  template: str | None
  eos_token_ids: list[int]
  vllm_command: str


def _source_stage_config(init_from: epath.Path, step: int | None) -> dict:
  """The config the source stage saved with its checkpoint ({} when none is readable)."""
  from r1jax.checkpoint import Checkpointer
  ckpt_dir = init_from / "checkpoints"
  if not ckpt_dir.exists():
    return {}
  ckpt = Checkpointer(ckpt_dir, async_save=False)
  try:
    return dict(ckpt.restore_meta(step).get("config") or {})
  except Exception as e:  # noqa: BLE001 - the config is a hint; the weights are what matter
    log.warning("Could not read the source stage's config from %s: %s", ckpt_dir, e)
    return {}
  finally:
    ckpt.close()


def _stage_template(stage_cfg: dict) -> str | None:
  """The template a stage trained with: GRPO/eval `template`, else its SFT data sources'."""
  if stage_cfg.get("template"):
    return stage_cfg["template"]
  for src in (stage_cfg.get("data") or {}).get("sources") or ():
    if isinstance(src, dict) and src.get("template"):
      return src["template"]
  return None


def _stop_ids(tokenizer: Tokenizer, stop_strings: Sequence[str]) -> tuple[list[int], list[str]]:
  """(ids of the stop strings that are one token, the strings that are not)."""
  ids, multi = [], []
  for s in stop_strings:
    enc = tokenizer.encode(s)
    if len(enc) == 1:
      ids.append(enc[0])
    else:
      multi.append(s)
  return ids, multi


def _write_tokenizer(tokenizer: Tokenizer, src: epath.Path, out: epath.Path,
                     template: Template | None, add_bos: bool, max_len: int) -> str | None:
  """Every tokenizer file, plus the chat template; returns the chat template written."""
  if isinstance(tokenizer, SentencePieceTokenizer):
    for name, text in sentencepiece_to_hf(tokenizer, add_bos=add_bos,
                                          model_max_length=max_len).items():
      (out / name).write_text(text)
    (out / "tokenizer.model").write_bytes(tokenizer._sp.serialized_model_proto())  # pylint: disable=protected-access
  else:
    copy_tokenizer_files(src, out)
  if template is None:
    return None
  # A chat template from the tokenizer stays as it is; a plain (R1-Zero) one is written out.
  jinja = template.to_jinja(add_bos_token=add_bos)
  (out / CHAT_TEMPLATE_FILE).write_text(jinja)
  cfg_file = out / "tokenizer_config.json"
  tok_cfg = json.loads(cfg_file.read_text()) if cfg_file.exists() else {}
  tok_cfg["chat_template"] = jinja  # older transformers read only this key
  cfg_file.write_text(json.dumps(tok_cfg, indent=2, ensure_ascii=False))
  return jinja


def vllm_command(path: str, name: str, dtype: str, max_model_len: int) -> str:
  return (f"vllm serve {path} --served-model-name {name} --dtype {dtype} "
          f"--max-model-len {max_model_len} --generation-config auto")


def export(init_from: str | os.PathLike, out_dir: str | os.PathLike,
           cfg: ExportConfig = ExportConfig(), mesh_shape: Sequence[int] = (1, -1, 1),
           sharding_rules: dict | None = None) -> ExportResult:
  """Writes the policy of r1jax workdir `init_from` as a Hugging Face directory `out_dir`.

  Parameters are restored sharded over `mesh_shape` (FSDP over all devices by default, so a
  model that fits for training fits here) and gathered one tensor at a time while writing.
  Every process must call this in multi-host runs; process 0 writes.
  """
  src, out = epath.Path(init_from), epath.Path(out_dir)
  if hf._local(src) is not None:  # pylint: disable=protected-access
    src = epath.Path(os.path.abspath(hf._local(src)))  # pylint: disable=protected-access
  if not experiment.is_r1jax_workdir(src):
    raise ValueError(f"init_from={init_from!s} is not an r1jax workdir (no "
                     f"{experiment.MODEL_CONFIG_FILE}); export needs a stage's workdir")
  model_cfg = experiment.load_model_config(src)
  hf.check_exportable(model_cfg)  # before minutes of restoring
  stage_cfg = _source_stage_config(src, cfg.step)
  tok_dir = experiment.tokenizer_dir(src)
  tokenizer = load_tokenizer(tok_dir if (tok_dir / "tokenizer.json").exists()
                             else tok_dir / "tokenizer.model")

  name = cfg.template or _stage_template(stage_cfg)
  template = for_tokenizer(get_template(name), tokenizer) if name else None
  if template is None:
    log.warning("No template found in %s's config and none set (config.export.template): the "
                "export keeps the tokenizer's own chat template, if any.", src)
  add_bos = (tokenizer.bos_id is not None and not (template and template.includes_bos))
  stops = cfg.stop_strings
  if stops is None:
    stops = tuple((stage_cfg.get("rl") or {}).get("stop_strings") or
                  (("</answer>",) if template is not None and template.answer_tags else ()))
  stop_ids, multi = _stop_ids(tokenizer, stops)
  if multi:
    log.warning("Stop strings %s are not single tokens: generation_config cannot carry them; "
                "pass them as `stop` in requests.", multi)
  eos_ids = list(dict.fromkeys(list(tokenizer.eos_ids) + stop_ids))

  mesh = sharding.make_mesh(tuple(mesh_shape))
  rules = sharding.ShardingRules.from_dict(sharding_rules or {})
  abstract = abstract_model(model_cfg, mesh, rules)
  _, abs_params = split_params(abstract)
  shard = param_shardings(abstract, mesh, rules)
  target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abs_params, shard)
  from r1jax.checkpoint import restore_params
  params, _ = restore_params(src, target, step=cfg.step)

  files = hf.save_pretrained(params, out, cfg=model_cfg,
                             max_shard_size_bytes=cfg.max_shard_size_bytes,
                             dtype=cfg.dtype or None, eos_token_id=tokenizer.eos_id,
                             bos_token_id=tokenizer.bos_id)
  dtype = cfg.dtype or model_cfg.param_dtype
  local = hf._local(out)  # pylint: disable=protected-access
  shown = os.path.abspath(local) if local else str(out)
  served = cfg.served_model_name or out.name
  command = vllm_command(shown, served, dtype, model_cfg.max_position_embeddings)
  if jax.process_index() == 0:
    chat = _write_tokenizer(tokenizer, tok_dir, out, template, add_bos,
                            model_cfg.max_position_embeddings)
    gen = {"bos_token_id": tokenizer.bos_id, "eos_token_id": eos_ids,
           "pad_token_id": tokenizer.pad_id, "do_sample": True,
           "temperature": cfg.temperature, "top_p": cfg.top_p}
    (out / "generation_config.json").write_text(
        json.dumps({k: v for k, v in gen.items() if v is not None}, indent=2))
    info = {"init_from": str(src), "step": cfg.step, "stage": stage_cfg.get("stage"),
            "template": template.name if template else None,
            "chat_template_from": ("tokenizer" if template and template.chat_template
                                   else "r1jax template" if chat else None),
            "add_bos": add_bos, "stop_strings": list(stops), "vllm_command": command}
    (out / EXPORT_INFO_FILE).write_text(json.dumps(info, indent=2))
    print(f"Exported {src} -> {shown}\nServe it with:\n  {command}", flush=True)
  return ExportResult(path=str(out), files=[str(f) for f in files],
                      template=template.name if template else None, eos_token_ids=eos_ids,
                      vllm_command=command)


@paths.resolves_paths
def run(config, workdir: str | os.PathLike) -> ExportResult:
  """Stage entry (`config.stage == 'export'`): exports `config.init_from` into `workdir`."""
  common = stage_config.common_config(config)   # init_from, mesh, sharding rules
  init_from = common.init_from                   # absolute: resolved by @paths.resolves_paths
  if not init_from:
    raise ValueError("config.init_from must name the r1jax workdir to export, e.g. "
                     "--config.init_from=runs/quickstart/r1_zero")
  cfg = ExportConfig.from_config(config.get("export", {}) if hasattr(config, "get") else {})
  mesh_shape, rules = tuple(common.mesh.shape), dict(common.sharding_rules)
  return export(init_from, workdir, cfg, mesh_shape=mesh_shape, sharding_rules=rules)
