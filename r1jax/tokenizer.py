"""One tokenizer interface over SentencePiece `.model` files and Hugging Face `tokenizer.json`.

Special tokens are explicit: `encode` never adds bos/eos on its own (pass `add_bos=True`), and
the R1 tags (`<think>`, `</think>`, `<answer>`, `</answer>`) are reported in `special_ids` only
when the vocabulary encodes them as one token.

  tok = load_tokenizer('/ckpt/Qwen2.5-0.5B-Instruct')       # HF directory (tokenizer.json)
  tok = load_tokenizer('/tmp/tiny.model')                   # SentencePiece
  ids_BT, mask_BT = tok.encode_batch(prompts, max_len=256)  # left padded, keeps the end

`train_sentencepiece` trains a small model offline (byte fallback, digits split, R1 tags as
user-defined symbols) for the tiny demo and test models; `sentencepiece_to_hf` writes such a model
as Hugging Face tokenizer files (tokenizer.json etc.), so transformers and vLLM can load an export.

All file access goes through `etils.epath`, so tokenizers load from and copy to `gs://` paths.
"""
from __future__ import annotations

import json
import logging
import os
import pathlib
from typing import Iterable, Sequence

import numpy as np
from etils import epath

R1_TAGS = ('<think>', '</think>', '<answer>', '</answer>')

# Names tried, in order, when a Hugging Face directory does not say which token ends text.
_EOS_CANDIDATES = ('<|endoftext|>', '<|end_of_text|>', '<｜end▁of▁sentence｜>', '</s>', '<eos>',
                   '<|eot_id|>', '<|im_end|>')

# Every file a Hugging Face tokenizer directory may hold (plus any *.model / *.tiktoken):
# copied whole into a workdir, so an export carries the chat template and BPE files too.
TOKENIZER_FILES = ('tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json',
                   'added_tokens.json', 'generation_config.json', 'vocab.json', 'merges.txt',
                   'vocab.txt', 'chat_template.jinja', 'chat_template.json', 'tokenizer.model')
_TOKENIZER_GLOBS = ('*.model', '*.tiktoken')


class Tokenizer:
  """Base class: subclasses implement `_encode`, `_decode`, `token_to_id`, `id_to_token`.

  Attributes:
    vocab_size: number of ids the tokenizer can produce (including added tokens).
    bos_id: beginning-of-sequence id, or None when the model has none (Qwen).
    eos_id: the primary end-of-sequence id (appended to SFT completions).
    eos_ids: all ids that stop generation (e.g. Qwen `<|im_end|>` and `<|endoftext|>`).
    pad_id: padding id; falls back to `eos_id` when the tokenizer has none.
    special_ids: {tag: id} for the R1 tags that exist as single tokens.
    chat_template: the tokenizer's own jinja chat template (Hugging Face directories), else None.
  """

  backend: str = ''
  chat_template: str | None = None
  vocab_size: int
  bos_id: int | None
  eos_id: int
  eos_ids: tuple[int, ...]
  pad_id: int
  special_ids: dict[str, int]

  # --- backend hooks -----------------------------------------------------------------------
  def _encode(self, text: str) -> list[int]:
    raise NotImplementedError

  def _decode(self, ids: list[int], skip_special_tokens: bool) -> str:
    raise NotImplementedError

  def token_to_id(self, token: str) -> int | None:
    raise NotImplementedError

  def id_to_token(self, idx: int) -> str:
    raise NotImplementedError

  # --- shared ------------------------------------------------------------------------------
  def _init_special(self, bos_id: int | None, eos_ids: Sequence[int], pad_id: int | None):
    if not eos_ids:
      raise ValueError(f'{type(self).__name__}: no eos token found; pass eos_token explicitly.')
    self.bos_id = bos_id
    self.eos_ids = tuple(dict.fromkeys(int(i) for i in eos_ids))
    self.eos_id = self.eos_ids[0]
    self.pad_id = self.eos_id if pad_id is None else int(pad_id)
    self.special_ids = {}
    for tag in R1_TAGS:
      idx = self.token_to_id(tag)
      if idx is not None and self._encode(tag) == [idx]:
        self.special_ids[tag] = idx

  def encode(self, text: str, add_bos: bool = False) -> list[int]:
    """Encodes text without any implicit special tokens; prepends bos when asked."""
    ids = self._encode(text)
    if add_bos:
      if self.bos_id is None:
        raise ValueError('add_bos=True but this tokenizer has no bos token.')
      ids = [self.bos_id] + ids
    return ids

  def decode(self, ids: Iterable[int], skip_special_tokens: bool = False,
             stop_at_eos: bool = False) -> str:
    """Decodes ids. Padding is stripped: every pad id when pad differs from eos, else the
    trailing run of pad ids. With `stop_at_eos`, everything from the first eos on is dropped."""
    ids = [int(i) for i in np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids)
           .reshape(-1)]
    if stop_at_eos:
      for n, i in enumerate(ids):
        if i in self.eos_ids:
          ids = ids[:n]
          break
    if self.pad_id in self.eos_ids:
      while ids and ids[-1] == self.pad_id:
        ids.pop()
    else:
      ids = [i for i in ids if i != self.pad_id]
    # Models often have more embeddings than the tokenizer has pieces (Qwen pads its vocab
    # to a multiple of 128); a sampled id outside the tokenizer decodes to nothing rather
    # than crashing the host side of a training step.
    ids = [i for i in ids if 0 <= i < self.vocab_size]
    return self._decode(ids, skip_special_tokens)

  def encode_batch(self, texts: Sequence[str], max_len: int, left_pad: bool = True,
                   add_bos: bool = False, truncation: str | None = None,
                   return_num_truncated: bool = False):
    """Encodes and pads a batch to exactly `max_len` tokens.

    Args:
      texts: B strings.
      max_len: T, the static length of the output.
      left_pad: pad on the left (prompts for generation) or on the right.
      add_bos: prepend bos to each sequence (kept when truncating from the left).
      truncation: 'left' (keep the end; default for left padding), 'right' (keep the start;
        default for right padding) or 'error' (raise ValueError naming the longest example).
      return_num_truncated: also return the number of dropped tokens per row, int32 [B].

    Returns:
      ids int32 [B, T] (pad_id where padded), mask int32 [B, T] (1 on real tokens)[, dropped [B]].
    """
    if truncation is None:
      truncation = 'left' if left_pad else 'right'
    if truncation not in ('left', 'right', 'error'):
      raise ValueError(f"truncation must be 'left', 'right' or 'error', got {truncation!r}")
    B = len(texts)
    ids_BT = np.full((B, max_len), self.pad_id, np.int32)
    mask_BT = np.zeros((B, max_len), np.int32)
    dropped_B = np.zeros((B,), np.int32)
    for b, text in enumerate(texts):
      ids = self.encode(text, add_bos=add_bos)
      ids, dropped_B[b] = truncate(ids, max_len, truncation,
                                   keep_first=int(add_bos), what=f'text {b}')
      n = len(ids)
      if left_pad:
        ids_BT[b, max_len - n:] = ids
        mask_BT[b, max_len - n:] = 1
      else:
        ids_BT[b, :n] = ids
        mask_BT[b, :n] = 1
    if dropped_B.any():
      logging.warning('encode_batch: %d of %d texts longer than %d tokens were truncated '
                      '(%s; up to %d tokens dropped).', int((dropped_B > 0).sum()), B, max_len,
                      truncation, int(dropped_B.max()))
    if return_num_truncated:
      return ids_BT, mask_BT, dropped_B
    return ids_BT, mask_BT

  def decode_batch(self, ids_BT: np.ndarray, mask_BT: np.ndarray | None = None,
                   skip_special_tokens: bool = False, stop_at_eos: bool = False) -> list[str]:
    """Decodes each row of ids [B, T], keeping only positions where mask [B, T] is nonzero."""
    ids_BT = np.asarray(ids_BT)
    out = []
    for b in range(ids_BT.shape[0]):
      row = ids_BT[b] if mask_BT is None else ids_BT[b][np.asarray(mask_BT[b]) != 0]
      out.append(self.decode(row, skip_special_tokens=skip_special_tokens,
                             stop_at_eos=stop_at_eos))
    return out

  def __repr__(self):
    return (f'{type(self).__name__}(vocab_size={self.vocab_size}, bos_id={self.bos_id}, '
            f'eos_ids={self.eos_ids}, pad_id={self.pad_id}, special_ids={self.special_ids})')


def truncate(ids: list[int], max_len: int, truncation: str, keep_first: int = 0,
             what: str = 'sequence') -> tuple[list[int], int]:
  """Cuts `ids` to `max_len`; 'left' keeps the end (and the first `keep_first` ids, e.g. bos)."""
  n = len(ids)
  if n <= max_len:
    return ids, 0
  if truncation == 'error':
    raise ValueError(f'{what} has {n} tokens, more than max_len={max_len}.')
  if truncation == 'left':
    keep_first = min(keep_first, max_len)
    return ids[:keep_first] + ids[n - (max_len - keep_first):], n - max_len
  return ids[:max_len], n - max_len


class SentencePieceTokenizer(Tokenizer):
  """SentencePiece `.model` backend."""

  backend = 'sentencepiece'

  def __init__(self, path: str | os.PathLike):
    import sentencepiece as spm  # pylint: disable=import-outside-toplevel
    self.path = str(path)
    # From bytes, not a file name: the model may live on gs://.
    self._sp = spm.SentencePieceProcessor(model_proto=epath.Path(path).read_bytes())
    self.vocab_size = int(self._sp.get_piece_size())
    bos = self._sp.bos_id()
    eos = self._sp.eos_id()
    pad = self._sp.pad_id()
    if eos < 0:
      raise ValueError(f'{path}: sentencepiece model has no eos token (eos_id=-1).')
    self._init_special(bos if bos >= 0 else None, [eos], pad if pad >= 0 else None)

  def _encode(self, text: str) -> list[int]:
    return list(self._sp.encode(text))

  def _decode(self, ids: list[int], skip_special_tokens: bool) -> str:
    if skip_special_tokens:
      return self._sp.decode([i for i in ids if not self._sp.is_control(i)])
    # sentencepiece drops control ids (bos/eos/pad) silently; render them as their pieces.
    out, run = [], []
    for i in ids:
      if self._sp.is_control(i):
        out.append(self._sp.decode(run) if run else '')
        out.append(self._sp.id_to_piece(i))
        run = []
      else:
        run.append(i)
    out.append(self._sp.decode(run) if run else '')
    return ''.join(out)

  def token_to_id(self, token: str) -> int | None:
    idx = self._sp.piece_to_id(token)
    if self._sp.id_to_piece(idx) != token:
      return None
    return int(idx)

  def id_to_token(self, idx: int) -> str:
    return self._sp.id_to_piece(int(idx))


def _token_content(value) -> str | None:
  if value is None:
    return None
  if isinstance(value, dict):
    return value.get('content')
  return str(value)


class HFTokenizer(Tokenizer):
  """Hugging Face `tokenizer.json` backend (the `tokenizers` library; Qwen, Llama 3, R1-Distill).

  Special tokens come from the files next to `tokenizer.json`: bos and pad from
  `special_tokens_map.json` / `tokenizer_config.json` (generation_config ids only when neither
  exists); eos ids are the configured eos token followed by `generation_config.json`'s
  `eos_token_id` (int or list). Explicit arguments override all of them.
  """

  backend = 'huggingface'

  def __init__(self, path: str | os.PathLike, bos_token: str | None = None,
               eos_token: str | Sequence[str] | None = None, pad_token: str | None = None):
    import tokenizers  # pylint: disable=import-outside-toplevel
    path = epath.Path(path)
    file = path / 'tokenizer.json' if path.is_dir() else path
    if not file.exists():
      raise FileNotFoundError(f'No tokenizer.json at {file}.')
    self.path = str(file)
    self._tok = tokenizers.Tokenizer.from_str(file.read_text(encoding='utf-8'))
    self.vocab_size = int(self._tok.get_vocab_size(with_added_tokens=True))

    folder = file.parent
    names: dict[str, str | None] = {'bos': None, 'eos': None, 'pad': None}
    for cfg_name in ('special_tokens_map.json', 'tokenizer_config.json'):
      cfg = _read_json(folder / cfg_name)
      for key in names:
        content = _token_content(cfg.get(f'{key}_token'))
        if content:
          names[key] = content
    gen = _read_json(folder / 'generation_config.json')

    def lookup(token: str, what: str) -> int:
      idx = self._tok.token_to_id(token)
      if idx is None:
        raise ValueError(f'{file}: {what} token {token!r} is not in the vocabulary.')
      return int(idx)

    bos_id = lookup(names['bos'], 'bos') if names['bos'] else None
    has_tokenizer_cfg = any((folder / n).exists()
                            for n in ('special_tokens_map.json', 'tokenizer_config.json'))
    if bos_id is None and not has_tokenizer_cfg and gen.get('bos_token_id') is not None:
      # Only without tokenizer configs: Qwen's generation_config names a bos that the
      # tokenizer never adds (tokenizer_config says bos_token: null).
      bos_id = int(gen['bos_token_id'])
    if bos_token is not None:
      bos_id = lookup(bos_token, 'bos')

    eos_ids: list[int] = []
    if eos_token is not None:
      eos_ids = [lookup(t, 'eos') for t in ([eos_token] if isinstance(eos_token, str)
                                            else eos_token)]
    else:
      if names['eos']:
        eos_ids.append(lookup(names['eos'], 'eos'))
      gen_eos = gen.get('eos_token_id')
      if gen_eos is not None:
        eos_ids += [int(i) for i in (gen_eos if isinstance(gen_eos, list) else [gen_eos])]
      if not eos_ids:
        eos_ids = [int(self._tok.token_to_id(t)) for t in _EOS_CANDIDATES
                   if self._tok.token_to_id(t) is not None][:1]

    pad_id = lookup(names['pad'], 'pad') if names['pad'] else None
    if gen.get('pad_token_id') is not None and pad_token is None and pad_id is None:
      pad_id = int(gen['pad_token_id'])
    if pad_token is not None:
      pad_id = lookup(pad_token, 'pad')
    self._init_special(bos_id, eos_ids, pad_id)
    self.chat_template = read_chat_template(folder)

  def _encode(self, text: str) -> list[int]:
    return list(self._tok.encode(text, add_special_tokens=False).ids)

  def _decode(self, ids: list[int], skip_special_tokens: bool) -> str:
    return self._tok.decode(ids, skip_special_tokens=skip_special_tokens)

  def token_to_id(self, token: str) -> int | None:
    idx = self._tok.token_to_id(token)
    return None if idx is None else int(idx)

  def id_to_token(self, idx: int) -> str:
    return self._tok.id_to_token(int(idx))


def _read_json(path: epath.Path) -> dict:
  if not path.exists():
    return {}
  return json.loads(path.read_text(encoding='utf-8'))


def read_chat_template(folder: str | os.PathLike) -> str | None:
  """The jinja chat template of a Hugging Face tokenizer directory, or None.

  `chat_template.jinja` (transformers >= 4.50 writes it) wins over the `chat_template` key of
  tokenizer_config.json (a string, or a list of named templates: the one named 'default').
  """
  folder = epath.Path(folder)
  if (folder / 'chat_template.jinja').exists():
    return (folder / 'chat_template.jinja').read_text(encoding='utf-8')
  template = _read_json(folder / 'tokenizer_config.json').get('chat_template')
  if isinstance(template, list):
    template = next((t.get('template') for t in template if t.get('name') == 'default'), None)
  return template if isinstance(template, str) and template else None


def copy_tokenizer_files(src: str | os.PathLike, dst: str | os.PathLike) -> list[str]:
  """Copies every tokenizer file of directory `src` (see TOKENIZER_FILES) into `dst`.

  Returns the names copied. Works across backends (e.g. a local `src` and a gs:// `dst`).
  """
  src, dst = epath.Path(src), epath.Path(dst)
  names = [n for n in TOKENIZER_FILES if (src / n).exists()]
  for pattern in _TOKENIZER_GLOBS:
    names += sorted(p.name for p in src.glob(pattern) if p.name not in names)
  dst.mkdir(parents=True, exist_ok=True)
  for n in names:
    (dst / n).write_bytes((src / n).read_bytes())
  return names


def load_tokenizer(path: str | os.PathLike, **kwargs) -> Tokenizer:
  """Loads a tokenizer: a `.model` file (SentencePiece), a `tokenizer.json` file, or a directory
  holding `tokenizer.json` (preferred) or `tokenizer.model`. kwargs go to the HF backend."""
  p = epath.Path(path)
  if p.is_dir():
    if (p / 'tokenizer.json').exists():
      return HFTokenizer(p, **kwargs)
    if (p / 'tokenizer.model').exists():
      return SentencePieceTokenizer(p / 'tokenizer.model')
    raise FileNotFoundError(f'{p} has neither tokenizer.json nor tokenizer.model.')
  if not p.exists():
    raise FileNotFoundError(f'No tokenizer at {p}.')
  if p.suffix == '.json':
    return HFTokenizer(p, **kwargs)
  if p.suffix == '.model':
    return SentencePieceTokenizer(p)
  raise ValueError(f'Cannot tell the tokenizer type of {p}: expected a .model or .json file '
                   'or a directory.')


def train_sentencepiece(texts: Iterable[str], out_prefix: str | os.PathLike, vocab_size: int,
                        user_defined_symbols: Sequence[str] = R1_TAGS, split_digits: bool = True,
                        model_type: str = 'bpe', byte_fallback: bool = True,
                        character_coverage: float = 1.0, max_sentence_length: int = 1 << 16,
                        num_threads: int = 1, **extra) -> str:
  """Trains a SentencePiece model offline; returns the path of `<out_prefix>.model`.

  Ids: pad=0, eos=1, bos=2, unk=3, then the user-defined symbols (the R1 tags by default, each
  one token) and, with byte fallback, the 256 byte pieces, so any text encodes. Normalisation is
  the identity and whitespace is kept, so decode(encode(text)) == text for ordinary text.
  `vocab_size` must exceed 4 + len(user_defined_symbols) + 256 (byte pieces) by the learned
  pieces you want; with a tiny corpus it is a soft limit.

  Args:
    texts: training documents (may contain newlines).
    out_prefix: output path without extension.
    vocab_size: total number of pieces.
    user_defined_symbols: strings that always become one token.
    split_digits: split numbers into single digits (helps arithmetic).
    model_type: 'bpe' or 'unigram'.
    byte_fallback: unknown characters become their UTF-8 bytes instead of unk.
    extra: further `SentencePieceTrainer` options.
  """
  import sentencepiece as spm  # pylint: disable=import-outside-toplevel
  import tempfile  # pylint: disable=import-outside-toplevel
  out_prefix = str(out_prefix)
  symbols = list(user_defined_symbols)
  if '\n' not in symbols:
    symbols.append('\n')  # newlines are structure in worked solutions; keep them one piece.
  # The trainer reads one sentence per item; it does not split on '\n' inside an item.
  sentences = [t for t in texts if t]
  if not sentences:
    raise ValueError('train_sentencepiece: empty corpus.')
  with tempfile.TemporaryDirectory() as tmp:  # the trainer writes local files only
    options = dict(
        model_prefix=os.path.join(tmp, 'm'), vocab_size=vocab_size, model_type=model_type,
        user_defined_symbols=symbols, split_digits=split_digits, byte_fallback=byte_fallback,
        character_coverage=character_coverage, pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        pad_piece='<pad>', eos_piece='</s>', bos_piece='<s>', unk_piece='<unk>',
        normalization_rule_name='identity', remove_extra_whitespaces=False,
        add_dummy_prefix=False, allow_whitespace_only_pieces=True,
        max_sentence_length=max_sentence_length, num_threads=num_threads,
        hard_vocab_limit=False, minloglevel=2)
    options.update(extra)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), **options)
    out = epath.Path(out_prefix)
    out.parent.mkdir(parents=True, exist_ok=True)
    for ext in ('.model', '.vocab'):
      (out.parent / (out.name + ext)).write_bytes(pathlib.Path(tmp, 'm' + ext).read_bytes())
  return out_prefix + '.model'


def sentencepiece_to_hf(tok: SentencePieceTokenizer, add_bos: bool,
                        model_max_length: int | None = None) -> dict[str, str]:
  """Hugging Face tokenizer files for a SentencePiece BPE model: {file name: text}.

  tokenizer.json is the same BPE as a `tokenizers` model: the vocabulary with its ids, one merge
  per way of splitting each piece into two pieces, ranked by the piece's score (SentencePiece BPE
  merges the best-scoring adjacent pair first, `tokenizers` the lowest-ranked merge: the same
  order), byte fallback, ' ' -> '▁', control pieces as special tokens and user-defined pieces
  (the R1 tags, '\\n') as added tokens. `add_bos` makes encoding a raw prompt prepend bos, as
  r1jax does in training. Only models trained like `train_sentencepiece`'s (no dummy prefix,
  identity normalisation) convert exactly; tests check ids against SentencePiece.
  """
  from tokenizers import AddedToken, Tokenizer as HFTok, decoders, models, normalizers, processors  # pylint: disable=import-outside-toplevel
  sp = tok._sp  # pylint: disable=protected-access
  spec, types = _sp_model_info(sp)
  if spec.get('model_type', 'bpe') != 'bpe' or spec.get('add_dummy_prefix', False) \
      or spec.get('normalization_rule_name', 'identity') != 'identity':
    raise ValueError('sentencepiece_to_hf converts BPE models without dummy prefix and with '
                     f'identity normalisation (as train_sentencepiece makes); got {spec}')
  n = sp.get_piece_size()
  pieces = [sp.id_to_piece(i) for i in range(n)]
  vocab = {p: i for i, p in enumerate(pieces)}
  normal = [i for i in range(n) if types[i] == 'NORMAL']
  merges = []
  for i in normal:
    p = pieces[i]
    for k in range(1, len(p)):
      a, b = p[:k], p[k:]
      if a in vocab and b in vocab:
        merges.append((-sp.get_score(i), i, vocab[a], a, b))
  merges.sort()
  unk = pieces[sp.unk_id()] if sp.unk_id() >= 0 else None
  hf = HFTok(models.BPE(vocab=vocab, merges=[(a, b) for *_, a, b in merges], unk_token=unk,
                        byte_fallback=True, fuse_unk=True))
  hf.normalizer = normalizers.Replace(' ', '\u2581')
  hf.decoder = decoders.Sequence([decoders.Replace('\u2581', ' '), decoders.ByteFallback(),
                                  decoders.Fuse()])
  specials = [i for i in range(n) if types[i] in ('CONTROL', 'UNKNOWN')]
  hf.add_special_tokens([AddedToken(pieces[i], special=True, normalized=False) for i in specials])
  hf.add_tokens([AddedToken(pieces[i], special=False, normalized=False)
                 for i in range(n) if types[i] == 'USER_DEFINED'])
  if add_bos:
    if tok.bos_id is None:
      raise ValueError('add_bos=True but the tokenizer has no bos token')
    bos = pieces[tok.bos_id]
    hf.post_processor = processors.TemplateProcessing(
        single=f'{bos} $A', pair=f'{bos} $A {bos} $B', special_tokens=[(bos, tok.bos_id)])
  names = {'bos_token': tok.bos_id, 'eos_token': tok.eos_id, 'unk_token': sp.unk_id(),
           'pad_token': tok.pad_id}
  special_map = {k: pieces[v] for k, v in names.items() if v is not None and v >= 0}
  config = {'tokenizer_class': 'PreTrainedTokenizerFast', 'add_bos_token': add_bos,
            'add_eos_token': False, 'clean_up_tokenization_spaces': False,
            'model_max_length': model_max_length or 1_000_000, **special_map}
  return {'tokenizer.json': hf.to_str(pretty=True),
          'tokenizer_config.json': json.dumps(config, indent=2, ensure_ascii=False),
          'special_tokens_map.json': json.dumps(special_map, indent=2, ensure_ascii=False)}


def _sp_model_info(sp) -> tuple[dict, list[str]]:
  """(the options stored in a SentencePiece model that matter here, each piece's type name)."""
  from sentencepiece import sentencepiece_model_pb2 as pb  # pylint: disable=import-outside-toplevel
  m = pb.ModelProto()
  m.ParseFromString(sp.serialized_model_proto())
  t, nz = m.trainer_spec, m.normalizer_spec
  spec = {'model_type': pb.TrainerSpec.ModelType.Name(t.model_type).lower(),
          'add_dummy_prefix': nz.add_dummy_prefix, 'normalization_rule_name': nz.name}
  return spec, [pb.ModelProto.SentencePiece.Type.Name(p.type) for p in m.pieces]
