"""Tokenizer: SentencePiece and tokenizer.json backends behind one interface."""
import json

import numpy as np
import pytest

from r1jax.tokenizer import (HFTokenizer, R1_TAGS, SentencePieceTokenizer, load_tokenizer,
                             train_sentencepiece)

CORPUS = [
    'Compute (3 + 4) * 2 - 5.\n<think> 3 + 4 = 7. 7 * 2 = 14. 14 - 5 = 9. </think> '
    '<answer> 9 </answer>',
    'Using the numbers [44, 19, 35], create an equation that equals 98.',
    'The quick brown fox jumps over the lazy dog.',
] * 20 + [f'Line {i}: a conversation between User and Assistant.' for i in range(50)]


@pytest.fixture(scope='module')
def sp(tmp_path_factory):
  path = train_sentencepiece(CORPUS, tmp_path_factory.mktemp('sp') / 'tiny', vocab_size=320)
  return load_tokenizer(path)


def test_sentencepiece_special_tokens(sp):
  assert isinstance(sp, SentencePieceTokenizer)
  assert (sp.pad_id, sp.eos_id, sp.bos_id) == (0, 1, 2)
  assert sp.eos_ids == (1,)
  assert sp.vocab_size == 320
  assert set(sp.special_ids) == set(R1_TAGS)
  for tag, idx in sp.special_ids.items():
    assert sp.encode(tag) == [idx]
    assert sp.id_to_token(idx) == tag
  ids = sp.encode('<think> x </think><answer>5</answer>')
  for tag in R1_TAGS:
    assert sp.special_ids[tag] in ids


@pytest.mark.parametrize('text', [
    'hello  world\n\nfoo', ' leading space and trailing ', 'tab\there',
    'unicode: é 漢字 🙂 (byte fallback)', '<think> 12345 </think> <answer> -7 </answer>'])
def test_sentencepiece_round_trip(sp, text):
  assert sp.decode(sp.encode(text)) == text
  ids = sp.encode(text, add_bos=True)
  assert ids[0] == sp.bos_id
  assert sp.decode(ids, skip_special_tokens=True) == text
  assert sp.decode(ids) == '<s>' + text


def test_sentencepiece_splits_digits(sp):
  pieces = [sp.id_to_token(i) for i in sp.encode('12345')]
  assert ''.join(pieces) == '12345' and len(pieces) == 5


def test_decode_strips_pad_and_stops_at_eos(sp):
  ids = sp.encode('a dog')
  assert sp.decode([sp.pad_id] * 3 + ids + [sp.pad_id] * 2) == 'a dog'
  assert sp.decode(ids + [sp.eos_id] + sp.encode(' more'), stop_at_eos=True) == 'a dog'
  assert sp.decode(ids + [sp.eos_id], skip_special_tokens=True) == 'a dog'


def test_encode_batch_left_pad_and_truncation(sp):
  texts = ['a dog', 'The quick brown fox jumps over the lazy dog.']
  long_ids = sp.encode(texts[1], add_bos=True)
  T = 8
  assert len(long_ids) > T
  ids, mask, dropped = sp.encode_batch(texts, T, add_bos=True, return_num_truncated=True)
  assert ids.shape == mask.shape == (2, T) and ids.dtype == mask.dtype == np.int32
  short = sp.encode(texts[0], add_bos=True)
  np.testing.assert_array_equal(ids[0, T - len(short):], short)
  assert (ids[0, :T - len(short)] == sp.pad_id).all()
  np.testing.assert_array_equal(mask[0], [0] * (T - len(short)) + [1] * len(short))
  # Left truncation keeps bos and the end of the prompt.
  assert ids[1, 0] == sp.bos_id
  np.testing.assert_array_equal(ids[1, 1:], long_ids[-(T - 1):])
  assert mask[1].all()
  np.testing.assert_array_equal(dropped, [0, len(long_ids) - T])
  assert sp.decode_batch(ids, mask, skip_special_tokens=True)[0] == 'a dog'


def test_encode_batch_right_pad_and_error(sp):
  ids, mask = sp.encode_batch(['a dog', 'The quick brown fox jumps'], 6, left_pad=False)
  n = len(sp.encode('a dog'))
  assert mask[0, :n].all() and not mask[0, n:].any()
  np.testing.assert_array_equal(ids[1], sp.encode('The quick brown fox jumps')[:6])
  with pytest.raises(ValueError, match='more than max_len'):
    sp.encode_batch(['The quick brown fox jumps'], 4, truncation='error')


def _train_hf(folder, configs=True, llama=False):
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  specials = (['<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>'] if llama
              else ['<|endoftext|>', '<|im_start|>', '<|im_end|>'])
  trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(CORPUS, trainer)
  tok.add_tokens(['<think>', '</think>'])  # Qwen3 style: added, not special
  folder.mkdir(parents=True, exist_ok=True)
  tok.save(str(folder / 'tokenizer.json'))
  if configs and not llama:
    (folder / 'tokenizer_config.json').write_text(json.dumps(
        {'bos_token': None, 'eos_token': '<|im_end|>', 'pad_token': '<|endoftext|>'}))
    eos, end = tok.token_to_id('<|im_end|>'), tok.token_to_id('<|endoftext|>')
    # As in Qwen2.5: generation_config names a bos id that the tokenizer never uses.
    (folder / 'generation_config.json').write_text(json.dumps(
        {'bos_token_id': end, 'pad_token_id': end, 'eos_token_id': [eos, end]}))
  if configs and llama:
    (folder / 'special_tokens_map.json').write_text(json.dumps(
        {'bos_token': {'content': '<|begin_of_text|>'}, 'eos_token': '<|eot_id|>'}))
  return tok


def test_hf_qwen_like(tmp_path):
  raw = _train_hf(tmp_path / 'qwen')
  tok = load_tokenizer(tmp_path / 'qwen')
  assert isinstance(tok, HFTokenizer)
  im_end, endoftext = raw.token_to_id('<|im_end|>'), raw.token_to_id('<|endoftext|>')
  assert tok.bos_id is None
  assert tok.eos_id == im_end and tok.eos_ids == (im_end, endoftext)
  assert tok.pad_id == endoftext
  assert tok.vocab_size == raw.get_vocab_size(with_added_tokens=True)
  assert set(tok.special_ids) == {'<think>', '</think>'}
  text = '<|im_start|>user\nCompute 3 + 4.<|im_end|>\n<think> 7 </think>'
  ids = tok.encode(text)
  assert ids.count(raw.token_to_id('<|im_start|>')) == 1 and im_end in ids
  assert tok.decode(ids) == text
  assert '<|im_end|>' not in tok.decode(ids, skip_special_tokens=True)
  assert '<think>' in tok.decode(ids, skip_special_tokens=True)
  with pytest.raises(ValueError, match='no bos'):
    tok.encode('x', add_bos=True)
  ids_BT, mask_BT = tok.encode_batch(['a dog', 'The quick brown fox'], 32)
  assert (ids_BT[mask_BT == 0] == endoftext).all()
  assert tok.decode_batch(ids_BT, mask_BT) == ['a dog', 'The quick brown fox']
  # Via the file path, and explicit overrides.
  tok2 = load_tokenizer(tmp_path / 'qwen' / 'tokenizer.json', eos_token='<|endoftext|>')
  assert tok2.eos_ids == (endoftext,)


def test_hf_llama_like_and_fallbacks(tmp_path):
  raw = _train_hf(tmp_path / 'llama', llama=True)
  tok = load_tokenizer(tmp_path / 'llama')
  assert tok.bos_id == raw.token_to_id('<|begin_of_text|>')
  assert tok.eos_ids == (raw.token_to_id('<|eot_id|>'),)
  assert tok.pad_id == tok.eos_id  # no pad: falls back to eos
  assert tok.encode('a dog', add_bos=True)[0] == tok.bos_id
  assert tok.encode('a dog') == raw.encode('a dog', add_special_tokens=False).ids
  # Without any config file, eos is guessed from the usual names.
  _train_hf(tmp_path / 'bare', configs=False)
  bare = load_tokenizer(tmp_path / 'bare')
  assert bare.eos_id == bare.token_to_id('<|endoftext|>') and bare.pad_id == bare.eos_id


def test_load_tokenizer_errors(tmp_path):
  with pytest.raises(FileNotFoundError):
    load_tokenizer(tmp_path / 'missing.model')
  with pytest.raises(FileNotFoundError, match='neither'):
    load_tokenizer(tmp_path)
  (tmp_path / 'x.txt').write_text('')
  with pytest.raises(ValueError, match='Cannot tell'):
    load_tokenizer(tmp_path / 'x.txt')
  with pytest.raises(ValueError, match='empty corpus'):
    train_sentencepiece([], tmp_path / 'empty', 300)


def test_decode_ignores_ids_outside_the_vocabulary(tmp_path):
  from r1jax.tokenizer import load_tokenizer, train_sentencepiece
  path = train_sentencepiece(['1 + 2 = 3. <think> x </think>'] * 20, tmp_path / 'sp', vocab_size=300)
  tok = load_tokenizer(path)
  ids = tok.encode('1 + 2')
  assert tok.decode(ids + [tok.vocab_size + 5, 10**6, -1]) == tok.decode(ids) == '1 + 2'


def test_workdir_copy_keeps_every_tokenizer_file(tmp_path):
  from hf_tokenizers import write_hf_tokenizer
  from r1jax import experiment
  from r1jax.tokenizer import TOKENIZER_FILES, copy_tokenizer_files, read_chat_template
  src = write_hf_tokenizer(tmp_path / 'qwen', 'qwen')
  (src / 'notes.txt').write_text('not a tokenizer file')
  (src / 'extra.tiktoken').write_text('x')
  config = {'tokenizer': {'path': str(src)}}
  tok = experiment.get_tokenizer(config, tmp_path / 'wd')
  dst = tmp_path / 'wd' / 'tokenizer'
  for name in ('tokenizer.json', 'tokenizer_config.json', 'vocab.json', 'merges.txt',
               'chat_template.jinja', 'extra.tiktoken'):
    assert (dst / name).read_bytes() == (src / name).read_bytes(), name
  assert not (dst / 'notes.txt').exists()
  assert load_tokenizer(dst).chat_template == tok.chat_template == read_chat_template(src)
  assert 'chat_template.jinja' in TOKENIZER_FILES
  # tokenizer_config.json's chat_template (a string, or a list of named ones) when no .jinja.
  (dst / 'chat_template.jinja').unlink()
  assert read_chat_template(dst) is None
  cfg = json.loads((dst / 'tokenizer_config.json').read_text())
  cfg['chat_template'] = [{'name': 'tool_use', 'template': 'T'}, {'name': 'default',
                                                                  'template': 'D'}]
  (dst / 'tokenizer_config.json').write_text(json.dumps(cfg))
  assert read_chat_template(dst) == 'D' and load_tokenizer(dst).chat_template == 'D'
  assert copy_tokenizer_files(dst, tmp_path / 'again') == [
      'tokenizer.json', 'tokenizer_config.json', 'vocab.json', 'merges.txt', 'extra.tiktoken']
