"""Text corpora from files: real PTB files, then each kind of bad input."""

import collections
import logging
import os

import numpy as np
import pytest

from tf_cvae import data
from tf_cvae.data import vocabulary as vocab_lib

PTB_VALID, PTB_TEST = "ptb/ptb.valid.txt", "ptb/ptb.test.txt"


def _lines(path):
  """Non-empty lines split on whitespace, read independently of the loader."""
  with open(path, encoding="utf-8") as f:
    return [line.split() for line in f if line.strip()]


def _ptb(data_file, **kwargs):
  """PTB with ptb.valid.txt as the training file (ptb.train.txt is absent)."""
  config = data.DataConfig(
      name="text", train_file=data_file(PTB_VALID),
      valid_file=data_file(PTB_VALID), test_file=data_file(PTB_TEST), **kwargs)
  return data.load(config)


@pytest.fixture(scope="module")
def ptb(data_file):
  return _ptb(data_file)


def test_ptb_sentence_counts(ptb, data_file):
  assert len(_lines(data_file(PTB_VALID))) == 3370
  assert len(_lines(data_file(PTB_TEST))) == 3761
  assert ptb.num_examples("train") == ptb.num_examples("valid") == 3370
  assert ptb.num_examples("test") == 3761


def test_ptb_vocabulary_from_training_file(ptb, data_file):
  counts = collections.Counter(
      w for line in _lines(data_file(PTB_VALID)) for w in line)
  assert {"<unk>"} == {"<unk>", "_UNK", "<UNK>", "UNK", "<s>", "</s>",
                       "<pad>"} & set(counts)
  words = set(counts) - {"<unk>"}
  assert len(ptb.vocab) == 4 + len(words)
  assert ptb.vocab.tokens[:4] == ["<pad>", "<s>", "</s>", "<unk>"]
  capped = _ptb(data_file, max_vocab=100)
  assert len(capped.vocab) == 100
  frequent = _ptb(data_file, min_count=3)
  assert len(frequent.vocab) == 4 + sum(c >= 3 for w, c in counts.items()
                                        if w in words)


def test_ptb_round_trip(ptb, data_file):
  sentence = _lines(data_file(PTB_VALID))[5]
  ids = ptb.splits["train"][5]
  assert ids.dtype == np.int32
  assert ids[0] == vocab_lib.BOS_ID and ids[-1] == vocab_lib.EOS_ID
  assert len(ids) == len(sentence) + 2
  assert ptb.vocab.decode(ids) == sentence


def test_ptb_unknown_words(ptb, data_file):
  train_words = {w for line in _lines(data_file(PTB_VALID)) for w in line}
  test_lines = _lines(data_file(PTB_TEST))
  row, col = next((i, j) for i, line in enumerate(test_lines)
                  for j, w in enumerate(line) if w not in train_words)
  assert ptb.splits["test"][row][col + 1] == vocab_lib.UNK_ID
  row, col = next((i, j) for i, line in enumerate(test_lines)
                  for j, w in enumerate(line) if w == "<unk>")
  assert ptb.splits["test"][row][col + 1] == vocab_lib.UNK_ID
  known = [(i, j) for i, line in enumerate(test_lines)
           for j, w in enumerate(line) if w in train_words and w != "<unk>"]
  i, j = known[0]
  assert ptb.vocab.tokens[ptb.splits["test"][i][j + 1]] == test_lines[i][j]


def test_ptb_max_length_drops_longer_sentences(data_file, caplog):
  lines = _lines(data_file(PTB_VALID))
  longer = sum(len(s) > 10 for s in lines)
  assert 0 < longer < len(lines)
  with caplog.at_level(logging.INFO, logger="absl"):
    dropped = _ptb(data_file, max_length=10)
  assert dropped.num_examples("train") == len(lines) - longer
  assert f"dropped {longer} of {len(lines)} sentences" in caplog.text
  assert dropped.max_length() <= 12


def test_batches_pad_after_end_to_a_few_shapes(ptb):
  bounds = ptb.bucket_boundaries()
  seen = 0
  for batch in ptb.batches("valid", 32, shuffle=True, seed=3):
    tokens = batch["tokens"].numpy()
    assert tokens.shape[1] in bounds
    for row in tokens:
      end = int(np.argmax(row == vocab_lib.EOS_ID))
      assert row[end] == vocab_lib.EOS_ID and row[0] == vocab_lib.BOS_ID
      assert (row[end + 1:] == vocab_lib.PAD_ID).all()
      assert (row[:end + 1] != vocab_lib.PAD_ID).all()
    seen += len(tokens)
  assert seen == ptb.num_examples("valid")


def test_named_ptb_without_training_file(data_file):
  data_dir = os.path.dirname(os.path.dirname(data_file(PTB_VALID)))
  with pytest.raises(ValueError, match=r"ptb\.train\.txt: no such file; put"):
    data.load(data.DataConfig(name="ptb", data_dir=data_dir))


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(text if isinstance(text, bytes) else text.encode("utf-8"))
  return str(path)


@pytest.mark.parametrize("name", ["ptb", "yahoo", "yelp"])
def test_named_corpora_read_conventional_files(tmp_path, name):
  for split in ("train", "valid", "test"):
    _write(tmp_path / name / f"{name}.{split}.txt", f"a b {split}\n\nb _UNK\n")
  ds = data.load(data.DataConfig(name=name, data_dir=str(tmp_path)))
  assert data.kind(name) == "text"
  assert ds.vocab.tokens[4:] == ["b", "a", "train"]
  assert ds.vocab.decode(ds.splits["test"][0]) == ["a", "b", "<unk>"]
  assert ds.splits["test"][1].tolist() == [1, 4, 3, 2]


def _text(tmp_path, train="a b\n", valid="a\n", test="b\n", **kwargs):
  paths = {}
  for split, text in (("train", train), ("valid", valid), ("test", test)):
    paths[split] = _write(tmp_path / f"{split}.txt", text)
  return data.load(data.DataConfig(
      name="text", train_file=paths["train"], valid_file=paths["valid"],
      test_file=paths["test"], **kwargs))


def test_relative_files_are_found_in_data_dir(tmp_path):
  for split in ("train", "valid", "test"):
    _write(tmp_path / "corpus" / f"{split}.txt", "x y\n")
  ds = data.load(data.DataConfig(
      name="text", data_dir=str(tmp_path), train_file="corpus/train.txt",
      valid_file="corpus/valid.txt", test_file="corpus/test.txt"))
  assert ds.num_examples("test") == 1


def test_empty_lines_are_skipped_and_logged(tmp_path, caplog):
  with caplog.at_level(logging.INFO, logger="absl"):
    ds = _text(tmp_path, train="a b\n\n  \nb\n\n")
  assert ds.num_examples("train") == 2
  assert "skipped 3 empty lines" in caplog.text


def test_missing_file(tmp_path):
  with pytest.raises(ValueError, match=r"nowhere\.txt: no such file"):
    data.load(data.DataConfig(
        name="text", train_file=str(tmp_path / "nowhere.txt"),
        valid_file="v", test_file="t"))


def test_missing_file_names(tmp_path):
  # train_file alone is read (valid and test held out of it); valid_file
  # without test_file, or no train_file, is refused naming what is missing.
  with pytest.raises(ValueError, match=r"t\.txt: no such file"):
    data.load(data.DataConfig(name="text", train_file=str(tmp_path / "t.txt")))
  with pytest.raises(ValueError, match="needs test_file"):
    data.load(data.DataConfig(name="text", train_file=str(tmp_path / "t.txt"),
                              valid_file="v"))
  with pytest.raises(ValueError, match="needs train_file, valid_file, "
                     "test_file"):
    data.load(data.DataConfig(name="text"))


def test_empty_file(tmp_path):
  with pytest.raises(ValueError, match=r"valid\.txt: the file is empty"):
    _text(tmp_path, valid="")


def test_training_vocabulary_empty(tmp_path):
  with pytest.raises(ValueError, match=r"train\.txt: the training vocabulary is "
                     "empty"):
    _text(tmp_path, train="<unk> _UNK\n<unk>\n")
  with pytest.raises(ValueError, match=r"train\.txt: .*min_count=2"):
    _text(tmp_path, train="a b c\n", min_count=2)


@pytest.mark.parametrize("split", ["valid", "test"])
def test_split_without_sentences(tmp_path, split):
  with pytest.raises(ValueError, match=rf"{split}\.txt: no sentences \(3 lines"):
    _text(tmp_path, **{split: "\n  \n\t\n"})


def test_a_few_invalid_utf8_lines_are_skipped_and_logged(tmp_path, caplog):
  ds = _text(tmp_path, test=b"a b\nb a\nb \xff\xfe a\nb\n")
  assert ds.num_examples("test") == 3
  assert ("test.txt: skipped 1 of 4 lines that are not valid UTF-8 (first: "
          "line 3" in caplog.text)


def test_mostly_invalid_utf8_names_the_first_bad_line(tmp_path):
  with pytest.raises(ValueError, match=r"test\.txt, line 2: not valid UTF-8 "
                     r".*; 2 of 4 lines are not: convert the file to UTF-8"):
    _text(tmp_path, test=b"a b\n\xe9 a\nb \xff a\nb\n")


def test_binary_file_is_an_error_not_skips(tmp_path):
  with pytest.raises(ValueError, match=r"train\.txt, line 2: NUL byte at "
                     "byte 4: a binary file"):
    _text(tmp_path, train=b"a b\n\0\x01\x02\n")


def test_uncapped_line_over_the_word_limit(tmp_path):
  long = " ".join(["a"] * 1001)
  with pytest.raises(ValueError, match=r"train\.txt, line 2: 1001 words, "
                     "more than 1000; set max_length"):
    _text(tmp_path, train=f"a b\n{long}\n")
  ds = _text(tmp_path, train=f"a b\n{long}\n", max_length=5)
  assert ds.num_examples("train") == 1


def test_all_sentences_too_long(tmp_path):
  with pytest.raises(ValueError, match=r"valid\.txt: no sentence has at most "
                     "max_length=1"):
    _text(tmp_path, train="a\n", valid="a b\n", max_length=1)



def test_saved_vocabulary_is_reused(ptb, data_file, tmp_path):
  path = str(tmp_path / "vocab.txt")
  small = _ptb(data_file, max_vocab=50)
  small.vocab.save(path)
  reused = _ptb(data_file, vocab_file=path)     # would build 6,000+ ids
  assert reused.vocab.tokens == small.vocab.tokens
  np.testing.assert_array_equal(reused.splits["test"][0],
                                small.splits["test"][0])


def test_held_out_valid_leaves_the_vocabulary_to_the_training_part(tmp_path):
  """10 training lines, 2 held out (seed 0): the vocabulary counts the 8
  kept lines only; a word of the held-out lines alone reads unknown."""
  lines = [f"common w{i} w{i}" for i in range(10)]
  held_rows = np.sort(np.random.default_rng(0).permutation(10)[:2])
  kept_rows = sorted(set(range(10)) - set(held_rows.tolist()))
  full = _text(tmp_path, train="\n".join(lines) + "\n", valid="w0\n",
               test=f"w{held_rows[0]} common\n")
  assert len(full.vocab) == 4 + 11
  held = data.load(data.DataConfig(
      name="text", train_file=str(tmp_path / "train.txt"),
      valid_file=str(tmp_path / "valid.txt"),
      test_file=str(tmp_path / "test.txt"), valid_from_train=0.2))
  assert held.num_examples("valid") == 2 and held.num_examples("train") == 8
  assert held.vocab.tokens[4:] == ["common"] + [f"w{i}" for i in kept_rows]
  assert len(held.vocab) == 4 + 9
  for sentence, row in zip(held.splits["valid"], held_rows):
    assert held.vocab.decode(sentence) == ["common", "<unk>", "<unk>"]
    assert lines[row].split()[1] not in held.vocab.tokens
  assert held.vocab.decode(held.splits["test"][0]) == ["<unk>", "common"]
  for sentence, row in zip(held.splits["train"], kept_rows):
    assert held.vocab.decode(sentence) == lines[row].split()
  # The same options: min_count 2 over the kept part keeps every w<i> (twice
  # a line) and "common"; max_vocab caps after them by frequency.
  capped = data.load(data.DataConfig(
      name="text", train_file=str(tmp_path / "train.txt"),
      valid_file=str(tmp_path / "valid.txt"),
      test_file=str(tmp_path / "test.txt"), valid_from_train=0.2,
      max_vocab=4 + 3, min_count=2))
  assert capped.vocab.tokens[4:] == ["common"] + [f"w{i}" for i in kept_rows[:2]]


def test_held_out_valid_keeps_a_given_vocabulary_file(tmp_path):
  lines = "\n".join(f"w{i}" for i in range(10)) + "\n"
  full = _text(tmp_path, train=lines, valid="w0\n", test="w1\n")
  full.vocab.save(str(tmp_path / "vocab.txt"))
  held = data.load(data.DataConfig(
      name="text", train_file=str(tmp_path / "train.txt"),
      valid_file=str(tmp_path / "valid.txt"),
      test_file=str(tmp_path / "test.txt"), valid_from_train=0.2,
      vocab_file=str(tmp_path / "vocab.txt")))
  assert held.vocab.tokens == full.vocab.tokens
  assert [held.vocab.decode(s) for s in held.splits["valid"]] != [["<unk>"]] * 2
  assert "<unk>" not in {w for s in held.splits["valid"]
                         for w in held.vocab.decode(s)}
