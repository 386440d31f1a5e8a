"""Text corpora read from files with one tokenized sentence per line.

The only preprocessing is whitespace tokenization: corpora such as PTB, Yahoo
and Yelp (as released by He et al. 2019) are already tokenized and carry their
own unknown markers (`<unk>`, `_UNK`), which map to the unknown id. Empty lines
are skipped. The vocabulary comes from the training split alone.
"""

import os
from typing import TYPE_CHECKING

from absl import logging

from tf_cvae import errors
from tf_cvae.data import base
from tf_cvae.data import vocabulary as vocab_lib

if TYPE_CHECKING:
  from tf_cvae.data import DataConfig

# name -> (folder under data_dir, file prefix, where the files come from).
CORPORA = {
    "ptb": ("ptb", "ptb", "the Penn Treebank of Mikolov et al. "
            "(simple-examples/data/ptb.{split}.txt)"),
    "yahoo": ("yahoo", "yahoo", "Yahoo Answers as released by He et al. 2019 "
              "(github.com/jxhe/vae-lagging-encoder, "
              "yahoo_data/yahoo.{split}.txt)"),
    "yelp": ("yelp", "yelp", "Yelp reviews as released by He et al. 2019 "
             "(github.com/jxhe/vae-lagging-encoder, yelp_data/yelp.{split}.txt)"),
}
LONG_SENTENCES = ("drop", "truncate")


def read_sentences(path: str, hint: str = "") -> list[list[str]]:
  """Tokenized non-empty lines of a UTF-8 file.

  Raises errors.InputError naming the file (and the 1-based line for bad UTF-8) when
  the file is missing, empty or not UTF-8; `hint` says what belongs there.
  """
  if not os.path.isfile(path):
    what = f"; put {hint} there" if hint else ""
    raise errors.InputError(f"{path}: no such file{what} (one tokenized sentence per "
                     "line, UTF-8)")
  with open(path, "rb") as f:
    data = f.read()
  if not data:
    raise errors.InputError(f"{path}: the file is empty")
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    line = data.count(b"\n", 0, e.start) + 1
    raise errors.InputError(f"{path}, line {line}: not valid UTF-8 ({e.reason} at "
                     f"byte {e.start})") from None
  lines = text.split("\n")
  if lines[-1] == "":
    lines.pop()
  sentences = [s for s in base.tokens_from_lines(lines) if s]
  if len(sentences) < len(lines):
    logging.info("%s: skipped %d empty lines", path, len(lines) - len(sentences))
  if not sentences:
    raise errors.InputError(f"{path}: no sentences ({len(lines)} lines, all empty)")
  return sentences


def limit_length(sentences: list[list[str]], max_length: int | None,
                 long_sentences: str, path: str) -> list[list[str]]:
  """Drops or truncates sentences longer than `max_length` words (logged)."""
  if max_length is None:
    return sentences
  longer = sum(len(s) > max_length for s in sentences)
  if long_sentences == "drop":
    kept = [s for s in sentences if len(s) <= max_length]
  else:
    kept = [s[:max_length] for s in sentences]
  logging.info("%s: %s %d of %d sentences longer than %d words", path,
               "dropped" if long_sentences == "drop" else "truncated",
               longer, len(sentences), max_length)
  if not kept:
    raise errors.InputError(f"{path}: no sentence has at most max_length={max_length} "
                     "words (use long_sentences='truncate' or a larger cap)")
  return kept


def text_dataset(name: str, paths: dict[str, str], *,
                 max_vocab: int | None = None, min_count: int = 1,
                 max_length: int | None = None, long_sentences: str = "drop",
                 hints: dict[str, str] | None = None,
                 vocab_file: str | None = None) -> base.TextDataset:
  """Reads train/valid/test files into a TextDataset.

  Args:
    name: the data set's name.
    paths: split -> file path, for each of base.SPLITS.
    max_vocab: cap on vocabulary ids, specials included; None for no cap.
    min_count: training words seen fewer times map to the unknown id.
    max_length: words per sentence (without <s> </s>); None for no cap.
    long_sentences: "drop" or "truncate" sentences past max_length.
    hints: split -> what to put at a missing path (for the error message).
    vocab_file: a vocabulary saved by Vocabulary.save (a run directory's
      vocab.txt) to use instead of building one from the training file, so a
      resumed run, evaluation and export see the ids training saw.

  The vocabulary counts the training sentences as kept after max_length.

  Returns:
    A TextDataset whose sentences are int32 ids [words + 2].
  """
  if long_sentences not in LONG_SENTENCES:
    raise errors.InputError(f"long_sentences must be 'drop' or 'truncate', got "
                     f"{long_sentences!r}")
  if max_length is not None and max_length < 1:
    raise errors.InputError(f"max_length must be at least 1, got {max_length}")
  hints = hints or {}
  tokens = {}
  for split in base.SPLITS:
    sentences = read_sentences(paths[split], hints.get(split, ""))
    tokens[split] = limit_length(sentences, max_length, long_sentences,
                                 paths[split])
  if vocab_file:
    vocab = vocab_lib.Vocabulary.load(vocab_file)
  else:
    vocab = vocab_lib.Vocabulary.from_sentences(
        tokens["train"], max_size=max_vocab, min_count=min_count)
  if len(vocab) == len(vocab_lib.SPECIALS):
    raise errors.InputError(
        f"{paths['train']}: the training vocabulary is empty: every word is an "
        f"unknown marker or seen fewer than min_count={min_count} times "
        f"(max_vocab={max_vocab})")
  logging.info("%s: vocabulary of %d ids from %s", name, len(vocab),
               vocab_file or paths["train"])
  splits = {split: [vocab.encode(s) for s in sentences]
            for split, sentences in tokens.items()}
  return base.TextDataset(name=name, vocab=vocab, splits=splits)


def _options(config: "DataConfig") -> dict:
  return dict(max_vocab=config.max_vocab, min_count=config.min_count,
              max_length=config.max_length,
              long_sentences=config.long_sentences,
              vocab_file=config.vocab_file)


def _resolve(path: str, data_dir: str) -> str:
  """An absolute path, or one relative to the working directory, else data_dir."""
  if os.path.isabs(path) or os.path.exists(path):
    return path
  return os.path.join(data_dir, path)


def load_text(config: "DataConfig") -> base.TextDataset:
  """`--dataset=text`: config.{train,valid,test}_file, one sentence per line.

  Relative paths are looked up in the working directory, then in data_dir.
  """
  given = {"train": config.train_file, "valid": config.valid_file,
           "test": config.test_file}
  unset = [f"{split}_file" for split, path in given.items() if not path]
  if unset:
    raise errors.InputError(f"data set 'text' needs {', '.join(unset)} (one tokenized "
                     "sentence per line)")
  data_dir = config.resolved_data_dir()
  paths = {split: _resolve(path, data_dir) for split, path in given.items()}
  return text_dataset("text", paths, **_options(config))


def load_corpus(corpus: str, config: "DataConfig") -> base.TextDataset:
  """A named corpus (ptb, yahoo, yelp): <data_dir>/<name>/<name>.<split>.txt."""
  folder, prefix, source = CORPORA[corpus]
  root = os.path.join(config.resolved_data_dir(), folder)
  paths = {split: os.path.join(root, f"{prefix}.{split}.txt")
           for split in base.SPLITS}
  hints = {split: f"the {split} split of {source.format(split=split)}"
           for split in base.SPLITS}
  return text_dataset(corpus, paths, hints=hints, **_options(config))
