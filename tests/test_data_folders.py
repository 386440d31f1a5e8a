"""--data_dir may be the data root (holding <name>/) or the data set's own
folder, for every local data set; with neither, one line names both."""

import gzip
import io
import os
import re
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import data
from tf_cvae import errors
from tf_cvae.data import tfds_source

FORMS = ["root", "own folder"]


def _data_dir(root, name, form):
  """--data_dir in `form`: the root, or <root>/<name> (trailing slash)."""
  return str(root) if form == "root" else os.path.join(str(root), name, "")


def _load(name, data_dir):
  return data.load(data.DataConfig(name=name, data_dir=data_dir))


def _write(path, content: bytes):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(content)


@pytest.fixture
def offline(monkeypatch):
  """The tfds route fails at once, as on a machine without internet."""

  def fail(name, unused_splits, unused_download=True):
    raise RuntimeError(f"cannot download {name}\nsecond line")

  monkeypatch.setattr(tfds_source, "tfds_images", fail)


# Real data: the folders as they are in TF_CVAE_DATA.

def test_binarized_mnist_from_its_own_folder(data_file):
  folder = os.path.dirname(data_file("binarized_mnist/binarized_mnist_test.amat"))
  with open(os.path.join(folder, "binarized_mnist_test.amat")) as f:
    first = np.asarray([[float(v) for v in f.readline().split()]
                        for _ in range(3)])
  for data_dir in (os.path.dirname(folder), folder, folder + os.sep):
    ds = _load("binarized_mnist", data_dir)
    assert [ds.num_examples(s) for s in ("train", "valid", "test")] == [
        50_000, 10_000, 10_000], data_dir
    np.testing.assert_array_equal(ds.splits["test"][:3].reshape(3, 784), first)


def test_omniglot_from_its_own_folder(data_file):
  folder = os.path.dirname(data_file("omniglot/images_background_small1.zip"))
  from_root = _load("omniglot", os.path.dirname(folder))
  from_folder = _load("omniglot", folder)
  assert from_folder.num_examples("train") == from_root.num_examples("train")
  for split in ("train", "valid", "test"):
    np.testing.assert_array_equal(from_folder.splits[split],
                                  from_root.splits[split])


def test_ptb_own_folder_is_where_the_train_file_is_looked_for(data_file):
  folder = os.path.dirname(data_file("ptb/ptb.valid.txt"))
  for data_dir in (os.path.dirname(folder), folder):
    expected = re.escape(os.path.join(folder, "ptb.train.txt"))
    with pytest.raises(errors.InputError, match=rf"^{expected}: no such file"):
      _load("ptb", data_dir)


# Small files written here, each set in both forms.

@pytest.mark.parametrize("form", FORMS)
def test_binarized_mnist_amat_files(tmp_path, form):
  rng = np.random.default_rng(0)
  rows = {s: rng.integers(0, 2, (n, 784)) for s, n in
          (("train", 4), ("valid", 3), ("test", 2))}
  for split, values in rows.items():
    text = "".join(" ".join(map(str, r)) + "\n" for r in values)
    _write(tmp_path / f"binarized_mnist/binarized_mnist_{split}.amat",
           text.encode())
  ds = _load("binarized_mnist", _data_dir(tmp_path, "binarized_mnist", form))
  for split, values in rows.items():
    np.testing.assert_array_equal(ds.splits[split].reshape(-1, 784), values)


@pytest.mark.parametrize("form", FORMS)
def test_mnist_idx_files(tmp_path, form):
  images = np.zeros((10_002, 28, 28), np.uint8)
  images[:, 5:9, 5:9] = 255
  header = lambda n: np.asarray([0x803, n, 28, 28], ">u4").tobytes()
  _write(tmp_path / "mnist/train-images-idx3-ubyte.gz",
         gzip.compress(header(10_002) + images.tobytes()))
  _write(tmp_path / "mnist/t10k-images-idx3-ubyte",
         header(3) + images[:3].tobytes())
  ds = _load("mnist", _data_dir(tmp_path, "mnist", form))
  assert [ds.num_examples(s) for s in ("train", "valid", "test")] == [
      2, 10_000, 3]
  assert ds.splits["train"][0, 6, 6, 0] == 1.0


@pytest.mark.parametrize("form", FORMS)
def test_omniglot_archive(tmp_path, form):
  stroke = np.full((105, 105, 1), 255, np.uint8)
  stroke[:, :53] = 0                       # ink on the left half
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w") as archive:
    for i in range(10):
      archive.writestr(f"images_background_small1/A/c01/{i:02d}.png",
                       tf.io.encode_png(stroke).numpy())
  _write(tmp_path / "omniglot/images_background_small1.zip", buffer.getvalue())
  ds = _load("omniglot", _data_dir(tmp_path, "omniglot", form))
  assert [ds.num_examples(s) for s in ("train", "valid", "test")] == [8, 1, 1]
  assert ds.splits["train"][0, 14, 0, 0] == 1.0
  assert ds.splits["train"][0, 14, 27, 0] == 0.0


@pytest.mark.parametrize("name", ["ptb", "yahoo", "yelp"])
@pytest.mark.parametrize("form", FORMS)
def test_text_corpus_files(tmp_path, form, name):
  for split in ("train", "valid", "test"):
    _write(tmp_path / name / f"{name}.{split}.txt", f"a b {split}\n".encode())
  ds = _load(name, _data_dir(tmp_path, name, form))
  assert ds.vocab.decode(ds.splits["test"][0]) == ["a", "b", "<unk>"]
  assert ds.vocab.decode(ds.splits["train"][0]) == ["a", "b", "train"]


# Neither form: one line naming both folders and the files expected.

def test_text_corpus_in_neither_folder(tmp_path):
  with pytest.raises(errors.InputError) as raised:
    _load("ptb", str(tmp_path))
  assert str(raised.value) == (
      f"no files ptb.{{train,valid,test}}.txt in {tmp_path}/ptb nor in "
      f"{tmp_path} (the data folder: --data_dir, else $TF_CVAE_DATA): put the Penn Treebank of Mikolov et al. "
      "(simple-examples/data/ptb.{train,valid,test}.txt) there")


@pytest.mark.parametrize("name,expected", [
    ("binarized_mnist", "files binarized_mnist_{train,valid,test}.amat"),
    ("mnist", "files {train,t10k}-images-idx3-ubyte[.gz]"),
    ("omniglot", "Omniglot archive images_background.zip, "
                 "images_evaluation.zip or images_background_small1.zip")])
def test_image_set_in_neither_folder_and_no_tfds(tmp_path, offline, name,
                                                  expected):
  with pytest.raises(errors.InputError) as raised:
    _load(name, str(tmp_path))
  message = str(raised.value)
  assert message.startswith(f"no {expected} in {tmp_path}/{name} nor in "
                            f"{tmp_path} (the data folder: --data_dir, else "
                            "$TF_CVAE_DATA); put ")
  assert message.endswith(f"there, and the tfds builder '{name}' failed "
                          f"(RuntimeError: cannot download {name})")
  assert "\n" not in message
