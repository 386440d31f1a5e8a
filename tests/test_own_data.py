"""Your own data: a text file alone (valid and test held out of it), and
images from a folder of PNG/JPEG files or from .npy/.npz arrays."""

import json
import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import data
from tf_cvae import errors

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sentences(path, count, seed=0):
  rng = np.random.default_rng(seed)
  lines = []
  for i in range(count):
    words = [f"w{(i + 3 * j) % 30}" for j in range(rng.integers(3, 8))]
    lines.append(" ".join(words))
  path.write_text("\n".join(lines) + "\n")
  return lines


def test_a_train_file_alone_holds_out_valid_and_test(tmp_path, caplog):
  caplog.set_level(logging.INFO, logger="absl")
  lines = _sentences(tmp_path / "mine.txt", 100)
  config = data.DataConfig(name="text", train_file=str(tmp_path / "mine.txt"),
                           held_out=0.1, seed=3)
  ds = data.load(config)
  sizes = {s: ds.num_examples(s) for s in ("train", "valid", "test")}
  assert sizes == {"train": 80, "valid": 10, "test": 10}
  assert re.search(r"mine\.txt: held out 10 sentences for valid and 10 for "
                   r"test \(seed 3\), 80 left to train on", caplog.text)
  decoded = {s: [" ".join(ds.vocab.decode(x)) for x in ds.splits[s]]
             for s in sizes}
  # The three parts partition the file; the same seed, the same parts.
  assert sorted(sum(decoded.values(), [])) == sorted(lines)
  again = data.load(config)
  assert [list(x) for x in again.splits["test"]] == [
      list(x) for x in ds.splits["test"]]
  other = data.load(data.DataConfig(name="text", held_out=0.1, seed=4,
                                    train_file=str(tmp_path / "mine.txt")))
  assert [list(x) for x in other.splits["test"]] != [
      list(x) for x in ds.splits["test"]]
  # The vocabulary comes from the training part alone.
  train_words = {w for s in decoded["train"] for w in s.split()}
  assert set(ds.vocab.tokens[4:]) == train_words


def test_one_held_out_file_alone_is_refused(tmp_path):
  _sentences(tmp_path / "mine.txt", 20)
  with pytest.raises(errors.InputError, match="needs test_file"):
    data.load(data.DataConfig(name="text", train_file=str(tmp_path / "mine.txt"),
                              valid_file=str(tmp_path / "mine.txt")))


def _png_folder(root, count=24, size=(20, 16), classes=("cat", "dog")):
  """count grey or RGB images (PNG and JPEG) in class subfolders: class 0
  dark, class 1 bright."""
  rng = np.random.default_rng(0)
  for i in range(count):
    label = i % len(classes)
    folder = root / classes[label]
    folder.mkdir(parents=True, exist_ok=True)
    value = 30 if label == 0 else 230
    pixels = np.full((*size, 3), value, np.uint8)
    pixels[rng.integers(0, size[0]), :, :] = 255 - value
    if i % 3:
      encoded = tf.io.encode_png(pixels)
      name = f"{i}.png"
    else:
      encoded = tf.io.encode_jpeg(pixels, quality=100)
      name = f"{i}.JPG"
    tf.io.write_file(str(folder / name), encoded)


def test_a_folder_of_pngs_and_jpegs_with_class_subfolders(tmp_path, caplog):
  caplog.set_level(logging.INFO, logger="absl")
  _png_folder(tmp_path / "pics")
  ds = data.load(data.DataConfig(name="images", train_file=str(
      tmp_path / "pics"), held_out=0.125, seed=1))
  sizes = {s: ds.num_examples(s) for s in ("train", "valid", "test")}
  assert sizes == {"train": 18, "valid": 3, "test": 3}
  assert "held out 3 images for valid and 3 for test (seed 1)" in caplog.text
  assert "24 images in 2 classes" in caplog.text
  assert "images of 20x16 resized to the models' 28x28" in caplog.text
  for split, images in ds.splits.items():
    assert images.shape[1:] == (28, 28, 1) and images.dtype == np.float32
    labels = ds.labels[split]["class"]
    # Dark images are class 0 (cat), bright ones class 1 (dog).
    means = images.reshape(len(images), -1).mean(axis=1)
    assert ((means > 0.5) == (labels == 1)).all(), split
  # valid and test are drawn once (0/1); train stays probabilities.
  assert set(np.unique(ds.splits["test"])) <= {0.0, 1.0}
  assert ds.binarization["train"] == "dynamic"


def test_arrays_and_a_threshold(tmp_path):
  rng = np.random.default_rng(0)
  grey = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
  np.save(tmp_path / "x.npy", grey)
  ds = data.load(data.DataConfig(name="images", train_file=str(
      tmp_path / "x.npy"), binarize="threshold", threshold=0.5))
  assert sum(ds.num_examples(s) for s in ("train", "valid", "test")) == 30
  everything = np.concatenate([ds.splits[s] for s in ("train", "valid",
                                                      "test")])
  assert set(np.unique(everything)) == {0.0, 1.0}
  # Threshold 0.5: a pixel is 1 from intensity 128 (128 / 255 >= 0.5) on.
  assert everything.sum() == (grey >= 128).sum()
  assert ds.binarization == {s: "none" for s in ("train", "valid", "test")}
  # .npz with labels, RGB floats of another size: resized and made grey.
  rgb = rng.random((12, 14, 14, 3)).astype(np.float32)
  np.savez(tmp_path / "y.npz", images=rgb, labels=np.arange(12) % 3)
  ds = data.load(data.DataConfig(name="images", held_out=0.25,
                                 train_file=str(tmp_path / "y.npz")))
  assert ds.splits["train"].shape == (6, 28, 28, 1)
  every_label = np.concatenate([ds.labels[s]["class"] for s in ("train", "valid",
                                                      "test")])
  np.testing.assert_array_equal(np.sort(every_label),
                                np.sort(np.arange(12) % 3))
  grey = tf.image.rgb_to_grayscale(rgb).numpy().mean()
  assert np.concatenate(list(ds.splits.values())).mean() == pytest.approx(
      grey, abs=0.05)     # valid and test drawn to 0/1 from the same means
  # valid and test files of their own; without labels there are none.
  np.save(tmp_path / "v.npy", rgb[:4])
  ds = data.load(data.DataConfig(
      name="images", train_file=str(tmp_path / "y.npz"),
      valid_file=str(tmp_path / "v.npy"), test_file=str(tmp_path / "v.npy")))
  assert [ds.num_examples(s) for s in ("train", "valid", "test")] == [12, 4, 4]
  assert ds.labels is None


def test_a_file_neither_folder_nor_array_is_refused_in_one_line(tmp_path):
  with pytest.raises(errors.InputError, match=r"x\.txt: neither a folder"):
    data.load(data.DataConfig(name="images",
                              train_file=str(tmp_path / "x.txt")))


def _train(cwd, *args):
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  return subprocess.run(
      [sys.executable, "-m", "tf_cvae_runners.train", *args, "--max_steps=3",
       "--latent_dim=2", "--hidden_dim=8", "--iw_samples=2",
       "--iw_chunk_size=2", "--iw_report=", "--batch_size=4", "--json"],
      capture_output=True, text=True, cwd=str(cwd), env=env, timeout=600)


@pytest.mark.slow
def test_own_text_and_own_images_train_end_to_end(tmp_path):
  _sentences(tmp_path / "my_corpus.txt", 60)
  text = _train(tmp_path, "--dataset=text", "--train_file=my_corpus.txt",
                "--embed_dim=8", "--out_dir=text_run")
  assert text.returncode == 0, text.stderr[-3000:]
  assert "held out 6 sentences for valid and 6 for test" in text.stderr
  metrics = json.loads(text.stdout)
  assert metrics["steps"] == 3 and metrics["num_examples"] == 6
  assert np.isfinite(metrics["nll"])
  _png_folder(tmp_path / "my_images", count=20)
  images = _train(tmp_path, "--dataset=images", "--train_file=my_images",
                  "--binarize=threshold", "--out_dir=image_run")
  assert images.returncode == 0, images.stderr[-3000:]
  metrics = json.loads(images.stdout)
  assert metrics["steps"] == 3 and metrics["num_examples"] == 2
  assert np.isfinite(metrics["nll"])


def test_separate_folders_share_the_training_folders_class_numbers(tmp_path):
  # The test folder holds only "dog" (and a class train never saw): its
  # images read train's number for dog, and -1 for the unseen class.
  _png_folder(tmp_path / "train", count=8)
  _png_folder(tmp_path / "valid", count=4)
  _png_folder(tmp_path / "test", count=4, classes=("dog", "emu"))
  ds = data.load(data.DataConfig(
      name="images", train_file=str(tmp_path / "train"),
      valid_file=str(tmp_path / "valid"), test_file=str(tmp_path / "test")))
  assert sorted(np.unique(ds.labels["train"]["class"])) == [0, 1]
  test = ds.labels["test"]["class"]
  # In that folder "dog" is its first class (dark), "emu" its second.
  dark = ds.splits["test"].reshape(4, -1).mean(axis=1) < 0.5
  assert (test[dark] == 1).all() and (test[~dark] == -1).all()
