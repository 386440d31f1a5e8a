"""Reading a user's input file for a trained model: one reader, one rule set.

A text file holds one whitespace-tokenized sentence a line (UTF-8, an
optional byte-order mark); a blank line is refused, naming the file and line,
since row i of whatever is computed from the file belongs to line i. A .npy
file holds images [N, 28, 28] or [N, 28, 28, 1] with values in [0, 1].
`read_file(path, input_name)` reads either, for the input a model (or its
export) takes: "sentences" or "images" (formats.Sentences/Images.input_name).
Every problem is an errors.InputError naming the file.
"""

import os

import numpy as np

from tf_cvae import errors
from tf_cvae.data import base as data_base

INPUT_NAMES = ("sentences", "images")


def read_sentences(path: str) -> list[str]:
  """The sentences of a text file, one a line (a final newline ends the last
  line); refuses a blank line, a NUL byte, bad UTF-8 and an empty file."""
  with open(path, "rb") as f:
    data = f.read()
  if b"\0" in data:
    raise errors.InputError(
        f"{path}: NUL byte at byte {data.find(0)}: a binary file, not UTF-8 "
        "text with one sentence a line")
  try:
    text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
  except UnicodeDecodeError as e:
    line = data.count(b"\n", 0, e.start) + 1
    raise errors.InputError(f"{path}, line {line}: not valid UTF-8 "
                            f"({e.reason} at byte {e.start})") from None
  lines = text.removesuffix("\n").split("\n") if text else []
  for number, line in enumerate(lines, start=1):
    if not line.split():
      raise errors.InputError(f"{path}, line {number}: empty; every line "
                              "must hold a sentence")
  if not lines:
    raise errors.InputError(f"{path}: holds no sentences")
  return lines


def check_sentences(sentences: list[str], source: str = "sentences") -> None:
  """Refuses no sentences, and a sentence without a word, by its number."""
  if len(sentences) == 0:
    raise errors.InputError(f"{source}: no sentences given")
  for number, sentence in enumerate(sentences, start=1):
    if not sentence.split():
      raise errors.InputError(f"{source}: sentence {number} is empty")


def check_images(images, source: str = "images") -> np.ndarray:
  """[N, 28, 28] or [N, 28, 28, 1] numbers in [0, 1] -> float32 [N, 28, 28,
  1]; errors.InputError starting with `source` for anything else."""
  images = np.asarray(images)
  if images.dtype.kind not in "biuf":
    raise errors.InputError(f"{source}: not an array of numbers "
                            f"(dtype {images.dtype})")
  if images.shape[1:] not in (data_base.IMAGE_SHAPE[:2], data_base.IMAGE_SHAPE):
    raise errors.InputError(f"{source}: images must be [N, 28, 28] or "
                            f"[N, 28, 28, 1], got shape {list(images.shape)}")
  if len(images) == 0:
    raise errors.InputError(f"{source}: holds no images")
  images = images.reshape((-1,) + data_base.IMAGE_SHAPE).astype(np.float32)
  if not (images.min() >= 0.0 and images.max() <= 1.0):     # NaN fails too
    raise errors.InputError(f"{source}: image values must lie in [0, 1], "
                            f"got [{images.min():g}, {images.max():g}]")
  return images


def read_images(path: str) -> np.ndarray:
  """The images of a .npy file as float32 [N, 28, 28, 1] (check_images)."""
  try:
    images = np.load(path, allow_pickle=False)
  except (OSError, EOFError, ValueError) as error:
    raise errors.InputError(f"{path}: not a readable .npy array: "
                            f"{error}") from None
  if not isinstance(images, np.ndarray):                  # an .npz archive
    raise errors.InputError(f"{path}: not one .npy array")
  return check_images(images, path)


def read_file(path: str, input_name: str):
  """The inputs in `path` for a model taking `input_name` (INPUT_NAMES):
  a list of N sentences, or float32 images [N, 28, 28, 1]."""
  if input_name not in INPUT_NAMES:
    raise errors.InputError(f"no reader for inputs named {input_name!r}")
  if not os.path.isfile(path):
    raise errors.InputError(f"{path}: no such file")
  if (input_name == "images") != path.endswith(".npy"):
    raise errors.InputError(
        f"{path}: the model encodes {input_name}; give " +
        ("a .npy file of images" if input_name == "images"
         else "a text file of sentences, one a line"))
  if input_name == "sentences":
    return read_sentences(path)
  return read_images(path)
