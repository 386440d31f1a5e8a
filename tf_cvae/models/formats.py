"""Raw inputs and outputs of the models: sentences or images, and batches.

Each encoder class names its format (`input_format`), so a trained VAE
knows, without being told its data kind, what the export takes, which
example batch builds its variables and how decoded batches read:

  Sentences(vocab): string [N] whitespace-tokenized sentences
      <-> {"tokens": int32 [N, time]} (<s> w1 .. wn </s> then padding);
  Images(): float32 [N, 28, 28, 1] in [0, 1] <-> {"image": same}.

Formats are tf.Modules: the export saves the vocabulary's lookup table
with its `to_batch`.
"""

import numpy as np
import tensorflow as tf

from tf_cvae import errors
from tf_cvae.data import base as data_base
from tf_cvae.data import vocabulary as vocab_lib


class Sentences(tf.Module):
  """Whitespace-tokenized sentences of a run's vocabulary.

  Tokens outside the vocabulary (the unknown markers <unk>, _UNK, ...
  included) get the unknown id.
  """

  input_name = "sentences"

  def __init__(self, vocab: vocab_lib.Vocabulary | None):
    super().__init__(name="sentences")
    if vocab is None:
      raise errors.InputError("a text model needs its run's vocabulary: "
                              "pass its vocabulary")
    self.vocab = vocab
    self.table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(vocab.tokens), tf.range(len(vocab), dtype=tf.int32)),
        default_value=vocab_lib.UNK_ID)

  @property
  def spec(self) -> tf.TensorSpec:
    """The export's input: string [batch]."""
    return tf.TensorSpec([None], tf.string, name=self.input_name)

  def to_batch(self, sentences: tf.Tensor) -> dict:
    """string [N] -> {"tokens": int32 [N, time]}; an empty sentence fails a
    tf.debugging assertion ("empty sentence")."""
    words = tf.strings.split(sentences)
    assert_nonempty = tf.debugging.assert_positive(
        words.row_lengths(), message="empty sentence: every sentence needs at "
        "least one whitespace-separated token")
    with tf.control_dependencies([assert_nonempty]):
      ids = tf.ragged.map_flat_values(self.table.lookup, words)
    rows = ids.nrows()
    tokens = tf.concat([tf.fill([rows, 1], vocab_lib.BOS_ID), ids,
                        tf.fill([rows, 1], vocab_lib.EOS_ID)], axis=1)
    return {"tokens": tokens.to_tensor(default_value=vocab_lib.PAD_ID)}

  def unknown_words(self, sentences: tf.Tensor) -> tf.Tensor:
    """string [N] -> int32 [N]: each sentence's words outside the
    vocabulary (read as unknown), the unknown markers (<unk>, _UNK, ...)
    not counted."""
    words = tf.strings.split(sentences)
    flat = words.flat_values
    markers = tf.constant(sorted(vocab_lib.UNKNOWN_MARKERS))
    is_marker = tf.reduce_any(tf.equal(flat[:, None], markers[None, :]),
                              axis=1)
    unknown = tf.logical_and(tf.equal(self.table.lookup(flat),
                                      vocab_lib.UNK_ID),
                             tf.logical_not(is_marker))
    return tf.reduce_sum(tf.cast(words.with_flat_values(unknown), tf.int32),
                         axis=1)

  def to_raw(self, batch: dict) -> list[str]:
    """{"tokens": int [N, time]} -> N sentences, words joined by spaces, cut
    at </s>."""
    return [" ".join(self.vocab.decode(row))
            for row in np.asarray(batch["tokens"])]

  @staticmethod
  def example_batch() -> dict:
    """One empty sentence, <s> </s>: builds a text model's variables."""
    return {"tokens": tf.constant([[vocab_lib.BOS_ID, vocab_lib.EOS_ID]])}


class Images(tf.Module):
  """Binary-valued images, float32 [N, 28, 28, 1] in [0, 1]."""

  input_name = "images"

  def __init__(self, vocab: vocab_lib.Vocabulary | None = None):
    super().__init__(name="images")
    if vocab is not None:
      raise errors.InputError("an image model takes no vocabulary")

  @property
  def spec(self) -> tf.TensorSpec:
    """The export's input: float32 [batch, 28, 28, 1]."""
    return tf.TensorSpec([None, *data_base.IMAGE_SHAPE], tf.float32,
                         name=self.input_name)

  def to_batch(self, images: tf.Tensor) -> dict:
    """float32 [N, 28, 28, 1] -> {"image": the same}; values outside [0, 1]
    fail a tf.debugging assertion ("[0, 1]")."""
    images = tf.convert_to_tensor(images, tf.float32)
    checks = [
        tf.debugging.assert_greater_equal(
            images, 0.0, message="image values must lie in [0, 1]"),
        tf.debugging.assert_less_equal(
            images, 1.0, message="image values must lie in [0, 1]")]
    with tf.control_dependencies(checks):
      return {"image": tf.identity(images)}

  @staticmethod
  def to_raw(batch: dict) -> np.ndarray:
    """{"image": [N, 28, 28, 1]} -> float32 numpy [N, 28, 28, 1]."""
    return np.asarray(batch["image"], np.float32)

  @staticmethod
  def example_batch() -> dict:
    """One blank image: builds an image model's variables."""
    return {"image": tf.zeros((1,) + data_base.IMAGE_SHAPE)}
