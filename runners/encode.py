"""Encodes sentences or images with an exported encoder: posterior means.

  tf-cvae-encode --export_dir=RUN_DIR/export --input=sentences.txt \
      --output=means.npy
  tf-cvae-encode --export_dir=RUN_DIR/export --input=sentences.txt  # print

--input is a text file, one whitespace-tokenized sentence a line (text
models), or a .npy file of images [N, 28, 28] or [N, 28, 28, 1] with values
in [0, 1] (image models). --output receives float32 [N, latent]: the means of
q(z|x), row i for input i; without --output they are printed instead, line i
for input i, the latent's coordinates separated by spaces.

The export (tf-cvae-export) holds the vocabulary and the network; loading
it needs only TensorFlow. The input file is read by tf_cvae.trained.inputs,
the reader tf-cvae-sample uses too (a blank line is refused: row i of the
output is line i). Words outside the run's vocabulary are read as unknown;
they are counted in a warning line (and, with --output, in the summary
line), as the export's `unknown_words` output counts them per sentence.
"""

import os
import re
import sys

import tf_cvae_runners  # first: TensorFlow starts without its chatter
from tf_cvae_runners import launch

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from tf_cvae import errors
from tf_cvae.trained import inputs

flags.DEFINE_string("export_dir", None, "SavedModel written by "
                    "tf-cvae-export.", required=True)
flags.DEFINE_string("input", None, "Text file (one sentence a line, no "
                    "blank line) or .npy file of images.", required=True)
flags.DEFINE_string("output", None, ".npy file for the posterior means "
                    "[N, latent] (default: print them, a line an input).")
flags.DEFINE_integer("batch_size", 256, "Inputs per encoder call.",
                     lower_bound=1)

FLAGS = flags.FLAGS


def _assertion(error: tf.errors.InvalidArgumentError) -> str:
  """The message of a failed tf.debugging assertion inside the export."""
  found = re.search(r"assertion failed: \[([^\]]*)\]", error.message)
  return found.group(1).strip() if found else error.message.splitlines()[0]


def load_export(export_dir: str):
  """(encoder, its input name: "sentences" or "images") of an export."""
  if not os.path.isdir(export_dir):
    raise errors.InputError(f"--export_dir={export_dir}: no such directory")
  not_export = (f"--export_dir={export_dir}: not a SavedModel written by "
                "tf-cvae-export")
  try:
    encoder = tf.saved_model.load(export_dir)
    _, specs = encoder.signatures["serving_default"].structured_input_signature
  except (OSError, IndexError, KeyError, ValueError, tf.errors.OpError) as error:
    first_line = str(error).partition("\n")[0]
    raise errors.InputError(f"{not_export} ({first_line})") from None
  names = sorted(specs)
  if (len(names) != 1 or names[0] not in inputs.INPUT_NAMES
      or not hasattr(encoder, "encode")):
    raise errors.InputError(f"{not_export} (inputs {names})")
  return encoder, names[0]


def encode(export_dir: str, path: str, batch_size: int) -> np.ndarray:
  """Posterior means float32 [N, latent] of the N inputs in `path` (read by
  inputs.read_file: no blank line, at least one input); a text export's
  words outside its vocabulary are counted in one warning line."""
  means, unknown = encode_counting(export_dir, path, batch_size)
  warn_unknown(path, unknown)
  return means


def warn_unknown(path: str, unknown: np.ndarray | None) -> None:
  """One warning line counting the words read as unknown, if any."""
  if unknown is not None and unknown.sum():
    logging.warning("%s: %d words in %d of %d sentences are not in the "
                    "vocabulary and were read as unknown", path,
                    unknown.sum(), np.count_nonzero(unknown), len(unknown))


def encode_counting(export_dir: str, path: str, batch_size: int):
  """(posterior means float32 [N, latent], unknown words int32 [N] per input
  or None for images) of the N inputs in `path`."""
  encoder, input_name = load_export(export_dir)
  given = inputs.read_file(path, input_name)
  means, unknown = [], []
  for start in range(0, len(given), batch_size):
    try:
      out = encoder.encode(tf.constant(given[start:start + batch_size]))
    except tf.errors.InvalidArgumentError as error:
      end = min(start + batch_size, len(given))
      raise errors.InputError(f"--input={path}, inputs {start + 1}-{end}: "
                              f"{_assertion(error)}") from error
    means.append(out["mean"].numpy())
    if "unknown_words" in out:
      unknown.append(out["unknown_words"].numpy())
  return np.concatenate(means), (np.concatenate(unknown) if unknown
                                 else None)


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    means, unknown = encode_counting(FLAGS.export_dir, FLAGS.input,
                                     FLAGS.batch_size)
    warn_unknown(FLAGS.input, unknown)
    if FLAGS.output:
      np.save(FLAGS.output, means)
  except (errors.InputError, OSError) as error:   # OSError: --output's folder
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
  if FLAGS.output:
    counted = ("" if unknown is None else
               f"; {int(unknown.sum())} words not in the vocabulary")
    print(f"{FLAGS.output}: {means.shape[0]} x {means.shape[1]} posterior "
          f"means{counted}")
  else:
    np.savetxt(sys.stdout, means, fmt="%.6f")


def main():
  """The tf-cvae-encode command: reads the command line, then
  encodes inputs with an export."""
  launch.run(_main)


if __name__ == "__main__":
  main()
