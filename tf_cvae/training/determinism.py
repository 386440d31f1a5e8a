"""Run-to-run determinism: one seed everywhere and deterministic TF kernels."""

from absl import logging
import keras
import tensorflow as tf


def enable(seed: int) -> None:
  """Makes a process repeat its results exactly for a given `seed`.

  Seeds Python's `random`, NumPy and TensorFlow's global generator
  (keras.utils.set_random_seed), and turns on
  tf.config.experimental.enable_op_determinism: every op then runs a
  deterministic kernel or raises UnimplementedError where it has none (a
  few GPU ops); tf.data keeps its element order; stateful random ops need a
  seed, which the global seed gives them. On GPU this can cost speed (no
  nondeterministic atomics in reductions); on CPU our ops are deterministic
  already and the cost is nil. train.run seeds itself with config.seed
  either way; call this before anything builds a model or a data pipeline.
  """
  keras.utils.set_random_seed(seed)
  tf.config.experimental.enable_op_determinism()
  logging.info("deterministic ops on; Python, NumPy and TF seeded with %d",
               seed)

