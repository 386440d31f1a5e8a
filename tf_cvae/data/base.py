"""In-memory data sets and their tf.data pipelines, shared by every source.

Every source (synthetic, text files, image files, tfds) produces one of two
containers below; the containers alone turn arrays into batches, so bucketing,
padding and binarization live in one place.

Batches are dicts:
  text:  {"tokens": int32 [batch, time]}, <s> w1 .. wn </s> then PAD_ID (0).
  image: {"image": float32 [batch, 28, 28, 1]} with values exactly 0 or 1.
"""

import dataclasses
import numpy as np
import tensorflow as tf

from tf_cvae import errors
from tf_cvae.data import vocabulary as vocab_lib

SPLITS = ("train", "valid", "test")


def _check_splits(name: str, splits: dict) -> None:
  missing = [s for s in SPLITS if s not in splits]
  if missing:
    raise errors.InputError(f"data set {name!r} has no split(s) {missing}")
  for split, values in splits.items():
    if len(values) == 0:
      raise errors.InputError(f"data set {name!r}: split {split!r} holds no examples")


def _check_batch(name: str, split: str, count: int, batch_size: int,
                 drop_remainder: bool) -> None:
  """An InputError when drop_remainder would leave no batch at all."""
  if drop_remainder and count < batch_size:
    raise errors.InputError(
        f"data set {name!r}: split {split!r} holds {count} examples, fewer "
        f"than one batch of {batch_size}: use a smaller batch size or more data")


@dataclasses.dataclass
class TextDataset:
  """Sentences as id arrays (each framed by <s> ... </s>) and their vocabulary."""
  name: str
  vocab: vocab_lib.Vocabulary
  splits: dict[str, list[np.ndarray]]
  kind: str = dataclasses.field(default="text", init=False)

  def __post_init__(self):
    _check_splits(self.name, self.splits)

  def num_examples(self, split: str) -> int:
    return len(self.splits[split])

  def max_length(self) -> int:
    """Longest sentence in ids, <s> and </s> included."""
    return max(len(s) for v in self.splits.values() for s in v)

  def bucket_boundaries(self, num_buckets: int = 4) -> list[int]:
    """Padded lengths used for batching: a few fixed shapes (no XLA retracing)."""
    top = self.max_length()
    step = max(1, -(-top // num_buckets))
    return sorted({min(top, step * (i + 1)) for i in range(num_buckets)})

  def batches(self, split: str, batch_size: int, *, shuffle: bool = False,
              seed: int = 0, drop_remainder: bool = False) -> tf.data.Dataset:
    """One pass over `split` as {"tokens": int32 [batch, padded_time]}.

    Sentences are grouped into length buckets and padded to the bucket's
    boundary, so only `len(bucket_boundaries())` distinct shapes occur.
    `seed` fixes the shuffle order (pass a new seed each epoch).
    """
    sentences = self.splits[split]
    _check_batch(self.name, split, len(sentences), batch_size, drop_remainder)
    lengths = np.asarray([len(s) for s in sentences], dtype=np.int32)
    padded = np.full((len(sentences), lengths.max()), vocab_lib.PAD_ID, np.int32)
    for row, sentence in enumerate(sentences):
      padded[row, :len(sentence)] = sentence
    ds = tf.data.Dataset.from_tensor_slices((padded, lengths))
    if shuffle:
      ds = ds.shuffle(len(sentences), seed=seed, reshuffle_each_iteration=False)
    ds = ds.map(lambda tokens, n: (tokens[:n], n))
    bounds = self.bucket_boundaries()
    # bucket_by_sequence_length uses [lo, hi) buckets; +1 so the boundary fits.
    ds = ds.bucket_by_sequence_length(
        element_length_func=lambda s, n: n,
        bucket_boundaries=[b + 1 for b in bounds[:-1]],
        bucket_batch_sizes=[batch_size] * len(bounds),
        padded_shapes=([None], []),
        padding_values=(vocab_lib.PAD_ID, 0),
        pad_to_bucket_boundary=False,
        drop_remainder=drop_remainder)
    pad_to = tf.constant(bounds, tf.int32)

    def to_bucket_shape(tokens, unused_lengths):
      # Pad up to the smallest boundary that holds the batch: fixed shapes.
      time = tf.shape(tokens)[1]
      target = tf.gather(pad_to, tf.argmax(tf.cast(pad_to >= time, tf.int32)))
      tokens = tf.pad(tokens, [[0, 0], [0, target - time]])
      return {"tokens": tokens}

    ds = ds.map(to_bucket_shape, num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle:
      # Buckets fill at different rates; shuffle batches so lengths mix.
      ds = ds.shuffle(64, seed=seed + 1, reshuffle_each_iteration=False)
    return ds.prefetch(tf.data.AUTOTUNE)


@dataclasses.dataclass
class ImageDataset:
  """Images as float32 [N, 28, 28, 1] arrays.

  `binarization[split]` says how a split becomes binary:
    "none":    the values are already exactly 0 or 1;
    "dynamic": values are Bernoulli probabilities, redrawn every epoch (seed);
    "fixed":   values are probabilities, drawn once with `fixed_seed` so every
               load and every epoch sees the same binary images.
  """
  name: str
  splits: dict[str, np.ndarray]
  binarization: dict[str, str]
  fixed_seed: int = 1234
  kind: str = dataclasses.field(default="image", init=False)

  def __post_init__(self):
    _check_splits(self.name, self.splits)
    for split, images in self.splits.items():
      if images.ndim != 4 or images.shape[1:] != (28, 28, 1):
        raise errors.InputError(f"data set {self.name!r}, split {split!r}: images "
                         f"must be [N, 28, 28, 1], got {images.shape}")
      mode = self.binarization.get(split)
      if mode not in ("none", "dynamic", "fixed"):
        raise errors.InputError(f"data set {self.name!r}: binarization of {split!r} "
                         f"must be none, dynamic or fixed, got {mode!r}")
      if mode == "fixed":
        rng = np.random.default_rng(self.fixed_seed + SPLITS.index(split))
        self.splits[split] = (rng.random(images.shape, dtype=np.float32)
                              < images).astype(np.float32)
        self.binarization[split] = "none"

  def num_examples(self, split: str) -> int:
    return len(self.splits[split])

  def batches(self, split: str, batch_size: int, *, shuffle: bool = False,
              seed: int = 0, drop_remainder: bool = False) -> tf.data.Dataset:
    """One pass over `split` as {"image": float32 [batch, 28, 28, 1]} in {0, 1}.

    With dynamic binarization, `seed` also picks the binary draw: pass a new
    seed each epoch for a fresh draw.
    """
    images = self.splits[split]
    _check_batch(self.name, split, len(images), batch_size, drop_remainder)
    ds = tf.data.Dataset.from_tensor_slices(images).enumerate()
    if shuffle:
      ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=False)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    dynamic = self.binarization[split] == "dynamic"

    def binarize(index, image):
      if dynamic:
        noise = tf.map_fn(
            lambda i: tf.random.stateless_uniform(
                image.shape[1:], seed=tf.stack([tf.cast(seed, tf.int64), i])),
            index, fn_output_signature=tf.float32)
        image = tf.cast(noise < image, tf.float32)
      return {"image": image}

    ds = ds.map(binarize, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


Dataset = TextDataset | ImageDataset

