"""Stop strings with real tokenizers: a Qwen2-like byte-level BPE where `</answer>` is not a
special token, and SentencePiece with and without `</answer>` as one piece."""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import stage_config as sc
from r1jax.rewards import build_reward_system
from r1jax.rl import losses
from r1jax.rl.experience import ExperienceMaker
from r1jax.rollout.sampler import FINISH_LENGTH, FINISH_STOP, Rollout, SamplerConfig
from r1jax.rollout.stops import apply_stops, cut_at_stop, stop_token_sequences
from r1jax.tokenizer import load_tokenizer, train_sentencepiece

STOP = "</answer>"
CORPUS = [f"<think> {a} plus {b} is {a + b}. </think> <answer> {a + b} </answer> done.\n"
          f"So the result is <answer>{a * b}</answer>. The answer: <answer>{a}.</answer>\n"
          f"(<answer>x</answer>) and then more text follows here"
          for a in range(30) for b in range(7)]


def _bpe(folder):
  """A byte-level BPE tokenizer.json (Qwen2-like pre-tokenizer; no special `</answer>`)."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_end|>"],
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(CORPUS, trainer)
  tok.save(str(folder / "tokenizer.json"))
  (folder / "tokenizer_config.json").write_text(json.dumps(
      {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}))
  return load_tokenizer(folder)


def _spm(folder, tag_piece: bool):
  symbols = ("<think>", "</think>", "<answer>", STOP) if tag_piece else ()
  return load_tokenizer(train_sentencepiece(CORPUS, folder / "m", vocab_size=400,
                                            user_defined_symbols=symbols))


_CACHE = {}
KINDS = ["bpe", "spm_tag_piece", "spm_plain"]


def _tok(kind, tmp_path_factory):
  if kind not in _CACHE:
    folder = tmp_path_factory.mktemp(kind)
    _CACHE[kind] = _bpe(folder) if kind == "bpe" else _spm(folder, kind == "spm_tag_piece")
  return _CACHE[kind]


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
  return _tok("bpe", tmp_path_factory)


@pytest.fixture(scope="module", params=KINDS)
def tok(request, tmp_path_factory):
  return _tok(request.param, tmp_path_factory)


def _is_suffix(seq, ids):
  return len(seq) <= len(ids) and tuple(ids[len(ids) - len(seq):]) == tuple(seq)


CONTEXT_TEXTS = ["<answer> 4 </answer>", "<answer>4</answer>", "<answer> 4.</answer>",
                 "(x</answer>", "<answer>\n4\n</answer>"]


def test_bpe_stop_string_depends_on_context(bpe):
  # The bug: the sampler registered tokenizer.encode("</answer>") alone, which is not how
  # the string ends a completion after a space or a period.
  alone = tuple(bpe.encode(STOP))
  assert len(alone) > 1
  misses = [t for t in CONTEXT_TEXTS if not _is_suffix(alone, bpe.encode(t))]
  assert misses, "the test tokenizer must merge </answer> with its left context"


@pytest.mark.parametrize("text", CONTEXT_TEXTS)
def test_registered_sequences_match_in_context(bpe, text):
  singles, seqs = stop_token_sequences(bpe, [STOP])
  ids = bpe.encode(text)
  assert any(_is_suffix(s, ids) for s in seqs) or ids[-1] in singles, (
      text, [bpe.id_to_token(i) for i in ids])


def test_no_sequence_fires_before_the_string_is_complete(bpe):
  _, seqs = stop_token_sequences(bpe, [STOP])
  for s in seqs:
    assert bpe.decode(list(s)).rstrip().endswith(STOP)


@pytest.mark.parametrize("text", CONTEXT_TEXTS)
def test_cut_at_stop_keeps_exactly_the_tokens_up_to_the_string(tok, text):
  ids = tok.encode(text + " then junk after the answer")
  cut_text, n = cut_at_stop(tok, ids, [STOP])
  assert cut_text.endswith(STOP)
  assert STOP in tok.decode(ids[:n]) and STOP not in tok.decode(ids[:n - 1])
  _, none = cut_at_stop(tok, tok.encode("no stop here"), [STOP])
  assert none is None


def test_registered_sequences_every_tokenizer(tok):
  singles, seqs = stop_token_sequences(tok, [STOP])
  for text in CONTEXT_TEXTS:
    ids = tok.encode(text)
    assert any(_is_suffix(s, ids) for s in seqs) or ids[-1] in singles, text


class _CannedSampler:
  """Returns fixed completions (a sampler that ran to max_new_tokens without stopping)."""

  def __init__(self, rows, pad):
    self.rows, self.pad = rows, pad

  def generate(self, params, prompt_ids, prompt_mask, rng, cfg):
    n, length = len(self.rows), max(len(r) for r in self.rows) + 2
    ids = np.full((n, length), self.pad, np.int32)
    mask = np.zeros((n, length), np.int32)
    for i, r in enumerate(self.rows):
      ids[i, :len(r)], mask[i, :len(r)] = r, 1
    lengths = mask.sum(1).astype(np.int32)
    lp = np.where(mask > 0, -1.0, 0.0).astype(np.float32)
    return Rollout(prompt_ids=jnp.asarray(np.repeat(prompt_ids, cfg.num_samples, 0)),
                   prompt_mask=jnp.asarray(np.repeat(prompt_mask, cfg.num_samples, 0)),
                   completion_ids=jnp.asarray(ids), completion_mask=jnp.asarray(mask),
                   lengths=jnp.asarray(lengths),
                   finish_reason=jnp.full((n,), FINISH_LENGTH, jnp.int32),
                   logprobs=jnp.asarray(lp), sampling_logprobs=jnp.asarray(lp),
                   num_steps=jnp.int32(length))


def test_grpo_step_masks_everything_after_the_stop_string(tok):
  texts = ["<think> 2 plus 2 </think> <answer> 4 </answer> and junk junk junk",
           "<think> hmm </think> <answer>5.</answer>(more junk)",
           "<think> no answer tag at all and it runs on",
           "<answer>3</answer>"]
  rows = [tok.encode(t) for t in texts]
  rl = dataclasses.replace(sc.RLConfig(), group_size=4, num_prompts=1, sample_chunks=1)
  scfg = SamplerConfig(num_samples=4, max_new_tokens=64)
  rewards = build_reward_system({"weights": {"format": 1.0}, "num_workers": 0})
  maker = ExperienceMaker(_CannedSampler(rows, int(tok.pad_id or 0)), scfg, tok, rewards, rl)
  batch = {"prompt_ids": np.ones((1, 3), np.int32), "prompt_mask": np.ones((1, 3), np.int32),
           "question": ["q"], "answer": ["4"]}
  exp = maker.make(None, batch, jax.random.key(0))
  rewards.close()
  mask = np.asarray(exp.rollout.completion_mask)
  for r, text in enumerate(texts):
    kept = tok.decode(np.asarray(exp.rollout.completion_ids)[r][mask[r] > 0].tolist())
    if STOP in text:
      assert kept.endswith(STOP) or kept.rstrip().endswith(STOP), kept
      assert "junk" not in kept and "more" not in kept
      assert not exp.truncated[r] and int(exp.rollout.finish_reason[r]) == FINISH_STOP
    else:
      assert mask[r].sum() == len(rows[r]) and exp.truncated[r]
    assert exp.lengths[r] == mask[r].sum() == int(exp.rollout.lengths[r])
    assert STOP not in exp.texts[r] or exp.texts[r].endswith(STOP)
  # The loss: tokens after </answer> get no gradient.
  cfg = losses.LossConfig()
  ro = exp.rollout
  b = {"completion_mask": ro.completion_mask, "advantages": jnp.asarray([1.0, -1.0, 0.5, 1.0]),
       "old_logprobs": ro.logprobs}
  logp = jnp.full(ro.completion_mask.shape, -1.0)
  g = jax.grad(lambda lp: losses.grpo_loss_from_logprobs(lp, b, cfg)[0])(logp)
  g = np.asarray(g)
  assert np.all(g[mask == 0] == 0.0) and np.all(g[mask > 0] != 0.0)


def test_apply_stops_without_stop_strings_keeps_rows(bpe):
  ids = np.asarray([bpe.encode("a </answer> b") + [0, 0]])
  texts, lengths, stopped = apply_stops(bpe, ids, np.asarray([ids.shape[1] - 2]), ())
  assert lengths[0] == ids.shape[1] - 2 and not stopped[0] and "b" in texts[0]
