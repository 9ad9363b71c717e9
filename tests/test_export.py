"""The export stage: an r1jax workdir -> a Hugging Face directory (transformers / vLLM).

Workdirs are built here the way the stages leave them (model_config.json, tokenizer/,
an orbax checkpoint whose meta holds the stage's config), with random weights, so the
round trip is checked without training. The transformers checks skip when it is absent.
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tokenizers

from hf_tokenizers import QWEN_CHAT_TEMPLATE, write_hf_tokenizer
from nolocal_path import NoLocalPath
from r1jax import experiment
from r1jax.checkpoint import Checkpointer
from r1jax.data import procedural
from r1jax.data.templates import get_template, render_chat
from r1jax.export import ExportConfig, export
from r1jax.models import hf
from r1jax.models.config import get_model_config
from r1jax.models.factory import create_model, merge_params, split_params
from r1jax.tokenizer import load_tokenizer, train_sentencepiece

REPO = pathlib.Path(__file__).resolve().parents[1]
DIMS = dict(num_layers=2, embed_dim=64, mlp_dim=128, num_heads=4, num_kv_heads=2, head_dim=16,
            max_position_embeddings=512)


def _corpus(seed=0, n=200):
  rows = procedural.make_sft_corpus(task="arithmetic", num_examples=n, seed=seed,
                                    error_rate=0.3, template="r1_zero_bare")
  return [r["prompt"] + r["completion"] for r in rows]


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
  return train_sentencepiece(_corpus(), tmp_path_factory.mktemp("sp") / "tokenizer", 300)


def make_workdir(path, sp_model, family="qwen2", template="r1_zero_bare", stage="grpo",
                 tokenizer_src=None, seed=0, **dims):
  """An r1jax workdir as a GRPO (or SFT) stage leaves it, with random weights."""
  path = pathlib.Path(path)
  tok_dir = path / "tokenizer"
  tok_dir.mkdir(parents=True)
  if tokenizer_src is None:
    (tok_dir / "tokenizer.model").write_bytes(pathlib.Path(sp_model).read_bytes())
  else:
    experiment._copy_tokenizer(tokenizer_src, path)
  tok = load_tokenizer(tok_dir if tokenizer_src else tok_dir / "tokenizer.model")
  extra = dict(qkv_bias=family == "qwen2", qk_norm=family == "qwen3",
               tie_embeddings=family != "llama")
  cfg = get_model_config("tiny", family=family, vocab_size=tok.vocab_size,
                         **{**DIMS, **extra, **dims})
  model = create_model(cfg, seed)
  graphdef, params = split_params(model)
  experiment.save_model_config(cfg, path)
  if stage == "grpo":
    config = {"stage": "grpo", "template": template, "rl": {"stop_strings": ["</answer>"]}}
    tree = {"train": {"params": params, "step": np.int32(3)}}
  else:
    config = {"stage": "sft", "data": {"sources": [{"kind": "procedural", "template": template}]}}
    tree = {"params": params, "step": np.int32(3)}
  with Checkpointer(path / "checkpoints", async_save=False) as ckpt:
    ckpt.save(3, tree, {}, {"stage": stage, "config": config})
  return graphdef, params, cfg, tok


def _tokens(cfg, b=2, s=11):
  rng = np.random.default_rng(0)
  return rng.integers(0, cfg.vocab_size, (b, s)).astype(np.int32), np.tile(np.arange(s), (b, 1))


def _logits(model, tokens, positions):
  out, _ = model(tokens, positions, None)
  return np.asarray(out, np.float32)


@pytest.mark.parametrize("family", ["qwen2", "llama", "qwen3"])
def test_round_trip_logits_and_files(tmp_path, sp_model, family):
  graphdef, params, cfg, tok = make_workdir(tmp_path / "wd", sp_model, family=family)
  out = tmp_path / "export"
  res = export(tmp_path / "wd", out)
  tokens, positions = _tokens(cfg)
  ref = _logits(merge_params(graphdef, params), tokens, positions)
  loaded = hf.load_pretrained(str(out))
  assert loaded.cfg.replace(remat=cfg.remat) == cfg
  np.testing.assert_array_equal(_logits(loaded, tokens, positions), ref)

  conf = json.loads((out / "config.json").read_text())
  assert conf["dtype"] == conf["torch_dtype"] == "float32"
  assert ("head_dim" in conf) == (family != "qwen2")
  assert conf["eos_token_id"] == tok.eos_id and conf["bos_token_id"] == tok.bos_id
  gen = json.loads((out / "generation_config.json").read_text())
  answer_id = tok.token_to_id("</answer>")
  assert gen["eos_token_id"] == [tok.eos_id, answer_id] == res.eos_token_ids
  assert gen["temperature"] == 0.6 and gen["top_p"] == 0.95 and gen["do_sample"]
  assert "vllm serve " + str(out.resolve()) in res.vllm_command
  names = {p.name for p in out.iterdir()}
  assert {"model.safetensors", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
          "special_tokens_map.json", "chat_template.jinja"} <= names


def test_tokenizer_and_chat_template_render_the_training_prompts(tmp_path, sp_model):
  _, _, _, tok = make_workdir(tmp_path / "wd", sp_model, template="r1_zero")
  out = tmp_path / "export"
  export(tmp_path / "wd", out)
  template = get_template("r1_zero")
  jinja = (out / "chat_template.jinja").read_text()
  assert json.loads((out / "tokenizer_config.json").read_text())["chat_template"] == jinja
  hf_tok = tokenizers.Tokenizer.from_file(str(out / "tokenizer.json"))
  for q, system in [("What is 2 + 3?", None), ("Compute (4 - 1) * 2", None),
                    ("x", "Be brief.")]:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": q}]
    text = render_chat(jinja, messages, add_generation_prompt=True, bos_token="<s>")
    assert text == "<s>" + template.render_prompt(q, system)
    # What a chat endpoint encodes (no extra specials) is what r1jax trained on (bos + prompt).
    assert hf_tok.encode(text, add_special_tokens=False).ids == tok.encode(
        template.render_prompt(q, system), add_bos=True)
    # A raw completion prompt gets bos from the post-processor, as in training.
    assert hf_tok.encode(template.render_prompt(q)).ids == tok.encode(
        template.render_prompt(q), add_bos=True)
  for text in _corpus(seed=7, n=100) + ["héllo  wörld\n\n  日本 🙂", "<think>a</think>"]:
    ids = hf_tok.encode(text, add_special_tokens=False).ids
    assert ids == tok.encode(text)
    assert hf_tok.decode(ids, skip_special_tokens=False) == text


def test_sft_workdir_template_and_sharded_weights(tmp_path, sp_model):
  graphdef, params, cfg, _ = make_workdir(tmp_path / "wd", sp_model, stage="sft",
                                          template="plain")
  out = tmp_path / "export"
  res = export(tmp_path / "wd", out, ExportConfig(max_shard_size_gb=40_000 / 2**30, dtype="bfloat16"))
  assert res.template == "plain" and len(res.files) > 2
  assert (out / hf.INDEX_FILE).exists() and not (out / hf.SINGLE_FILE).exists()
  conf = json.loads((out / "config.json").read_text())
  assert conf["dtype"] == conf["torch_dtype"] == "bfloat16"
  loaded = hf.load_pretrained(str(out), dtype="float32")
  tokens, positions = _tokens(cfg)
  np.testing.assert_allclose(_logits(loaded, tokens, positions),
                             _logits(merge_params(graphdef, params), tokens, positions),
                             atol=0.1)  # bf16 weights
  info = json.loads((out / "r1jax_export.json").read_text())
  assert info["stage"] == "sft" and info["stop_strings"] == ["</answer>"]


def test_refuses_qwen2_with_non_default_head_dim(tmp_path, sp_model):
  make_workdir(tmp_path / "wd", sp_model, family="qwen2", head_dim=32)  # 4 heads x 32 != 64
  with pytest.raises(ValueError, match="head_dim=32.*Qwen2 ignores head_dim"):
    export(tmp_path / "wd", tmp_path / "export")
  assert not (tmp_path / "export").exists()
  with pytest.raises(ValueError, match="not an r1jax workdir"):
    export(tmp_path / "export", tmp_path / "x")


def test_cli_with_relative_paths(tmp_path, sp_model):
  make_workdir(tmp_path / "runs" / "quickstart" / "r1_zero", sp_model)
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
         "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run(
      [sys.executable, "-m", "r1jax.main", f"--config={REPO / 'configs' / 'export.py'}",
       "--config.init_from=runs/quickstart/r1_zero", "--workdir=runs/export"],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"vllm serve {tmp_path / 'runs' / 'export'} --served-model-name export" in proc.stdout
  assert (tmp_path / "runs" / "export" / "model.safetensors").exists()


# ----------------------------------------------------------------------------- chat models


def test_chat_model_keeps_its_own_template_and_all_tokenizer_files(tmp_path, sp_model):
  src = write_hf_tokenizer(tmp_path / "qwen_tok", "qwen", _corpus())
  make_workdir(tmp_path / "wd", sp_model, template="qwen2.5", tokenizer_src=src)
  # The workdir copy has every file (chat template, vocab.json, merges.txt).
  for name in ("chat_template.jinja", "vocab.json", "merges.txt", "tokenizer.json"):
    assert (tmp_path / "wd" / "tokenizer" / name).read_bytes() == (src / name).read_bytes()
  out = tmp_path / "export"
  res = export(tmp_path / "wd", out)
  assert res.template == "qwen2.5"
  assert (out / "chat_template.jinja").read_text() == QWEN_CHAT_TEMPLATE
  assert (out / "vocab.json").exists() and (out / "merges.txt").exists()
  tok = load_tokenizer(out)
  answer = tok.token_to_id("</answer>")
  gen = json.loads((out / "generation_config.json").read_text())
  assert gen["eos_token_id"] == [tok.token_to_id("<|im_end|>"), answer]
  assert "bos_token_id" not in gen


# ----------------------------------------------------------------------------- remote paths




def test_export_and_load_through_epath_only(tmp_path, sp_model):
  graphdef, params, cfg, tok = make_workdir(tmp_path / "wd", sp_model)
  src, out = NoLocalPath(tmp_path / "wd"), NoLocalPath(tmp_path / "export")
  with pytest.raises(TypeError):
    os.fspath(out)
  export(src, out)
  loaded = hf.load_pretrained(out)
  tokens, positions = _tokens(cfg)
  np.testing.assert_array_equal(_logits(loaded, tokens, positions),
                                _logits(merge_params(graphdef, params), tokens, positions))
  remote_tok = load_tokenizer(NoLocalPath(tmp_path / "export"))
  assert remote_tok.encode("1 + 2 = 3") == tok.encode("1 + 2 = 3")
  assert remote_tok.chat_template == (tmp_path / "export" / "chat_template.jinja").read_text()


# ----------------------------------------------------------------------------- transformers


def test_transformers_loads_the_export(tmp_path, sp_model):
  torch = pytest.importorskip("torch", reason="torch not installed (optional cross-check)")
  transformers = pytest.importorskip("transformers",
                                     reason="transformers not installed (optional cross-check)")
  graphdef, params, cfg, tok = make_workdir(tmp_path / "wd", sp_model, template="r1_zero")
  out = tmp_path / "export"
  export(tmp_path / "wd", out)
  model = transformers.AutoModelForCausalLM.from_pretrained(
      str(out), dtype=torch.float32, attn_implementation="eager").eval()
  tokens, positions = _tokens(cfg)
  with torch.no_grad():
    ref = model(input_ids=torch.tensor(tokens), position_ids=torch.tensor(positions)).logits
  np.testing.assert_allclose(_logits(merge_params(graphdef, params), tokens, positions),
                             ref.numpy(), rtol=1e-4, atol=1e-4)

  auto_tok = transformers.AutoTokenizer.from_pretrained(str(out))
  # transformers 5's AutoTokenizer swaps in its own byte-level Qwen2 tokenizer for every
  # model_type=qwen2 directory (it ignores tokenizer_class), which cannot express a
  # SentencePiece vocabulary; the tokenizer.json itself loads exactly with the generic class.
  fast_tok = transformers.PreTrainedTokenizerFast.from_pretrained(str(out))
  template = get_template("r1_zero")
  for q, system in [("What is 2 + 3?", None), ("Compute 4 * 2", "Be brief.")]:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": q}]
    for hf_tok in (auto_tok, fast_tok):
      text = hf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
      assert text == "<s>" + template.render_prompt(q, system)
    assert list(fast_tok(template.render_prompt(q, system)).input_ids) == tok.encode(
        template.render_prompt(q, system), add_bos=True)
    assert list(fast_tok.apply_chat_template(messages, add_generation_prompt=True,
                                             tokenize=True, return_dict=False)) == tok.encode(
        template.render_prompt(q, system), add_bos=True)
  gen = transformers.GenerationConfig.from_pretrained(str(out))
  assert gen.temperature == 0.6 and gen.top_p == 0.95
  assert tok.token_to_id("</answer>") in gen.eos_token_id
