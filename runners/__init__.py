"""tf_cvae_runners: the command-line programs (this folder, runners/).

Each command module (train, evaluate, export, encode, sample, compare,
benchmark, quickstart) is both a script (python runners/train.py)
and the tf-cvae-* console script (tf_cvae_runners.train:main). Only this
package reads flags: each command defines its absl flags, turns them into the
library's config dataclasses (common.py) and calls tf_cvae; launch.run
parses the command line (presets, flagfiles, --help, --verbose).

Importing it imports TensorFlow quietly first: TF_CPP_MIN_LOG_LEVEL=2 and
TensorFlow's C++ start-up lines (oneDNN, CPU feature guard, cuInit, ...)
dropped from stderr, unless TF_CPP_MIN_LOG_LEVEL is set already or --verbose
is on the command line.
"""

import contextlib
import os
import sys
import tempfile

# Start-up lines TensorFlow's C++ code prints before its log level applies.
_CHATTER = ("absl::InitializeLog()", "oneDNN custom operations",
            "cpu_feature_guard", "To enable the following instructions",
            "cudart_stub.cc", "failed call to cuInit", "Unable to register cu",
            "computation_placer.cc", "TF-TRT Warning")
_TRUE = ("", "true", "t", "1", "yes", "y")


def verbose_requested(argv: list[str]) -> bool:
  """Whether argv (a command line) holds --verbose (or --verbose=true)."""
  for arg in argv[1:]:
    if arg == "--":
      break
    name, _, value = arg.lstrip("-").partition("=")
    if arg.startswith("-") and name == "verbose":
      return value.lower() in _TRUE
  return False


@contextlib.contextmanager
def _stderr_without(fragments: tuple[str, ...]):
  """Holds back what is written to file descriptor 2 (C++ and Python) in the
  block, then writes the lines that contain none of `fragments`."""
  sys.stderr.flush()
  try:
    saved = os.dup(2)
  except OSError:       # no stderr to filter
    yield
    return
  with tempfile.TemporaryFile() as held:
    os.dup2(held.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      held.seek(0)
      text = held.read().decode("utf-8", errors="replace")
      sys.stderr.write("".join(line for line in text.splitlines(True)
                               if not any(f in line for f in fragments)))
      sys.stderr.flush()


def import_tensorflow_quietly(argv: list[str]) -> None:
  """Imports TensorFlow (and lists its devices, where cuInit speaks) with its
  start-up chatter dropped; does nothing if TF_CPP_MIN_LOG_LEVEL is set,
  argv asks for --verbose or TensorFlow is imported already."""
  if ("TF_CPP_MIN_LOG_LEVEL" in os.environ or verbose_requested(argv)
      or "tensorflow" in sys.modules):
    return
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
  with _stderr_without(_CHATTER):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    tf.config.list_physical_devices()


import_tensorflow_quietly(sys.argv)
