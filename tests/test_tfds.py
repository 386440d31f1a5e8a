"""The tfds route (no local files, as on Colab), offline.

The real binarized_mnist builder prepares its splits from small local .amat
files handed to it in place of the download; tfds.testing.mock_data stands
for every image set with a tfds builder, and the training pipeline builds
from each and takes two steps.
"""

import errno
import glob
import math
import os
import socket
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.core import constants

from tf_cvae import data
from tf_cvae import errors
from tf_cvae.data import images
from tf_cvae.data import tfds_source
from tf_cvae.models import registry
from tf_cvae.training import build
from tf_cvae.training import config as config_lib

# An untrained decoder's Bernoulli means are near 1/2: about log 2 a pixel.
HALF_NATS = 28 * 28 * math.log(2)


@pytest.fixture
def empty_dir(tmp_path, monkeypatch):
  """A --data_dir without local files; tfds prepares under tmp_path/tfds."""
  monkeypatch.setattr(constants, "DATA_DIR", str(tmp_path / "tfds"))
  (tmp_path / "empty").mkdir()
  return str(tmp_path / "empty")


def _rows_sorted(values: np.ndarray) -> np.ndarray:
  """[N, 784] rows in lexicographic order (tfds shuffles the examples)."""
  return values[np.lexsort(values.T[::-1])]


def test_binarized_mnist_builder_prepares_from_its_files(tmp_path, empty_dir,
                                                         monkeypatch):
  rng = np.random.default_rng(0)
  rows = {"train": rng.integers(0, 2, (40, 784)),
          "valid": rng.integers(0, 2, (20, 784)),
          "test": rng.integers(0, 2, (12, 784))}
  files, asked = {}, []
  for split, key in (("train", "train_data"), ("valid", "validation_data"),
                     ("test", "test_data")):
    files[key] = str(tmp_path / f"binarized_mnist_{split}.amat")
    np.savetxt(files[key], rows[split], fmt="%d")

  def download(unused_manager, urls):      # the network, answered locally
    asked.extend(sorted(urls.values()))
    return {key: files[key] for key in urls}

  monkeypatch.setattr(tfds.download.DownloadManager, "download", download)
  monkeypatch.setattr(tfds_source, "network_reachable", lambda: True)
  ds = data.load(data.DataConfig(name="binarized_mnist", data_dir=empty_dir))
  assert [u.rsplit("/", 1)[1] for u in asked] == [
      "binarized_mnist_test.amat", "binarized_mnist_train.amat",
      "binarized_mnist_valid.amat"]
  for split, values in rows.items():
    got = ds.splits[split]
    assert got.shape == (len(values), 28, 28, 1) and got.dtype == np.float32
    np.testing.assert_array_equal(_rows_sorted(got.reshape(-1, 784)),
                                  _rows_sorted(values))


# name -> (mock values below, tfds examples a split, our split sizes).
MOCKS = {
    "binarized_mnist": (2, 40, {"train": 40, "valid": 40, "test": 40}),
    "mnist": (None, 48, {"train": 32, "valid": 16, "test": 48}),
    "omniglot": (None, 50, {"train": 40, "valid": 5, "test": 5}),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MOCKS))
def test_mock_data_trains(tmp_path, empty_dir, monkeypatch, name):
  max_value, count, sizes = MOCKS[name]
  # The last 10,000 training images are MNIST's valid split: 16 here, so
  # that a few dozen mock examples suffice.
  monkeypatch.setattr(images, "MNIST_VALID", 16)
  config = config_lib.TrainConfig(
      data=data.DataConfig(name=name, data_dir=empty_dir),
      model=registry.ModelConfig(name="mlp", hidden_dim=16, latent_dim=2),
      critic="self", batch_size=8, out_dir=str(tmp_path / "run"),
      jit_compile="off")
  with tfds.testing.mock_data(num_examples=count, max_value=max_value):
    dataset, step_fn = build.training_parts(config)
  assert {s: dataset.num_examples(s) for s in sizes} == sizes
  for split, values in dataset.splits.items():
    assert values.shape[1:] == (28, 28, 1) and values.dtype == np.float32
    assert values.min() >= 0.0 and values.max() <= 1.0, split
  # Grey sets' random pixels average 1/2; valid and test were drawn to 0/1.
  if name != "binarized_mnist":
    assert 0.4 < dataset.splits["train"].mean() < 0.6
    assert set(np.unique(dataset.splits["test"])) <= {0.0, 1.0}
  batches = list(build.epoch_batches(dataset, config, epoch=0).take(2))
  for batch in batches:
    image = batch["image"].numpy()
    assert image.shape == (8, 28, 28, 1) and image.dtype == np.float32
    assert set(np.unique(image)) == {0.0, 1.0}
    out = step_fn(batch)
    assert int(out["nonfinite"]) == 0
    assert 0.9 < float(out["rec"]) / HALF_NATS < 1.1, float(out["rec"])
  assert step_fn.iterations == 2


def test_binarized_mnist_from_tfds_must_be_binary(empty_dir):
  with tfds.testing.mock_data(num_examples=4):     # values 0 .. 254
    with pytest.raises(errors.InputError) as raised:
      data.load(data.DataConfig(name="binarized_mnist", data_dir=empty_dir))
  assert str(raised.value) == (
      "tfds binarized_mnist: split 'train' holds pixel values from 0 to 254, "
      "not 0 and 1 alone: not a binarized set")


def test_a_missing_module_says_what_to_install(empty_dir, monkeypatch):
  def load(name, split, **unused_kwargs):
    raise ModuleNotFoundError("No module named 'importlib_resources'\nmore",
                              name="importlib_resources")

  monkeypatch.setattr(tfds, "load", load)
  with pytest.raises(errors.InputError) as raised:
    data.load(data.DataConfig(name="mnist", data_dir=empty_dir))
  assert str(raised.value).endswith(
      "and the tfds builder 'mnist' failed (ModuleNotFoundError: No module "
      "named 'importlib_resources'; pip install importlib_resources)")


def test_offline_fails_in_seconds_naming_where_the_files_go(
    tmp_path, empty_dir, monkeypatch):
  def unreachable(*unused_args, **unused_kwargs):
    raise OSError(errno.ENETUNREACH, "Network is unreachable")

  monkeypatch.setattr(socket.socket, "connect", unreachable)
  monkeypatch.setattr(socket, "getaddrinfo", unreachable)
  partial = tmp_path / "tfds" / "downloads" / "mnist_files.tmp.0a1b"
  partial.mkdir(parents=True)             # what an earlier failure left
  started = time.time()
  with pytest.raises(errors.InputError) as raised:
    data.load(data.DataConfig(name="mnist", data_dir=empty_dir))
  seconds = time.time() - started
  assert seconds < 5, seconds
  message = str(raised.value)
  assert "\n" not in message
  assert message.startswith(f"no files {{train,t10k}}-images-idx3-ubyte[.gz] "
                            f"in {empty_dir}/mnist nor in {empty_dir} (the "
                            "data folder: --data_dir, else $TF_CVAE_DATA); put "
                            "the MNIST idx files there"), message
  assert message.endswith("(ConnectionError: no network "
                          "(storage.googleapis.com unreachable), so it "
                          "cannot download)"), message
  assert not glob.glob(str(tmp_path / "tfds" / "**" / "*.tmp*"),
                       recursive=True)
  # A run that never started leaves no run directory.
  from tf_cvae_runners import provenance
  config = config_lib.TrainConfig(
      data=data.DataConfig(name="mnist", data_dir=empty_dir),
      out_dir=str(tmp_path / "run"))
  with pytest.raises(errors.InputError, match="no network"):
    provenance.train_with_provenance(config, ["tf-cvae-train"], "")
  assert not os.path.exists(config.out_dir)


def test_download_false_never_asks_the_network(empty_dir, monkeypatch):
  asked = []

  def load(name, split, download=True):
    asked.append(download)
    raise AssertionError(f"Dataset {name}: could not find data in /tfds.")

  monkeypatch.setattr(tfds, "load", load)
  monkeypatch.setattr(tfds_source, "network_reachable",
                      lambda: pytest.fail("probed the network"))
  with pytest.raises(errors.InputError) as raised:
    data.load(data.DataConfig(name="mnist", data_dir=empty_dir,
                              download=False))
  assert asked == [False]
  assert str(raised.value).endswith(
      "and the tfds builder 'mnist' failed with --download=false "
      "(AssertionError: Dataset mnist: could not find data in /tfds.)")
