"""Binary 28x28 image sets from local files, else from tensorflow-datasets.

binarized_mnist: the statically binarized MNIST of Larochelle & Murray
  (binarized_mnist/binarized_mnist_{train,valid,test}.amat, 50,000 / 10,000 /
  10,000 lines of 784 space-separated 0/1 values); binarization "none".
mnist: grey MNIST (mnist/{train,t10k}-images-idx3-ubyte[.gz]); the last 10,000
  training images are the validation split. Intensities / 255 are Bernoulli
  probabilities: train "dynamic", valid and test "fixed".
omniglot: the original archives of 105x105 PNGs (omniglot/images_background.zip
  and images_evaluation.zip, else images_background_small{1,2}.zip), or the
  tfds train+test splits. Strokes (black on white) become probability 1, and
  images shrink to 28x28 by area averaging. The split is a fixed permutation
  (seed 0) of the images in canonical order (archive, then path in it):
  the first 10% test, the next 10% valid, the rest train; train "dynamic",
  valid and test "fixed". From local archives, `labels` holds each image's
  alphabet and character index (from its folders in the archive).
Each set's files may be in <data_dir>/<name>/ or in data_dir itself
(folders.py); with neither, the set comes from tfds (tfds_source.py).
images: your own, from a folder of PNG/JPEG files (class subfolders read as
  labels) or a .npy/.npz array [N, H, W(, C)] (load_own_images).
"""

import functools
import gzip
import os
import re
from typing import TYPE_CHECKING
import zipfile
import zlib

from absl import logging
import numpy as np
import tensorflow as tf

from tf_cvae import errors
from tf_cvae.data import base
from tf_cvae.data import folders
from tf_cvae.data import text
from tf_cvae.data import tfds_source

if TYPE_CHECKING:
  from tf_cvae.data import DataConfig

AMAT_WIDTH = 784
BINARIZED_MNIST_SIZES = {"train": 50_000, "valid": 10_000, "test": 10_000}
MNIST_VALID = 10_000
OMNIGLOT_SIZE = 105
# The full pair first, then the small subsets of "background".
OMNIGLOT_ARCHIVES = ["images_background.zip", "images_evaluation.zip",
                     "images_background_small1.zip",
                     "images_background_small2.zip"]
OMNIGLOT_SPLIT_SEED = 0
_SPLITS_GREY = {"train": "dynamic", "valid": "fixed", "test": "fixed"}


def _check_file(path: str, what: str) -> None:
  if not os.path.isfile(path):
    raise errors.InputError(f"{path}: no such file; put {what} there")
  if os.path.getsize(path) == 0:
    raise errors.InputError(f"{path}: the file is empty")


def _read_bytes(path: str, what: str) -> bytes:
  _check_file(path, what)
  with open(path, "rb") as f:
    data = f.read()
  if path.endswith(".gz"):
    try:
      data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
      raise errors.InputError(f"{path}: not a readable gzip file ({e})") from None
  if not data:
    raise errors.InputError(f"{path}: the file is empty")
  return data


def _amat_error(path: str, data: bytes) -> errors.InputError | None:
  """The first bad line of an .amat file, as an InputError (None if all good)."""
  for number, line in enumerate(data.split(b"\n"), start=1):
    values = line.split()
    if len(values) != AMAT_WIDTH:
      return errors.InputError(f"{path}, line {number}: {len(values)} values, expected "
                        f"{AMAT_WIDTH} (28x28)")
    if set(values) <= {b"0", b"1"}:
      continue
    for column, value in enumerate(values, start=1):
      if value not in (b"0", b"1"):
        text = value[:20].decode("utf-8", "replace")
        return errors.InputError(f"{path}, line {number}: value {text!r} in column "
                          f"{column} is not 0 or 1")
  return None


def parse_amat(path: str) -> np.ndarray:
  """Reads an .amat file of 0/1 rows: uint8 [lines, 784] (fast, byte-level)."""
  data = _read_bytes(path, "binarized_mnist_{train,valid,test}.amat "
                     "(Larochelle & Murray)").replace(b"\r\n", b"\n")
  data = data.rstrip(b"\n") + b"\n"
  row = 2 * AMAT_WIDTH                 # "v v ... v\n": 784 digits, 784 gaps
  if len(data) % row == 0:
    chars = np.frombuffer(data, np.uint8).reshape(-1, row)
    digits = chars[:, 0::2]
    if ((chars[:, 1:-1:2] == ord(" ")).all() and (chars[:, -1] == ord("\n")).all()
        and ((digits == ord("0")) | (digits == ord("1"))).all()):
      return (digits == ord("1")).astype(np.uint8)
  error = _amat_error(path, data[:-1])
  if error:
    raise error
  # Well-formed but unevenly spaced: the slow route.
  return np.asarray([[v == b"1" for v in line.split()]
                     for line in data[:-1].split(b"\n")], np.uint8)


@functools.lru_cache(maxsize=3)
def _cached_amat(path: str, unused_stamp: tuple) -> np.ndarray:
  images = parse_amat(path).reshape(-1, 28, 28, 1)
  images.flags.writeable = False
  return images


def _stamp(path: str) -> tuple:
  stat = os.stat(path)
  return stat.st_size, stat.st_mtime_ns


def parse_idx_images(path: str) -> np.ndarray:
  """Reads an MNIST idx3 image file (optionally .gz): uint8 [N, 28, 28]."""
  data = _read_bytes(path, "the MNIST idx image file (yann.lecun.com/exdb/mnist)")
  if len(data) < 16:
    raise errors.InputError(f"{path}: {len(data)} bytes, too short for an idx header")
  magic, count, rows, cols = (int(v) for v in np.frombuffer(data[:16], ">u4"))
  if magic != 0x803 or (rows, cols) != (28, 28):
    raise errors.InputError(f"{path}: not an idx3 file of 28x28 uint8 images (magic "
                     f"{magic:#x}, {rows}x{cols})")
  if len(data) != 16 + count * 784:
    raise errors.InputError(f"{path}: header says {count} images ({16 + count * 784} "
                     f"bytes) but the file holds {len(data)} bytes")
  return np.frombuffer(data, np.uint8, offset=16).reshape(count, 28, 28)


def load_binarized_mnist(config: "DataConfig") -> base.ImageDataset:
  """Statically binarized MNIST: local .amat files, else tfds."""
  names = [f"binarized_mnist_{s}.amat" for s in base.SPLITS]
  data_dir = config.resolved_data_dir()
  root = folders.dataset_folder(data_dir, "binarized_mnist", names)
  if root:
    logging.info("binarized_mnist: local files in %s", root)
    paths = {s: os.path.join(root, n) for s, n in zip(base.SPLITS, names)}
    splits = {s: _cached_amat(p, _stamp(p) if os.path.exists(p) else ())
              for s, p in paths.items()}
    for split, images in splits.items():
      if len(images) != BINARIZED_MNIST_SIZES[split]:
        logging.warning("%s: %d images, expected %d", paths[split],
                        len(images), BINARIZED_MNIST_SIZES[split])
  else:
    splits = tfds_source.load_images(
        "binarized_mnist",
        {"train": "train", "valid": "validation", "test": "test"},
        folders.not_found(data_dir, "binarized_mnist",
                          "files binarized_mnist_{train,valid,test}.amat")
        + "; put the Larochelle & Murray files there", config.download)
    tfds_source.check_binary("binarized_mnist", splits)
  splits = {s: np.asarray(v, np.float32) for s, v in splits.items()}
  return base.ImageDataset(
      name="binarized_mnist", splits=splits, fixed_seed=config.seed,
      binarization={s: "none" for s in base.SPLITS})


def _idx_path(root: str, stem: str) -> str | None:
  paths = (os.path.join(root, stem), os.path.join(root, stem + ".gz"))
  return next((p for p in paths if os.path.exists(p)), None)


def load_mnist(config: "DataConfig") -> base.ImageDataset:
  """Grey MNIST as probabilities: local idx files, else tfds."""
  stems = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
  data_dir = config.resolved_data_dir()
  root = folders.dataset_folder(
      data_dir, "mnist", [n + gz for n in stems.values() for gz in ("", ".gz")])
  if root:
    logging.info("mnist: local idx files in %s", root)
    grey = {s: parse_idx_images(_idx_path(root, stem) or
                                os.path.join(root, stem))
            for s, stem in stems.items()}
  else:
    grey = tfds_source.load_images(
        "mnist", {"train": "train", "test": "test"},
        folders.not_found(data_dir, "mnist",
                          "files {train,t10k}-images-idx3-ubyte[.gz]")
        + "; put the MNIST idx files there", config.download)
  train = grey["train"].reshape(-1, 28, 28, 1)
  if len(train) <= MNIST_VALID:
    raise errors.InputError(f"mnist: {len(train)} training images; the last "
                            f"{MNIST_VALID} are the validation split: need more")
  probs = lambda x: np.asarray(x, np.float32).reshape(-1, 28, 28, 1) / 255.0
  splits = {"train": probs(train[:-MNIST_VALID]),
            "valid": probs(train[-MNIST_VALID:]), "test": probs(grey["test"])}
  return base.ImageDataset(name="mnist", splits=splits, fixed_seed=config.seed,
                           binarization=dict(_SPLITS_GREY))


_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError,
               OSError, NotImplementedError, RuntimeError)


def _png(path: str, member: str, raw: bytes) -> np.ndarray:
  """One Omniglot PNG: uint8 [105, 105, 1] (InputError naming the member)."""
  try:
    image = tf.io.decode_png(raw, channels=1).numpy()
  except tf.errors.InvalidArgumentError as e:
    reason = re.sub(r"\{\{.*?\}\}|\[Op:.*?\]", "", e.message).strip()
    raise errors.InputError(f"{path}: {member}: not a valid PNG ({reason})") from None
  if image.shape[:2] != (OMNIGLOT_SIZE,) * 2:
    raise errors.InputError(
        f"{path}: {member}: image is {image.shape[0]}x{image.shape[1]} "
        f"pixels, expected {OMNIGLOT_SIZE}x{OMNIGLOT_SIZE}")
  return image


def read_omniglot_zip(path: str) -> np.ndarray:
  """An Omniglot archive's PNGs by path: uint8 [N, 105, 105, 1] (InputError
  naming the archive and member when damaged, encrypted or unsupported)."""
  _check_file(path, "an Omniglot archive (github.com/brendenlake/omniglot)")
  try:
    archive = zipfile.ZipFile(path)
  except _ZIP_ERRORS as e:
    raise errors.InputError(f"{path}: not a readable zip archive "
                            f"({e or type(e).__name__})") from None
  with archive:
    members = sorted(n for n in archive.namelist() if n.lower().endswith(".png"))
    if not members:
      raise errors.InputError(f"{path}: the archive holds no PNG images")
    images = np.empty((len(members), OMNIGLOT_SIZE, OMNIGLOT_SIZE, 1), np.uint8)
    for i, member in enumerate(members):
      try:
        raw = archive.read(member)
      except _ZIP_ERRORS as e:
        raise errors.InputError(f"{path}: {member}: corrupt in the archive "
                                f"({e or type(e).__name__})") from None
      images[i] = _png(path, member, raw)
  return images


def omniglot_labels(archives) -> dict[str, np.ndarray]:
  """Each image's classes from its path <alphabet>/<character>/<drawer>.png
  in the archives (images in read_omniglot_zip's order, archive by archive):
  {"alphabet": int64 [N], "character": int64 [N]}, indices of the sorted
  alphabet names and of the sorted (alphabet, character) pairs over all
  the archives."""
  pairs = []
  for path in archives:
    with zipfile.ZipFile(path) as archive:
      members = sorted(n for n in archive.namelist()
                       if n.lower().endswith(".png"))
    for member in members:          # a PNG outside such folders: class ""
      parts = ["", ""] + member.split("/")
      pairs.append((parts[-3], parts[-2]))
  alphabets = sorted({a for a, _ in pairs})
  characters = sorted(set(pairs))
  alphabet_id = {a: i for i, a in enumerate(alphabets)}
  character_id = {c: i for i, c in enumerate(characters)}
  return {"alphabet": np.asarray([alphabet_id[a] for a, _ in pairs], np.int64),
          "character": np.asarray([character_id[p] for p in pairs], np.int64)}


def strokes_28(grey: np.ndarray) -> np.ndarray:
  """Black-on-white uint8 [N, H, W, 1] -> stroke probabilities [N, 28, 28, 1]."""
  out = []
  for start in range(0, len(grey), 2048):
    ink = 1.0 - tf.cast(grey[start:start + 2048], tf.float32) / 255.0
    out.append(tf.image.resize(ink, (28, 28), method="area").numpy())
  return np.clip(np.concatenate(out), 0.0, 1.0)


def omniglot_archives(root: str) -> list[str]:
  """The local archives to read: the full pair if present, else the small ones."""
  full = [os.path.join(root, n) for n in OMNIGLOT_ARCHIVES[:2]]
  small = [os.path.join(root, n) for n in OMNIGLOT_ARCHIVES[2:]]
  found = [p for p in full if os.path.exists(p)]
  if os.path.exists(full[0]):    # the small sets are subsets of "background"
    return found
  return found + [p for p in small if os.path.exists(p)]


@functools.lru_cache(maxsize=2)
def _omniglot_probs(archives: tuple[str, ...], unused_stamps: tuple
                    ) -> np.ndarray:
  images = strokes_28(np.concatenate([read_omniglot_zip(p) for p in archives]))
  images.flags.writeable = False
  return images


def load_omniglot(config: "DataConfig") -> base.ImageDataset:
  """Omniglot as 28x28 stroke probabilities: local zip archives, else tfds."""
  data_dir = config.resolved_data_dir()
  root = folders.dataset_folder(data_dir, "omniglot", OMNIGLOT_ARCHIVES)
  if root:
    archives = tuple(omniglot_archives(root))
    logging.info("omniglot: local archives %s", ", ".join(archives))
    images = _omniglot_probs(archives, tuple(_stamp(p) for p in archives))
    labels = omniglot_labels(archives)
  else:
    labels = None
    grey = tfds_source.load_images(
        "omniglot", {"all": "train+test"},
        folders.not_found(data_dir, "omniglot",
                          "Omniglot archive images_background.zip, "
                          "images_evaluation.zip or "
                          "images_background_small1.zip")
        + "; put the zip files of github.com/brendenlake/omniglot there",
        config.download)["all"]
    images = strokes_28(grey)
  if len(images) < 10:
    raise errors.InputError(f"omniglot: {len(images)} images, need at least 10 to split")
  order = np.random.default_rng(OMNIGLOT_SPLIT_SEED).permutation(len(images))
  held = len(images) // 10
  index = {"train": order[2 * held:], "valid": order[held:2 * held],
           "test": order[:held]}
  splits = {s: images[np.sort(i)] for s, i in index.items()}
  if labels is not None:
    labels = {s: {name: values[np.sort(i)] for name, values in labels.items()}
              for s, i in index.items()}
  return base.ImageDataset(name="omniglot", splits=splits,
                           fixed_seed=config.seed,
                           binarization=dict(_SPLITS_GREY), labels=labels)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _unit_images(values: np.ndarray, path: str, size: int,
                 channels: int) -> np.ndarray:
  """Images [N, H, W] or [N, H, W, C] (integers 0-255, or floats in
  [0, 1]) as float32 [N, size, size, channels] in [0, 1]: resized by area
  averaging, colour made grey (or grey repeated) to `channels`."""
  if values.ndim == 3:
    values = values[..., None]
  if values.ndim != 4 or len(values) == 0:
    raise errors.InputError(f"{path}: expected images [N, H, W] or [N, H, W, "
                            f"C], got an array of shape {values.shape}")
  if np.issubdtype(values.dtype, np.integer):
    values = values.astype(np.float32) / 255.0
  else:
    values = values.astype(np.float32)
    if values.min() < 0 or values.max() > 1:
      raise errors.InputError(f"{path}: float images must lie in [0, 1], got "
                              f"{values.min():g} to {values.max():g}")
  have = values.shape[-1]
  if have != channels:
    if channels == 1 and have in (3, 4):
      values = tf.image.rgb_to_grayscale(values[..., :3]).numpy()
    elif have == 1:
      values = np.repeat(values, channels, axis=-1)
    else:
      raise errors.InputError(f"{path}: images of {have} channels cannot be "
                              f"read with {channels}")
  if values.shape[1:3] != (size, size):
    logging.info("%s: %dx%d images resized to the models' %dx%d", path,
                 values.shape[1], values.shape[2], size, size)
    values = np.concatenate([
        tf.image.resize(values[i:i + 2048], (size, size), method="area")
        .numpy() for i in range(0, len(values), 2048)])
  return np.clip(values, 0.0, 1.0)


def read_image_folder(folder: str, size: int, channels: int):
  """(images float32 [N, size, size, channels] in [0, 1], each image's class
  name [N] or None) of the PNG/JPEG files under `folder`, in sorted path
  order; the first-level subfolders are the classes ("" outside them)."""
  paths = []
  for root, dirs, names in os.walk(folder):
    dirs.sort()
    paths += [os.path.join(root, n) for n in sorted(names)
              if n.lower().endswith(IMAGE_SUFFIXES)]
  if not paths:
    raise errors.InputError(f"{folder}: no PNG or JPEG files in it nor in its "
                            "subfolders")
  images, shapes = [], set()
  for path in paths:
    try:
      image = tf.io.decode_image(tf.io.read_file(path), channels=channels,
                                 expand_animations=False)
    except tf.errors.InvalidArgumentError:
      raise errors.InputError(f"{path}: not a readable PNG or JPEG "
                              "image") from None
    shapes.add(tuple(image.shape[:2]))
    images.append(tf.image.resize(tf.cast(image, tf.float32) / 255.0,
                                  (size, size), method="area").numpy())
  relative = [os.path.relpath(p, folder).split(os.sep) for p in paths]
  classes = sorted({r[0] for r in relative if len(r) > 1})
  labels = (np.asarray([r[0] if len(r) > 1 else "" for r in relative])
            if classes else None)
  logging.info("%s: %d images%s", folder, len(paths),
               f" in {len(classes)} classes" if classes else "")
  if shapes != {(size, size)}:
    logging.info("%s: images of %s resized to the models' %dx%d", folder,
                 ", ".join(f"{h}x{w}" for h, w in sorted(shapes)), size, size)
  return np.clip(np.stack(images), 0.0, 1.0), labels


def read_image_array(path: str, size: int, channels: int):
  """(images as read_image_folder's, labels or None) of a .npy file, or of a
  .npz file's "images" array (else its only one) and "labels" if any."""
  try:
    loaded = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise errors.InputError(f"{path}: not a readable .npy/.npz file "
                            f"({e})") from None
  labels = None
  if isinstance(loaded, np.lib.npyio.NpzFile):
    with loaded:
      keys = list(loaded.keys())
      key = "images" if "images" in keys else keys[0] if len(keys) == 1 else None
      if key is None:
        raise errors.InputError(f"{path}: holds {', '.join(keys)}; name the "
                                "images array 'images'")
      values = loaded[key]
      if "labels" in keys:
        labels = np.asarray(loaded["labels"], np.int64)
  else:
    values = loaded
  return _unit_images(values, path, size, channels), labels


def _read_own(path: str, size: int, channels: int):
  if os.path.isdir(path):
    return read_image_folder(path, size, channels)
  if path.endswith((".npy", ".npz")):
    if not os.path.isfile(path):
      raise errors.InputError(f"{path}: no such file")
    return read_image_array(path, size, channels)
  raise errors.InputError(f"{path}: neither a folder of PNG/JPEG files nor a "
                          ".npy/.npz file")


def load_own_images(config: "DataConfig") -> base.ImageDataset:
  """`--dataset=images`: config.train_file a folder of PNG/JPEG files or a
  .npy/.npz array; valid_file and test_file likewise, or (both unset) held
  out of it (config.held_out each, seeded by config.seed, sizes logged).

  Images of any size and colour are resized to the image models' 28x28 and
  made grey (base.IMAGE_SHAPE). binarize "dynamic": intensities are probabilities
  (train redrawn every epoch, valid and test drawn once); "threshold": a
  pixel is 1 from config.threshold on, in every split.
  """
  size, _, channels = base.IMAGE_SHAPE
  if config.binarize not in ("dynamic", "threshold"):
    raise errors.InputError(f"binarize must be dynamic or threshold, got "
                            f"{config.binarize!r}")
  if not config.train_file or bool(config.valid_file) != bool(
      config.test_file):
    raise errors.InputError(
        "data set 'images' needs train_file (a folder of PNG/JPEG files or a "
        ".npy/.npz file), with valid_file and test_file or neither")
  data_dir = config.resolved_data_dir()
  read = lambda path: _read_own(text.resolve(path, data_dir), size, channels)
  train, train_labels = read(config.train_file)
  if config.valid_file:
    (valid, valid_labels), (test, test_labels) = (
        read(config.valid_file), read(config.test_file))
    splits = {"train": train, "valid": valid, "test": test}
    labels = {"train": train_labels, "valid": valid_labels,
              "test": test_labels}
  else:
    rows = base.held_out_rows(len(train), config.held_out, config.seed,
                              ("valid", "test"), config.train_file, "images")
    splits = {split: train[r] for split, r in rows.items()}
    labels = {split: None if train_labels is None else train_labels[r]
              for split, r in rows.items()}
  if config.binarize == "threshold":
    splits = {s: (v >= config.threshold).astype(np.float32)
              for s, v in splits.items()}
    binarization = {s: "none" for s in base.SPLITS}
  else:
    binarization = dict(_SPLITS_GREY)
  has_labels = all(v is not None for v in labels.values())
  if has_labels and labels["train"].dtype.kind == "U":   # class folders
    classes = sorted(set(labels["train"]) - {""})     # train's, every split
    index = {name: i for i, name in enumerate(classes)}
    labels = {split: np.asarray([index.get(name, -1) for name in names],
                                np.int64) for split, names in labels.items()}
  return base.ImageDataset(
      name="images", splits=splits, fixed_seed=config.seed,
      binarization=binarization,
      labels={s: {"class": v} for s, v in labels.items()} if has_labels
      else None)
