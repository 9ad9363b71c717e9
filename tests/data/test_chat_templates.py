"""Chat models render prompts with their tokenizer's own jinja chat template; base models keep
the plain R1-Zero templates; a plain template written out as jinja renders the same prompts."""
import numpy as np
import pytest

from hf_tokenizers import write_hf_tokenizer
from r1jax.data.pipeline import make_prompt_iterator
from r1jax.data.templates import for_tokenizer, get_template, list_templates, render_chat
from r1jax.tokenizer import load_tokenizer, train_sentencepiece

QUESTIONS = [("What is 2 + 3?", None), ("Compute (4 - 1) * 2", "Answer briefly."),
             ('quotes " and \\ and {braces} 日本', None)]


@pytest.fixture(scope="module")
def toks(tmp_path_factory):
  root = tmp_path_factory.mktemp("toks")
  return {k: load_tokenizer(write_hf_tokenizer(root / k, k)) for k in ("qwen", "llama",
                                                                      "r1_distill")}


def test_qwen_template_from_the_tokenizer_matches_the_hand_written_one(toks):
  tok = toks["qwen"]
  assert tok.chat_template is not None
  t = for_tokenizer("qwen2.5", tok)
  assert t.chat_template == tok.chat_template and not t.includes_bos
  for q, system in QUESTIONS:
    assert t.render_prompt(q, system) == get_template("qwen2.5").render_prompt(q, system)
  # 'chatml' has no default system prompt; Qwen's own template adds its default one.
  assert for_tokenizer("chatml", tok).render_prompt("hi").startswith(
      "<|im_start|>system\nYou are Qwen")


def test_llama31_date_header_comes_from_the_tokenizer(toks):
  tok = toks["llama"]
  t = for_tokenizer("llama3", tok)
  text = t.render_prompt("What is 2 + 3?")
  assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                         "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n")
  assert text.endswith("What is 2 + 3?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
  assert "Cutting Knowledge" not in get_template("llama3").render_prompt("What is 2 + 3?")
  # The template renders bos itself, so encoding must not add another one.
  assert t.includes_bos
  batch = next(iter(make_prompt_iterator([{"id": "0", "question": "What is 2 + 3?",
                                           "answer": "5"}], tok, "llama3", batch_size=1,
                                         max_prompt_len=96, shuffle=False, repeat=False,
                                         shard_by_process=False)))
  ids = batch["prompt_ids"][0][batch["prompt_mask"][0] == 1]
  assert int(np.sum(ids == tok.bos_id)) == 1 and ids[0] == tok.bos_id
  assert batch["prompt_text"][0] == text


def test_r1_distill_prompt_opening_think_is_detected(toks):
  t = for_tokenizer("r1_distill", toks["r1_distill"])
  text = t.render_prompt("What is 2 + 3?")
  assert text.endswith("<｜Assistant｜><think>\n") and t.prompt_opens_think
  assert t.response_prefix == "<think>\n" and t.full_response("x") == "<think>\nx"


def test_plain_templates_and_tokenizers_without_a_template_are_kept(toks, tmp_path):
  assert for_tokenizer("r1_zero", toks["qwen"]) == get_template("r1_zero")
  sp = load_tokenizer(train_sentencepiece(["1 + 2 = 3 <think> </think>"] * 20,
                                          tmp_path / "sp", 300))
  assert sp.chat_template is None
  assert for_tokenizer("qwen2.5", sp) == get_template("qwen2.5")


@pytest.mark.parametrize("name", list_templates())
def test_every_template_as_jinja_renders_its_prompts(name):
  t = get_template(name)
  for add_bos in (False, True):
    jinja = t.to_jinja(add_bos_token=add_bos)
    for q, system in QUESTIONS:
      messages = ([{"role": "system", "content": system}] if system else []) + [
          {"role": "user", "content": q}]
      got = render_chat(jinja, messages, add_generation_prompt=True, bos_token="<s>")
      assert got == ("<s>" if add_bos else "") + t.render_prompt(q, system)


def test_to_jinja_multi_turn_and_bad_roles():
  jinja = get_template("r1_zero_bare").to_jinja()
  text = render_chat(jinja, [{"role": "user", "content": "1+1?"},
                             {"role": "assistant", "content": "<answer> 2 </answer>"},
                             {"role": "user", "content": "2+2"}])
  assert text == "User: 1+1? Assistant:<answer> 2 </answer>User: 2+2. Assistant:"
  with pytest.raises(Exception, match="roles"):
    render_chat(jinja, [{"role": "tool", "content": "x"}])


def test_transformers_renders_the_same(toks, tmp_path):
  transformers = pytest.importorskip("transformers", reason="transformers not installed")
  for kind, name in (("qwen", "qwen2.5"), ("llama", "llama3"), ("r1_distill", "r1_distill")):
    folder = write_hf_tokenizer(tmp_path / kind, kind)
    hf_tok = transformers.PreTrainedTokenizerFast.from_pretrained(str(folder))
    t = for_tokenizer(name, load_tokenizer(folder))
    for q, system in QUESTIONS:
      if kind == "r1_distill" and system:
        continue  # its template drops system messages
      messages = ([{"role": "system", "content": system}] if system else []) + [
          {"role": "user", "content": q}]
      assert hf_tok.apply_chat_template(messages, tokenize=False,
                                        add_generation_prompt=True) == t.render_prompt(q, system)
