"""Image sets from files: real binarized MNIST and Omniglot, then bad inputs.

Which folder is read, and the error when none holds the files:
test_data_folders.py; the tfds route: test_tfds.py."""

import gzip
import io
import os
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import data

BMNIST = "binarized_mnist/binarized_mnist_{}.amat"
OMNIGLOT = "omniglot/images_background_small1.zip"


@pytest.fixture(scope="module")
def bmnist(data_file):
  path = os.path.dirname(data_file(BMNIST.format("train")))
  return data.load(data.DataConfig(name="binarized_mnist",
                                   data_dir=os.path.dirname(path)))


def _omniglot(data_file):
  path = os.path.dirname(data_file(OMNIGLOT))
  return data.load(data.DataConfig(name="omniglot",
                                   data_dir=os.path.dirname(path)))


@pytest.fixture(scope="module")
def omniglot(data_file):
  return _omniglot(data_file)


def test_binarized_mnist_sizes_and_values(bmnist):
  sizes = {s: bmnist.num_examples(s) for s in ("train", "valid", "test")}
  assert sizes == {"train": 50_000, "valid": 10_000, "test": 10_000}
  for split, x in bmnist.splits.items():
    assert x.shape[1:] == (28, 28, 1) and x.dtype == np.float32, split
    assert set(np.unique(x)) == {0.0, 1.0}, split
    assert bmnist.binarization[split] == "none"


def test_binarized_mnist_matches_the_text(bmnist, data_file):
  with open(data_file(BMNIST.format("test"))) as f:
    first = [f.readline() for _ in range(3)]
  expected = np.asarray([[float(v) for v in line.split()] for line in first])
  np.testing.assert_array_equal(
      bmnist.splits["test"][:3].reshape(3, 784), expected)
  batch = next(iter(bmnist.batches("test", 50)))["image"].numpy()
  np.testing.assert_array_equal(batch, bmnist.splits["test"][:50])


def test_omniglot_counts_and_shapes(omniglot, data_file):
  with zipfile.ZipFile(data_file(OMNIGLOT)) as archive:
    count = sum(n.endswith(".png") for n in archive.namelist())
  sizes = [omniglot.num_examples(s) for s in ("train", "valid", "test")]
  assert sum(sizes) == count
  assert sizes[1] == sizes[2] == count // 10
  for x in omniglot.splits.values():
    assert x.shape[1:] == (28, 28, 1)
  assert omniglot.binarization == {"train": "dynamic", "valid": "none",
                                   "test": "none"}
  train = omniglot.splits["train"]
  assert train.min() >= 0.0 and train.max() == 1.0
  assert 0.02 < train.mean() < 0.3   # strokes (probability 1) are the minority


def test_omniglot_binarization(omniglot, data_file):
  again = _omniglot(data_file)
  np.testing.assert_array_equal(again.splits["test"], omniglot.splits["test"])
  assert set(np.unique(omniglot.splits["test"])) == {0.0, 1.0}

  def first(ds, seed):
    return next(iter(ds.batches("train", 50, shuffle=True, seed=seed)))["image"]

  epoch0, epoch0_again, epoch1 = (first(omniglot, 0), first(again, 0),
                                  first(omniglot, 1))
  assert set(np.unique(epoch0)) == {0.0, 1.0}
  np.testing.assert_array_equal(epoch0, epoch0_again)
  assert not np.array_equal(epoch0, epoch1)


def _write(path, content):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(content if isinstance(content, bytes) else content.encode())
  return str(path)


def _amat(rows, width=784):
  rng = np.random.default_rng(0)
  return "".join(" ".join(map(str, rng.integers(0, 2, width))) + "\n"
                 for _ in range(rows))


def _load(name, root):
  return data.load(data.DataConfig(name=name, data_dir=str(root)))


def _bmnist_files(root, **texts):
  for split in ("train", "valid", "test"):
    _write(root / BMNIST.format(split), texts.get(split, _amat(3)))


def test_small_amat_files_load(tmp_path):
  _bmnist_files(tmp_path, train=_amat(4).replace(" ", "  ", 5) + "\n")
  ds = _load("binarized_mnist", tmp_path)
  assert ds.num_examples("train") == 4 and ds.num_examples("test") == 3


def test_amat_wrong_width(tmp_path):
  bad = _amat(1) + _amat(1, width=783) + _amat(1)
  _bmnist_files(tmp_path, valid=bad)
  with pytest.raises(ValueError, match=r"valid\.amat, line 2: 783 values, "
                     "expected 784"):
    _load("binarized_mnist", tmp_path)


def test_amat_non_binary_value(tmp_path):
  rows = _amat(3).split("\n")
  rows[2] = "0 0 0 0 0.5" + rows[2][9:]
  _bmnist_files(tmp_path, test="\n".join(rows))
  with pytest.raises(ValueError, match=r"test\.amat, line 3: value '0\.5' in "
                     "column 5 is not 0 or 1"):
    _load("binarized_mnist", tmp_path)


def test_amat_missing_and_empty(tmp_path):
  _bmnist_files(tmp_path)
  os.remove(tmp_path / BMNIST.format("test"))
  with pytest.raises(ValueError, match=r"test\.amat: no such file; put"):
    _load("binarized_mnist", tmp_path)
  _write(tmp_path / BMNIST.format("test"), "")
  with pytest.raises(ValueError, match=r"test\.amat: the file is empty"):
    _load("binarized_mnist", tmp_path)


def _idx(images_uint8):
  count = len(images_uint8)
  header = np.asarray([0x803, count, 28, 28], ">u4").tobytes()
  return header + images_uint8.tobytes()


def test_mnist_idx_files(tmp_path):
  train = np.zeros((10_010, 28, 28), np.uint8)
  train[:, 10:18, 12:16] = 255
  train[-1, 0, 0] = 128
  _write(tmp_path / "mnist/train-images-idx3-ubyte.gz",
         gzip.compress(_idx(train)))
  _write(tmp_path / "mnist/t10k-images-idx3-ubyte", _idx(train[:20]))
  ds = _load("mnist", tmp_path)
  sizes = [ds.num_examples(s) for s in ("train", "valid", "test")]
  assert sizes == [10, 10_000, 20]
  assert ds.binarization["train"] == "dynamic"
  assert ds.splits["train"].max() == 1.0 and ds.splits["train"].min() == 0.0
  assert set(np.unique(ds.splits["valid"])) == {0.0, 1.0}


def test_mnist_bad_idx(tmp_path):
  good = _idx(np.zeros((10_001, 28, 28), np.uint8))
  _write(tmp_path / "mnist/train-images-idx3-ubyte", good)
  _write(tmp_path / "mnist/t10k-images-idx3-ubyte", good[:-5])
  with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: header says "
                     "10001 images"):
    _load("mnist", tmp_path)
  _write(tmp_path / "mnist/t10k-images-idx3-ubyte", b"\0\0\x08\x01" + good[4:])
  with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: not an idx3"):
    _load("mnist", tmp_path)


def _png(height=105, width=105):
  image = np.full((height, width, 1), 255, np.uint8)
  image[30:70, 30:70] = 0
  return tf.io.encode_png(image).numpy()


def _zip(path, members):
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w") as archive:
    for name, content in members.items():
      archive.writestr(name, content)
  return _write(path, buffer.getvalue())


def _omniglot_zip(tmp_path, bad=None):
  members = {f"images_background_small1/A/character01/0001_{i:02d}.png": _png()
             for i in range(1, 11)}
  members.update(bad or {})
  return _zip(tmp_path / "omniglot/images_background_small1.zip", members)


def test_small_omniglot_zip(tmp_path):
  _omniglot_zip(tmp_path)
  ds = _load("omniglot", tmp_path)
  assert [ds.num_examples(s) for s in ("train", "valid", "test")] == [8, 1, 1]
  stroke = ds.splits["train"][0, :, :, 0]
  assert stroke[13, 13] == 1.0 and stroke[0, 0] == 0.0


def test_omniglot_wrong_image_size(tmp_path):
  _omniglot_zip(tmp_path, {"x/B/character02/0002_01.png": _png(104, 105)})
  with pytest.raises(ValueError, match=r"small1\.zip: x/B/character02/"
                     r"0002_01\.png: image is 104x105 pixels, expected 105x105"):
    _load("omniglot", tmp_path)


def test_omniglot_corrupt_png(tmp_path):
  _omniglot_zip(tmp_path, {"x/B/c/0002_01.png": _png()[:60]})
  with pytest.raises(ValueError, match=r"small1\.zip: x/B/c/0002_01\.png: not a "
                     "valid PNG"):
    _load("omniglot", tmp_path)


def test_omniglot_corrupt_member(tmp_path):
  path = _omniglot_zip(tmp_path)
  with open(path, "rb") as f:
    content = bytearray(f.read())
  start = content.find(b"IDAT")     # inside the first stored PNG
  content[start + 8] ^= 0xFF
  _write(path, bytes(content))
  with pytest.raises(ValueError, match=r"small1\.zip: images_background_small1/"
                     r"A/character01/0001_01\.png: corrupt in the archive"):
    _load("omniglot", tmp_path)


def test_omniglot_truncated_zip(tmp_path):
  path = _omniglot_zip(tmp_path)
  with open(path, "rb") as f:
    content = f.read()
  _write(path, content[:len(content) // 2])
  with pytest.raises(ValueError, match=r"small1\.zip: not a readable zip"):
    _load("omniglot", tmp_path)


def test_omniglot_empty_or_pngless_zip(tmp_path):
  path = _write(tmp_path / "omniglot/images_background_small1.zip", b"")
  with pytest.raises(ValueError, match=r"small1\.zip: the file is empty"):
    _load("omniglot", tmp_path)
  _zip(path, {"readme.txt": "no images"})
  with pytest.raises(ValueError, match=r"small1\.zip: the archive holds no PNG"):
    _load("omniglot", tmp_path)


def test_registered_kinds():
  for name in ("binarized_mnist", "mnist", "omniglot"):
    assert data.kind(name) == "image"
  for name in ("text", "ptb", "yahoo", "yelp"):
    assert data.kind(name) == "text"


def test_omniglot_keeps_alphabet_and_character_labels(omniglot):
  """images_background_small1: 5 alphabets, 136 characters of 20 drawers."""
  labels = omniglot.labels
  for split in ("train", "valid", "test"):
    assert set(labels[split]) == {"alphabet", "character"}
    assert len(labels[split]["alphabet"]) == omniglot.num_examples(split)
  every = {k: np.concatenate([labels[s][k] for s in labels]) for k in
           ("alphabet", "character")}
  assert len(every["character"]) == 2720
  assert sorted(set(every["alphabet"])) == list(range(5))
  np.testing.assert_array_equal(np.bincount(every["character"]),
                                np.full(136, 20))
  # A character lies in one alphabet.
  pairs = set(zip(every["character"].tolist(), every["alphabet"].tolist()))
  assert len(pairs) == 136
  # Held out of train, each row keeps its labels.
  held = data.hold_out(omniglot, 0.1, seed=3)
  assert len(held.labels["valid"]["character"]) == held.num_examples("valid")
  count = omniglot.num_examples("train")
  order = np.random.default_rng(3).permutation(count)
  valid_rows = np.sort(order[:round(0.1 * count)])
  np.testing.assert_array_equal(held.labels["valid"]["character"],
                                omniglot.labels["train"]["character"][valid_rows])
  assert len(held.labels["train"]["alphabet"]) == count - len(valid_rows)
  assert held.labels["test"] is omniglot.labels["test"]


def test_small_omniglot_zip_labels_come_from_folders(tmp_path):
  members = {f"s/{a}/character{c:02d}/0001_{i:02d}.png": _png()
             for a in ("Bb", "Aa") for c in (1, 2) for i in range(1, 4)}
  _zip(tmp_path / "omniglot/images_background_small1.zip", members)
  ds = _load("omniglot", tmp_path)
  every = {k: np.concatenate([ds.labels[s][k] for s in base_splits()])
           for k in ("alphabet", "character")}
  assert np.bincount(every["alphabet"]).tolist() == [6, 6]   # Aa 0, Bb 1
  assert np.bincount(every["character"]).tolist() == [3, 3, 3, 3]
  # Characters number (alphabet, character) pairs: Aa's first.
  assert set(zip(every["character"], every["alphabet"])) == {
      (0, 0), (1, 0), (2, 1), (3, 1)}


def base_splits():
  return ("train", "valid", "test")
