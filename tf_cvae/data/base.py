"""In-memory data sets and their tf.data pipelines, shared by every source.

Every source (synthetic, text files, image files, tfds) produces one of two
containers below; the containers alone turn arrays into batches, so batching
by length, padding and binarization live in one place.

Batches are dicts:
  text:  {"tokens": int32 [batch, time]}, <s> w1 .. wn </s> then PAD_ID (0).
  image: {"image": float32 [batch, 28, 28, 1]} with values exactly 0 or 1.
With `with_index=True` a batch also holds "index": int64 [batch], each row's
position in its split (to line rows up with per-example data such as the
true latents of the generated data sets).
"""

import dataclasses

from absl import logging
import numpy as np
import tensorflow as tf

from tf_cvae import errors
from tf_cvae.data import vocabulary as vocab_lib

SPLITS = ("train", "valid", "test")
# How text batches are formed (TextDataset.batching):
#   "exact":  every batch holds sentences of one length (He et al. 2019), so
#             nothing the code learns about x can be its length alone; a
#             length's leftover sentences form one smaller batch;
#   "full":   sentences ordered by length range (lengths mix within a range)
#             and cut into batches of batch_size: only the last is smaller
#             (evaluation, so every estimate capped at log K sees K rows).
TEXT_BATCHINGS = ("exact", "full")
# [height, width, channels] of every image data set's examples.
IMAGE_SHAPE = (28, 28, 1)


def held_out_rows(count: int, fraction: float, seed: int, parts: tuple,
                  where: str, unit: str) -> dict[str, np.ndarray]:
  """A seeded draw of `count` rows: `fraction` of them (at least one) for
  each split of `parts` in turn, the rest for "train"; {split: sorted row
  indices}, the sizes logged. InputError naming `where` when too few rows
  are left to train on."""
  held = max(1, int(round(fraction * count)))
  if count < len(parts) * held + 1:
    raise errors.InputError(
        f"{where}: {count} {unit}, too few to hold out "
        f"{' and '.join(parts)} parts of {held} each")
  order = np.random.default_rng(seed).permutation(count)
  rows = {split: order[i * held:(i + 1) * held]
          for i, split in enumerate(parts)}
  rows["train"] = order[len(parts) * held:]
  logging.info("%s: held out %d %s for %s (seed %d), %d left to train on",
               where, held, unit, f" and {held} for ".join(parts), seed,
               len(rows["train"]))
  return {split: np.sort(r) for split, r in rows.items()}


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


def _rows(count: int, examples) -> np.ndarray:
  """The split's row indices to use: all, or the given subset (sorted)."""
  if examples is None:
    return np.arange(count)
  rows = np.unique(np.asarray(examples, dtype=np.int64))
  if rows.size and (rows[0] < 0 or rows[-1] >= count):
    raise errors.InputError(f"example indices must lie in [0, {count})")
  return rows


def exact_length_batches(lengths: np.ndarray, batch_size: int, *,
                         shuffle: bool, seed: int, multiple_of: int = 1
                         ) -> list[np.ndarray]:
  """Row indices of batches that each hold one length (He et al.'s batching).

  The rows of each length are cut into batches of `batch_size`; the last one
  of a length may be smaller (its size rounded down to a multiple of
  `multiple_of`, e.g. the number of replicas; an empty one is dropped).
  Unshuffled, batches come by increasing length; shuffled (seeded), the rows
  within a length and the order of the batches are permuted.
  """
  rng = np.random.default_rng(seed)
  batches = []
  for length in np.unique(lengths):
    rows = np.flatnonzero(lengths == length)
    if shuffle:
      rng.shuffle(rows)
    for start in range(0, len(rows), batch_size):
      chunk = rows[start:start + batch_size]
      chunk = chunk[:len(chunk) - len(chunk) % multiple_of]
      if len(chunk):
        batches.append(chunk)
  if shuffle:
    batches = [batches[i] for i in rng.permutation(len(batches))]
  return batches


def full_batches(lengths: np.ndarray, boundaries, batch_size: int, *,
                 shuffle: bool, seed: int, multiple_of: int = 1
                 ) -> list[np.ndarray]:
  """Row indices of batches of `batch_size` that mix lengths within a range.

  Rows are ordered by the smallest of `boundaries` that holds their length
  (stable: split order within a range; shuffled first if asked) and cut into
  consecutive batches, so every batch but the last is full (the last rounded
  down to a multiple of `multiple_of`; dropped if empty). Shuffled, the
  order of the batches is permuted too.
  """
  rng = np.random.default_rng(seed)
  rows = np.arange(len(lengths))
  if shuffle:
    rng.shuffle(rows)
  bounds = np.asarray(boundaries)
  bucket = np.searchsorted(bounds, np.asarray(lengths)[rows])
  rows = rows[np.argsort(bucket, kind="stable")]
  batches = [rows[start:start + batch_size]
             for start in range(0, len(rows), batch_size)]
  if batches:
    last = batches[-1]
    batches[-1] = last[:len(last) - len(last) % multiple_of]
  batches = [b for b in batches if len(b)]
  if shuffle:
    batches = [batches[i] for i in rng.permutation(len(batches))]
  return batches


@dataclasses.dataclass
class TextDataset:
  """Sentences as id arrays (each framed by <s> ... </s>) and their vocabulary.

  `latents[split]` ([N, d]), when the data were generated from a known
  latent, holds each sentence's true z. `batching` is one of TEXT_BATCHINGS.
  When the vocabulary was built from the training sentences, `words[split]`
  keeps the sentences as token lists and `vocab_options` the arguments of
  Vocabulary.from_sentences, so a subset of train can rebuild it.
  """
  name: str
  vocab: vocab_lib.Vocabulary
  splits: dict[str, list[np.ndarray]]
  latents: dict[str, np.ndarray] | None = None
  batching: str = "exact"
  words: dict[str, list[list[str]]] | None = None
  vocab_options: dict | None = None
  kind: str = dataclasses.field(default="text", init=False)

  def __post_init__(self):
    _check_splits(self.name, self.splits)
    if self.batching not in TEXT_BATCHINGS:
      raise errors.InputError(f"text batching must be one of "
                              f"{', '.join(TEXT_BATCHINGS)}, got "
                              f"{self.batching!r}")

  def num_examples(self, split: str) -> int:
    return len(self.splits[split])

  def lengths(self, split: str) -> np.ndarray:
    """Sentence lengths in ids, <s> and </s> included: int32 [N]."""
    return np.asarray([len(s) for s in self.splits[split]], dtype=np.int32)

  def max_length(self) -> int:
    """Longest sentence in ids, <s> and </s> included."""
    return max(len(s) for v in self.splits.values() for s in v)

  def bucket_boundaries(self, num_buckets: int = 4) -> list[int]:
    """Padded lengths used for batching: a few fixed shapes (no XLA retracing)."""
    top = self.max_length()
    step = max(1, -(-top // num_buckets))
    return sorted({min(top, step * (i + 1)) for i in range(num_buckets)})

  def batches(self, split: str, batch_size: int, *, shuffle: bool = False,
              seed: int = 0, drop_remainder: bool = False,
              with_index: bool = False, examples=None,
              multiple_of: int = 1, batching: str | None = None
              ) -> tf.data.Dataset:
    """One pass over `split` as {"tokens": int32 [batch, padded_time]}.

    Every batch is padded to the smallest bucket boundary that holds it, so
    only `len(bucket_boundaries())` time lengths occur. With
    `batching == "exact"` a batch holds sentences of one length and a
    length's leftover rows make a smaller batch (see exact_length_batches;
    `drop_remainder` only refuses a split smaller than one batch); with
    "full", only the last batch is smaller (see full_batches). `seed` fixes the
    shuffle order (pass a new seed each epoch); `examples` restricts the pass
    to those row indices of the split; `batching` overrides self.batching.
    """
    batching = batching or self.batching
    if batching not in TEXT_BATCHINGS:
      raise errors.InputError(f"text batching must be one of "
                              f"{', '.join(TEXT_BATCHINGS)}, got {batching!r}")
    sentences = self.splits[split]
    rows = _rows(len(sentences), examples)
    _check_batch(self.name, split, len(rows), batch_size, drop_remainder)
    lengths = self.lengths(split)[rows]
    if batching == "exact":
      groups = exact_length_batches(lengths, batch_size, shuffle=shuffle,
                                    seed=seed, multiple_of=multiple_of)
    else:
      groups = full_batches(lengths, self.bucket_boundaries(), batch_size,
                            shuffle=shuffle, seed=seed,
                            multiple_of=multiple_of)
    return self._grouped_batches(split, [rows[g] for g in groups],
                                 with_index)

  def _grouped_batches(self, split, groups, with_index) -> tf.data.Dataset:
    """batches() of the given row groups, each padded to the smallest bucket
    boundary that holds its longest sentence."""
    sentences = self.splits[split]
    bounds = np.asarray(self.bucket_boundaries())

    def generate():
      for group in groups:
        time = max(len(sentences[row]) for row in group)
        tokens = np.full((len(group), bounds[np.argmax(bounds >= time)]),
                         vocab_lib.PAD_ID, np.int32)
        for out, row in enumerate(group):
          tokens[out, :len(sentences[row])] = sentences[row]
        batch = {"tokens": tokens}
        if with_index:
          batch["index"] = group.astype(np.int64)
        yield batch

    signature = {"tokens": tf.TensorSpec([None, None], tf.int32)}
    if with_index:
      signature["index"] = tf.TensorSpec([None], tf.int64)
    ds = tf.data.Dataset.from_generator(generate, output_signature=signature)
    return ds.prefetch(tf.data.AUTOTUNE)


@dataclasses.dataclass
class ImageDataset:
  """Images as float32 [N, 28, 28, 1] arrays.

  `binarization[split]` says how a split becomes binary:
    "none":    the values are already exactly 0 or 1;
    "dynamic": values are Bernoulli probabilities, redrawn every epoch (seed);
    "fixed":   values are probabilities, drawn once with `fixed_seed` so every
               load and every epoch sees the same binary images.
  `latents[split]` ([N, d]), when the images were generated from a known
  latent, holds each image's true z; `labels[split]` ({name: int [N]}), when
  known, each image's classes (e.g. Omniglot's alphabet and character).
  """
  name: str
  splits: dict[str, np.ndarray]
  binarization: dict[str, str]
  fixed_seed: int = 1234
  latents: dict[str, np.ndarray] | None = None
  labels: dict[str, dict[str, np.ndarray]] | None = None
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
              seed: int = 0, drop_remainder: bool = False,
              with_index: bool = False, examples=None,
              multiple_of: int = 1, batching: str | None = None
              ) -> tf.data.Dataset:
    """One pass over `split` as {"image": float32 [batch, 28, 28, 1]} in {0, 1}.

    With dynamic binarization, `seed` also picks the binary draw: pass a new
    seed each epoch for a fresh draw. `examples` restricts the pass to those
    row indices; `multiple_of` and `batching` are accepted for a common
    signature with text (image batches are full, or the last one is dropped
    with drop_remainder).
    """
    del multiple_of, batching
    rows = _rows(len(self.splits[split]), examples)
    images = self.splits[split][rows]
    _check_batch(self.name, split, len(images), batch_size, drop_remainder)
    ds = tf.data.Dataset.from_tensor_slices((rows, images))
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
      batch = {"image": image}
      if with_index:
        batch["index"] = index
      return batch

    ds = ds.map(binarize, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


Dataset = TextDataset | ImageDataset
