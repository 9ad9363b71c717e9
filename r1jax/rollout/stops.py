"""Stop strings on both sides of the host/device boundary.

A stop string such as "</answer>" tokenizes differently depending on what precedes it.
With a byte-level BPE (Qwen2), "</answer>" alone is ['</', 'answer', '>'], after a space
['Ġ</', 'answer', '>'] and after a period ['.</', 'answer', '>']. So:

* `stop_token_sequences` registers, for the device-side sampler, the id sequences the
  string takes in several contexts (start of text, after a space, newline, punctuation,
  a letter, a digit), so decoding usually stops right after it;
* `cut_at_stop` is the ground truth on the host: it finds the first stop string in the
  *decoded text* and returns the number of completion tokens whose text reaches its end.
  The experience maker masks every token after that, fixes the lengths and clears
  `truncated`, so tokens after the stop string never reach the loss, whatever the
  tokenizer merged.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

# Text that commonly precedes a stop string in a completion.
CONTEXTS = ("", " ", "\n", ".", ",", ")", "a", "1", "\n\n", ". ", "> ")


def stop_token_sequences(tokenizer, stop_strings: Sequence[str]
                         ) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
  """(single ids to treat as EOS, multi-token stop sequences) for `stop_strings`.

  For every context c, the ids of c + s that follow the longest common prefix with the
  ids of c are a way s ends a completion. Sequences that would fire before s is complete
  (a variant that decodes to text not ending in s) are dropped.
  """
  singles: dict[int, None] = {}
  seqs: dict[tuple[int, ...], None] = {}
  for s in stop_strings:
    if not s:
      continue
    for ctx in CONTEXTS:
      ctx_ids = list(tokenizer.encode(ctx)) if ctx else []
      full = list(tokenizer.encode(ctx + s))
      k = 0
      while k < min(len(ctx_ids), len(full)) and ctx_ids[k] == full[k]:
        k += 1
      tail = tuple(full[k:])
      if not tail:
        continue
      text = tokenizer.decode(list(tail), skip_special_tokens=False)
      if not text.endswith(s) and not text.rstrip().endswith(s):
        continue
      if len(tail) == 1:
        singles[tail[0]] = None
      else:
        seqs[tail] = None
  return tuple(singles), tuple(seqs)


def cut_at_stop(tokenizer, ids: Sequence[int], stop_strings: Sequence[str]
                ) -> tuple[str, int | None]:
  """(text cut after the first stop string, tokens kept) of one completion.

  Tokens kept is the smallest n such that decode(ids[:n]) contains the stop string
  (so the token that completes it is kept), or None when no stop string occurs.
  """
  ids = [int(i) for i in ids]
  text = tokenizer.decode(ids, skip_special_tokens=False)
  cut = None
  for s in stop_strings:
    i = text.find(s) if s else -1
    if i >= 0 and (cut is None or i + len(s) < cut):
      cut = i + len(s)
  if cut is None:
    return text, None
  target = text[:cut]
  # Binary search for the first prefix whose decoding reaches the cut: decoding is
  # monotone in the prefix for the texts we care about (prefix text grows with ids).
  lo, hi = 1, len(ids)
  while lo < hi:
    mid = (lo + hi) // 2
    if target in tokenizer.decode(ids[:mid], skip_special_tokens=False):
      hi = mid
    else:
      lo = mid + 1
  return target, lo


def apply_stops(tokenizer, ids_RL: np.ndarray, lengths_R: np.ndarray,
                stop_strings: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
  """(texts cut at the stop, new lengths [R], stopped [R] bool) for a batch of completions.

  Rows without a stop string keep their decoded text and length.
  """
  texts, new_len, stopped = [], np.asarray(lengths_R).astype(np.int32).copy(), \
      np.zeros(len(lengths_R), bool)
  for r in range(ids_RL.shape[0]):
    row = ids_RL[r, :int(lengths_R[r])].tolist()
    if not stop_strings:
      texts.append(tokenizer.decode(row, skip_special_tokens=False))
      continue
    text, n = cut_at_stop(tokenizer, row, stop_strings)
    texts.append(text)
    if n is not None:
      new_len[r], stopped[r] = n, True
  return texts, new_len, stopped
