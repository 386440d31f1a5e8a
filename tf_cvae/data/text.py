"""Text corpora read from files with one tokenized sentence per line.

The only preprocessing is whitespace tokenization: corpora such as PTB, Yahoo
and Yelp (as released by He et al. 2019) are already tokenized and carry their
own unknown markers (`<unk>`, `_UNK`), which map to the unknown id. Empty lines
are skipped. The vocabulary comes from the training split alone.

Bad files are errors.InputError naming the file and line: binary files (a NUL
byte), files not in UTF-8, lines of more than UNCAPPED_WORD_LIMIT words when
max_length is unset. A few lines that are not UTF-8 (at most 1%) are skipped
with a warning that counts them.
"""

import codecs
import os
from typing import TYPE_CHECKING

from absl import logging

from tf_cvae import errors
from tf_cvae.data import base
from tf_cvae.data import folders
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
# Words per line at most when max_length is None: a longer line is almost
# surely not a sentence, and it would pad every batch of its bucket.
UNCAPPED_WORD_LIMIT = 1000


def _decode_lines(path: str, data: bytes) -> list[str | None]:
  """The UTF-8 lines of `data`, None for a skipped line; no BOM.

  A NUL byte means a binary file (or UTF-16/32): an InputError. Lines that
  are not valid UTF-8 (a few lines in another encoding) become None, logged
  as a warning with their count, up to max(1, 1%) of the lines; more (or
  every line) is an InputError naming the first bad line.
  """
  nul = data.find(b"\0")
  if nul >= 0:
    line = data.count(b"\n", 0, nul) + 1
    raise errors.InputError(
        f"{path}, line {line}: NUL byte at byte {nul}: a binary file or "
        "UTF-16/32 text, not UTF-8 text with one tokenized sentence per line")
  data = data.removeprefix(codecs.BOM_UTF8)
  try:
    return data.decode("utf-8").split("\n")
  except UnicodeDecodeError:
    pass
  lines, bad = [], []
  for number, raw in enumerate(data.split(b"\n"), start=1):
    try:
      lines.append(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
      bad.append(f"line {number}: not valid UTF-8 ({e.reason} at byte "
                 f"{e.start} of the line)")
      lines.append(None)
  total = len(lines) - (lines[-1] == "")     # no line after a final newline
  if len(bad) > max(1, total // 100) or len(bad) == total:
    raise errors.InputError(f"{path}, {bad[0]}; {len(bad)} of {total} "
                            "lines are not: convert the file to UTF-8")
  logging.warning("%s: skipped %d of %d lines that are not valid UTF-8 "
                  "(first: %s)", path, len(bad), total, bad[0])
  return lines


def read_sentences(path: str, hint: str = "",
                   word_limit: int | None = None) -> list[list[str]]:
  """Tokenized non-empty lines of a UTF-8 file.

  Empty lines are skipped (logged), and so are a few lines that are not
  UTF-8 (a warning with their count; see _decode_lines). Raises
  errors.InputError naming the file (and the 1-based line or byte) when the
  file is missing, empty, binary or not UTF-8, or when a line has more than
  `word_limit` words (None: no limit); `hint` says what belongs there.
  """
  if not os.path.isfile(path):
    what = f"; put {hint} there" if hint else ""
    raise errors.InputError(f"{path}: no such file{what} (one tokenized sentence per "
                     "line, UTF-8)")
  with open(path, "rb") as f:
    data = f.read()
  if not data:
    raise errors.InputError(f"{path}: the file is empty")
  lines = _decode_lines(path, data)
  if lines[-1] == "":
    lines.pop()
  sentences, empty = [], 0
  for number, line in enumerate(lines, start=1):
    if line is None:
      continue
    words = line.split()
    if word_limit is not None and len(words) > word_limit:
      raise errors.InputError(
          f"{path}, line {number}: {len(words)} words, more than {word_limit}; "
          "set max_length to drop such lines")
    if words:
      sentences.append(words)
    else:
      empty += 1
  if empty:
    logging.info("%s: skipped %d empty lines", path, empty)
  if not sentences:
    raise errors.InputError(f"{path}: no sentences ({len(lines)} lines, all empty)")
  return sentences


def limit_length(sentences: list[list[str]], max_length: int | None,
                 path: str) -> list[list[str]]:
  """Drops sentences longer than `max_length` words (logged)."""
  if max_length is None:
    return sentences
  kept = [s for s in sentences if len(s) <= max_length]
  logging.info("%s: dropped %d of %d sentences longer than %d words", path,
               len(sentences) - len(kept), len(sentences), max_length)
  if not kept:
    raise errors.InputError(f"{path}: no sentence has at most max_length="
                            f"{max_length} words (use a larger cap)")
  return kept


def hold_out_splits(sentences: list, fraction: float, seed: int,
                    path: str) -> dict[str, list]:
  """{"train", "valid", "test"}: a seeded draw of `fraction` of the
  sentences (at least one) for each of valid and test, the rest train, in
  file order; the sizes are logged."""
  if not 0.0 < fraction < 0.5:
    raise errors.InputError(f"held_out must lie in (0, 0.5), got {fraction}")
  rows = base.held_out_rows(len(sentences), fraction, seed,
                           ("valid", "test"), path, "sentences")
  return {split: [sentences[i] for i in r] for split, r in rows.items()}


def text_dataset(name: str, paths: dict[str, str], *,
                 max_vocab: int | None = None, min_count: int = 1,
                 max_length: int | None = None,
                 hints: dict[str, str] | None = None,
                 vocab_file: str | None = None, held_out: float = 0.1,
                 seed: int = 0) -> base.TextDataset:
  """Reads train/valid/test files into a TextDataset.

  Args:
    name: the data set's name.
    paths: split -> file path, for each of base.SPLITS; a valid or test
      path of None: that split is held out of the training file.
    max_vocab: cap on vocabulary ids, specials included; None for no cap.
    min_count: training words seen fewer times map to the unknown id.
    max_length: words per sentence (without <s> </s>), longer ones are
      dropped; None for no cap.
    hints: split -> what to put at a missing path (for the error message).
    vocab_file: a vocabulary saved by Vocabulary.save (a run directory's
      vocab.txt) to use instead of building one from the training file, so a
      resumed run, evaluation and export see the ids training saw.
    held_out, seed: the fraction of the training file each held-out split
      takes, and the seed of the draw (hold_out_splits).

  The vocabulary counts the training sentences as kept after max_length
  (without the held-out ones).

  Returns:
    A TextDataset whose sentences are int32 ids [words + 2].
  """
  if max_length is not None and max_length < 1:
    raise errors.InputError(f"max_length must be at least 1, got {max_length}")
  hints = hints or {}
  tokens = {}
  for split in base.SPLITS:
    if split != "train" and paths.get(split) is None:
      continue                                    # held out below
    sentences = read_sentences(
        paths[split], hints.get(split, ""),
        UNCAPPED_WORD_LIMIT if max_length is None else None)
    tokens[split] = limit_length(sentences, max_length, paths[split])
  if len(tokens) < len(base.SPLITS):
    tokens = hold_out_splits(tokens["train"], held_out, seed, paths["train"])
  options = None
  if vocab_file:
    vocab = vocab_lib.Vocabulary.load(vocab_file)
  else:
    options = dict(max_size=max_vocab, min_count=min_count)
    vocab = training_vocabulary(tokens["train"], options, paths["train"])
  logging.info("%s: vocabulary of %d ids from %s", name, len(vocab),
               vocab_file or paths["train"])
  splits = {split: [vocab.encode(s) for s in sentences]
            for split, sentences in tokens.items()}
  return base.TextDataset(name=name, vocab=vocab, splits=splits,
                          words=tokens, vocab_options=options)


def training_vocabulary(sentences: list[list[str]], options: dict,
                        where: str) -> vocab_lib.Vocabulary:
  """Vocabulary.from_sentences(sentences, **options); an InputError naming
  `where` when it holds no word."""
  vocab = vocab_lib.Vocabulary.from_sentences(sentences, **options)
  if len(vocab) == len(vocab_lib.SPECIALS):
    raise errors.InputError(
        f"{where}: the training vocabulary is empty: every word is an "
        f"unknown marker or seen fewer than min_count={options['min_count']} "
        f"times (max_vocab={options['max_size']})")
  return vocab


def _options(config: "DataConfig") -> dict:
  return dict(max_vocab=config.max_vocab, min_count=config.min_count,
              max_length=config.max_length,
              vocab_file=config.vocab_file, held_out=config.held_out,
              seed=config.seed)


def resolve(path: str, data_dir: str) -> str:
  """An absolute path, or one relative to the working directory, else data_dir."""
  if os.path.isabs(path) or os.path.exists(path):
    return path
  return os.path.join(data_dir, path)


def load_text(config: "DataConfig") -> base.TextDataset:
  """`--dataset=text`: config.{train,valid,test}_file, one sentence per line;
  given train_file alone, valid and test are held out of it (config.held_out
  each, seeded by config.seed; the vocabulary from the rest alone).

  Relative paths are looked up in the working directory, then in data_dir.
  """
  given = {"train": config.train_file, "valid": config.valid_file,
           "test": config.test_file}
  if not config.train_file or bool(config.valid_file) != bool(
      config.test_file):
    unset = [f"{split}_file" for split, path in given.items() if not path]
    raise errors.InputError(
        f"data set 'text' needs {', '.join(unset)} (one tokenized sentence "
        "per line), or train_file alone to hold valid and test out of it")
  data_dir = config.resolved_data_dir()
  paths = {split: path and resolve(path, data_dir)
           for split, path in given.items()}
  return text_dataset("text", paths, **_options(config))


def load_corpus(corpus: str, config: "DataConfig") -> base.TextDataset:
  """A named corpus (ptb, yahoo, yelp): <name>.<split>.txt files in
  <data_dir>/<name>/ or in data_dir itself (see folders.py)."""
  folder, prefix, source = CORPORA[corpus]
  names = [f"{prefix}.{split}.txt" for split in base.SPLITS]
  every_split = "{" + ",".join(base.SPLITS) + "}"
  root = folders.require_folder(
      config.resolved_data_dir(), folder, names,
      f"files {prefix}.{every_split}.txt",
      f"put {source.format(split=every_split)} there")
  paths = {split: os.path.join(root, name)
           for split, name in zip(base.SPLITS, names)}
  hints = {split: f"the {split} split of {source.format(split=split)}"
           for split in base.SPLITS}
  return text_dataset(corpus, paths, hints=hints, **_options(config))
