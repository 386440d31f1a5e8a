"""Encodes sentences or images with an exported encoder; saves posterior means.

  python runners/encode.py --export_dir=RUN_DIR/export --input=sentences.txt \
      --output=means.npy

--input is a text file, one whitespace-tokenized sentence a line (text
models), or a .npy file of images [N, 28, 28] or [N, 28, 28, 1] with values
in [0, 1] (image models). --output receives float32 [N, latent]: the means of
q(z|x), row i for input i.

Only TensorFlow and NumPy are needed: the export (runners/export.py) holds the
vocabulary and the network, and this script does not import tf_cvae.
"""

import os
import re
import sys

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

flags.DEFINE_string("export_dir", None, "SavedModel written by export.py.",
                    required=True)
flags.DEFINE_string("input", None, "Text file (one sentence a line) or .npy "
                    "file of images.", required=True)
flags.DEFINE_string("output", None, ".npy file for the posterior means "
                    "[N, latent].", required=True)
flags.DEFINE_integer("batch_size", 256, "Inputs per encoder call.",
                     lower_bound=1)

FLAGS = flags.FLAGS


class InputError(Exception):
  """A problem with the user's input, reported as one line."""


def _read_sentences(path: str) -> np.ndarray:
  """The lines of a UTF-8 text file (no final empty line), object [N]."""
  with open(path, "rb") as f:
    data = f.read()
  if b"\0" in data:
    raise InputError(f"--input={path}: NUL byte at byte {data.find(0)}: a "
                     "binary file, not UTF-8 text with one sentence a line")
  try:
    text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
  except UnicodeDecodeError as e:
    line = data.count(b"\n", 0, e.start) + 1
    raise InputError(f"--input={path}, line {line}: not valid UTF-8 "
                     f"({e.reason} at byte {e.start})") from None
  lines = text.removesuffix("\n").split("\n") if text else []
  for number, line in enumerate(lines, start=1):
    if not line.split():     # row i of the output is line i: no skipping
      raise InputError(f"--input={path}, line {number}: empty; every line "
                       "must hold a sentence")
  return np.asarray(lines, dtype=object)


def _read_images(path: str) -> np.ndarray:
  """The images of a .npy file as float32 [N, 28, 28, 1]."""
  try:
    images = np.load(path, allow_pickle=False)
  except (OSError, EOFError, ValueError) as error:
    raise InputError(f"--input={path}: not a readable .npy array: "
                     f"{error}") from None
  if getattr(images, "dtype", np.dtype("O")).kind not in "biuf":   # npz: none
    raise InputError(f"--input={path}: not one .npy array of numbers")
  if images.shape[1:] not in ((28, 28), (28, 28, 1)):
    raise InputError(f"--input={path}: images must be [N, 28, 28] or "
                     f"[N, 28, 28, 1], got shape {list(images.shape)}")
  return images.reshape((-1, 28, 28, 1)).astype(np.float32)


def read_inputs(path: str, input_name: str) -> np.ndarray:
  """The inputs of `path` as the export's `input_name` expects them."""
  if not os.path.isfile(path):
    raise InputError(f"--input={path}: no such file")
  is_npy = path.endswith(".npy")
  if (input_name == "images") != is_npy:
    raise InputError(f"--input={path}: the export encodes {input_name}; give "
                     + ("a .npy file of images" if input_name == "images"
                        else "a text file of sentences, one a line"))
  if input_name == "sentences":
    return _read_sentences(path)
  return _read_images(path)


def _assertion(error: tf.errors.InvalidArgumentError) -> str:
  """The message of a failed tf.debugging assertion inside the export."""
  found = re.search(r"assertion failed: \[([^\]]*)\]", error.message)
  return found.group(1).strip() if found else error.message.splitlines()[0]


def load_export(export_dir: str):
  """(encoder, its input name: "sentences" or "images") of an export."""
  if not os.path.isdir(export_dir):
    raise InputError(f"--export_dir={export_dir}: no such directory")
  not_export = f"--export_dir={export_dir}: not a SavedModel written by export.py"
  try:
    encoder = tf.saved_model.load(export_dir)
    _, specs = encoder.signatures["serving_default"].structured_input_signature
  except (OSError, IndexError, KeyError, ValueError, tf.errors.OpError) as error:
    raise InputError(f"{not_export} ({str(error).partition(chr(10))[0]})") from None
  names = sorted(specs)
  if names not in (["sentences"], ["images"]) or not hasattr(encoder, "encode"):
    raise InputError(f"{not_export} (inputs {names})")
  return encoder, names[0]


def encode(export_dir: str, path: str, batch_size: int) -> np.ndarray:
  """Posterior means [N, latent] of the inputs in `path`."""
  encoder, input_name = load_export(export_dir)
  inputs = read_inputs(path, input_name)
  means = []
  for start in range(0, len(inputs), batch_size):
    try:
      out = encoder.encode(tf.constant(inputs[start:start + batch_size]))
    except tf.errors.InvalidArgumentError as error:
      end = min(start + batch_size, len(inputs))
      raise InputError(f"--input={path}, inputs {start + 1}-{end}: "
                       f"{_assertion(error)}") from error
    means.append(out["mean"].numpy())
  if not means:
    raise InputError(f"--input={path}: holds no inputs")
  return np.concatenate(means)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    means = encode(FLAGS.export_dir, FLAGS.input, FLAGS.batch_size)
    np.save(FLAGS.output, means)
  except (InputError, OSError) as error:    # OSError: e.g. --output's folder
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
  print(f"{FLAGS.output}: {means.shape[0]} x {means.shape[1]} posterior means")


if __name__ == "__main__":
  app.run(main)
