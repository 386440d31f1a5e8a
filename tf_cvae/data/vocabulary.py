"""A word vocabulary with the special ids every text model here relies on."""

import collections
import os
from typing import Iterable, Sequence

import numpy as np

from tf_cvae import errors

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIALS = (PAD, BOS, EOS, UNK)
# Unknown-word markers already present in public corpora; all map to UNK_ID.
UNKNOWN_MARKERS = frozenset({"<unk>", "_UNK", "<UNK>", "UNK"})


class Vocabulary:
  """Maps whitespace tokens to ids: 0 pad, 1 <s>, 2 </s>, 3 unknown, then words."""

  def __init__(self, words: Sequence[str]):
    words = [w for w in words if w not in SPECIALS and w not in UNKNOWN_MARKERS]
    self.tokens = list(SPECIALS) + words
    self._ids = {t: i for i, t in enumerate(self.tokens)}
    if len(self._ids) != len(self.tokens):
      seen = collections.Counter(self.tokens)
      twice = next(t for t in self.tokens if seen[t] > 1)
      raise errors.InputError(f"vocabulary words must be unique: {twice!r} "
                              f"appears {seen[twice]} times")

  @classmethod
  def from_sentences(cls, sentences: Iterable[Sequence[str]],
                     max_size: int | None = None, min_count: int = 1):
    """Builds a vocabulary from tokenized sentences, most frequent words first.

    Args:
      sentences: iterable of token lists (the training split only).
      max_size: cap on the number of ids, specials included; None for no cap.
      min_count: words seen fewer times than this map to the unknown id.
    """
    counts = collections.Counter(t for s in sentences for t in s)
    words = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
             if c >= min_count and w not in UNKNOWN_MARKERS and w not in SPECIALS]
    if max_size is not None:
      words = words[:max(0, max_size - len(SPECIALS))]
    return cls(words)

  def __len__(self) -> int:
    return len(self.tokens)

  def encode(self, tokens: Sequence[str]) -> np.ndarray:
    """Token list -> int32 ids [len + 2], framed by <s> ... </s>."""
    ids = [self._ids.get(t, UNK_ID) for t in tokens]
    return np.asarray([BOS_ID] + ids + [EOS_ID], dtype=np.int32)

  def decode(self, ids: Iterable[int]) -> list[str]:
    """Ids -> tokens, dropping <s>, padding and everything from </s> on."""
    out = []
    for i in ids:
      i = int(i)
      if i == EOS_ID:
        break
      if i in (PAD_ID, BOS_ID):
        continue
      out.append(self.tokens[i])
    return out

  def save(self, path: str) -> None:
    """Writes one token per line (line number = id)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.write("\n".join(self.tokens) + "\n")
    os.replace(tmp, path)

  @classmethod
  def load(cls, path: str) -> "Vocabulary":
    """Reads a file written by `save` (InputError naming `path` if it cannot)."""
    try:
      with open(path, "rb") as f:
        tokens = f.read().decode("utf-8").split("\n")[:-1]
    except OSError as e:
      raise errors.InputError(f"{path}: cannot read the vocabulary "
                              f"({e.strerror or e})") from None
    except UnicodeDecodeError as e:
      raise errors.InputError(f"{path}: not a tf_cvae vocabulary (not UTF-8 "
                              f"at byte {e.start})") from None
    if tuple(tokens[:len(SPECIALS)]) != SPECIALS:
      raise errors.InputError(f"{path}: not a tf_cvae vocabulary (first lines must be "
                       f"{' '.join(SPECIALS)})")
    try:
      return cls(tokens[len(SPECIALS):])
    except errors.InputError as e:
      raise errors.InputError(f"{path}: {e}") from None
