"""Decoding from a trained VAE: prior samples, reconstructions, interpolations.

Every function takes the VAE (and, for text, its Vocabulary) as
`restore.restore_run(run_dir)` gives them. What a model reads and decodes
comes from its classes: the encoder's `input_format` turns raw inputs into a
batch and decoded batches into raw outputs, the decoder's `generate` decodes.
Decoded text is a list of sentences (words joined by spaces, cut at </s>);
decoded images are float32 [N, 28, 28, 1] arrays of 0s and 1s. `decoding`
is "greedy" (the most probable word or pixel at each step: deterministic),
"sample" (ancestral sampling, stateless: the same seed gives the same
output) or, for text, "beam" (beam.beam_search: the most probable sentence
a beam of `beam_size` finds, ranked by log p or, with `normalize_length`,
log p per word).
"""

import os
import re

import numpy as np
import tensorflow as tf

from tf_cvae import errors
from tf_cvae.data import base as data_base
from tf_cvae.data import vocabulary as vocab_lib
from tf_cvae.models import vae as vae_lib
from tf_cvae.trained import beam
from tf_cvae.trained import inputs as inputs_lib
from tf_cvae.trained import restore

DECODINGS = ("greedy", "sample", "beam")
DEFAULT_BEAM_SIZE = 5


def _seed(seed: int, stream: int) -> tf.Tensor:
  """A stateless seed, int32 [2], for one use (`stream`) of the user's seed."""
  return tf.constant([seed, stream], tf.int32)


def prior_latents(latent_dim: int, num_samples: int, seed: int) -> tf.Tensor:
  """z ~ N(0, I): float32 [num_samples, latent_dim], fixed by `seed`."""
  if num_samples < 1:
    raise errors.InputError(f"num_samples must be at least 1, got "
                            f"{num_samples}")
  return tf.random.stateless_normal([num_samples, latent_dim], _seed(seed, 0))


def decode(vae: vae_lib.VAE, z: tf.Tensor, decoding: str = "greedy",
           seed: int = 0, vocab: vocab_lib.Vocabulary | None = None,
           max_words: int = 40, beam_size: int = DEFAULT_BEAM_SIZE,
           normalize_length: bool = False):
  """x from p(x|z) for each row of z, float32 [N, latent].

  `beam_size` and `normalize_length` are for decoding="beam" (text only;
  errors.InputError for an image model). Returns a list of N sentences
  (text: at most `max_words` words each) or float32 [N, 28, 28, 1] binary
  images.
  """
  if decoding not in DECODINGS:
    raise errors.InputError(f"decoding must be one of {', '.join(DECODINGS)}"
                            f", got {decoding!r}")
  if decoding == "beam":
    tokens, _ = beam.beam_search(vae.decoder, z, beam_size, max_words,
                                 normalize_length)
    batch = {"tokens": tokens}
  else:
    batch = vae.decoder.generate(z, _seed(seed, 1),
                                 greedy=decoding == "greedy",
                                 max_length=max_words)
  return vae.encoder.input_format(vocab).to_raw(batch)


def to_batch(vae: vae_lib.VAE, raw, vocab: vocab_lib.Vocabulary | None = None
             ) -> dict:
  """Raw inputs of the VAE's format -> a batch for `vae.encode`.

  raw: a list of whitespace-tokenized sentences (text; unknown words get the
  unknown id) or images [N, 28, 28(, 1)] in [0, 1]. Raises
  errors.InputError for no inputs, an empty sentence or bad images.
  """
  input_format = vae.encoder.input_format(vocab)
  if input_format.input_name == "images":
    return input_format.to_batch(inputs_lib.check_images(raw))
  inputs_lib.check_sentences(raw)
  return input_format.to_batch(tf.constant(raw, tf.string))


def _split_examples(run_dir: str, split: str, indices: list[int]) -> list:
  """Examples of the run's own data set: sentences or images [N, 28, 28, 1]."""
  dataset = restore.load_run_data(run_dir)
  examples = dataset.splits[split]
  bad = [i for i in indices if not 0 <= i < len(examples)]
  if bad:
    raise errors.InputError(f"{split} split of {dataset.name} has "
                            f"{len(examples)} examples; no index {bad[0]}")
  if dataset.kind == "image":
    return examples[indices]
  return [" ".join(dataset.vocab.decode(examples[i])) for i in indices]


def read_inputs(vae: vae_lib.VAE, source: str, run_dir: str,
                vocab: vocab_lib.Vocabulary | None = None):
  """The inputs named by `source`, for `vae.encode`: (batch, raw inputs).

  source: "test:0,5,7" (examples of the run's own data set: split, then
  indices; also "valid:..." and "train:..."), or a file that
  inputs.read_file reads for the VAE's input format (a .npy file of images,
  a text file of sentences, one a line, no blank line). raw: the input
  sentences (a list) or images (float32 [N, 28, 28, 1]). Raises
  errors.InputError naming `source` when it is missing, empty or of the
  wrong kind.
  """
  spec = re.fullmatch(r"(train|valid|test):([\d,\s]+)", source)
  if spec:
    indices = [int(i) for i in spec.group(2).split(",") if i.strip()]
    try:
      raw = _split_examples(run_dir, spec.group(1), indices)
      return to_batch(vae, raw, vocab), raw
    except errors.InputError as error:
      raise errors.InputError(f"{source}: {error}") from None
  if not os.path.isfile(source):
    raise errors.InputError(f"{source}: no such file (give a file, or "
                            "split:indices such as test:0,1)")
  raw = inputs_lib.read_file(source,
                             vae.encoder.input_format.input_name)
  return to_batch(vae, raw, vocab), raw


def posterior_means(vae: vae_lib.VAE, batch: dict) -> tf.Tensor:
  """The means of q(z|x) of a batch: float32 [N, latent]."""
  mean, _ = vae.encode(batch, training=False)
  return mean


def reconstruct(vae: vae_lib.VAE, batch: dict, decoding: str = "greedy",
                seed: int = 0, vocab: vocab_lib.Vocabulary | None = None,
                max_words: int = 40, beam_size: int = DEFAULT_BEAM_SIZE,
                normalize_length: bool = False):
  """Encodes to the posterior means and decodes them (as `decode` does).

  Returns (means float32 [N, latent], decoded: N sentences or float32
  [N, 28, 28, 1] images).
  """
  means = posterior_means(vae, batch)
  return means, decode(vae, means, decoding, seed, vocab, max_words,
                       beam_size, normalize_length)


def interpolation_latents(start: tf.Tensor, end: tf.Tensor,
                          num_steps: int) -> tf.Tensor:
  """Evenly spaced points from start to end, both included.

  start, end: float32 [P, latent] (P pairs) -> float32 [P, num_steps, latent],
  [:, 0] == start and [:, -1] == end.
  """
  if num_steps < 2:
    raise errors.InputError(f"an interpolation needs at least 2 steps, got "
                            f"{num_steps}")
  weights = tf.linspace(0.0, 1.0, num_steps)[tf.newaxis, :, tf.newaxis]
  start, end = start[:, tf.newaxis], end[:, tf.newaxis]
  return (1.0 - weights) * start + weights * end


def interpolate(vae: vae_lib.VAE, batch: dict, num_steps: int = 8,
                decoding: str = "greedy", seed: int = 0,
                vocab: vocab_lib.Vocabulary | None = None,
                max_words: int = 40, beam_size: int = DEFAULT_BEAM_SIZE,
                normalize_length: bool = False):
  """Walks from each input's posterior mean to the next one's, decoding
  each point as `decode` does.

  The batch holds 2P examples: pairs (0, 1), (2, 3), ... Returns (z float32
  [P, num_steps, latent], decoded: P lists of num_steps sentences, or float32
  [P, num_steps, 28, 28, 1] images).
  """
  means = posterior_means(vae, batch)
  count = int(means.shape[0])
  if count % 2:
    raise errors.InputError(f"interpolation takes pairs of inputs, got "
                            f"{count}")
  z = interpolation_latents(means[0::2], means[1::2], num_steps)
  flat = tf.reshape(z, [-1, z.shape[-1]])
  decoded = decode(vae, flat, decoding, seed, vocab, max_words, beam_size,
                   normalize_length)
  if isinstance(decoded, list):
    return z, [decoded[i:i + num_steps]
               for i in range(0, len(decoded), num_steps)]
  return z, decoded.reshape((-1, num_steps) + decoded.shape[1:])


def paired_rows(top: np.ndarray, bottom: np.ndarray, columns: int
                ) -> np.ndarray:
  """Orders two image sets [N, 28, 28, 1] for a grid of `columns` columns:
  a row of `top`, the row of `bottom` below it, and so on; the last pair of
  rows is padded with blank tiles. Returns [2 * rows * columns, 28, 28, 1]."""
  top, bottom = np.asarray(top), np.asarray(bottom)
  tiles = []
  for start in range(0, len(top), columns):
    for images in (top[start:start + columns], bottom[start:start + columns]):
      blank = np.zeros((columns - len(images),) + data_base.IMAGE_SHAPE,
                       np.float32)
      tiles += [images.astype(np.float32), blank]
  return np.concatenate(tiles)


def framed_interpolations(inputs: np.ndarray, decoded: np.ndarray
                          ) -> np.ndarray:
  """One row per pair: its first input, the decoded path, its second input.

  inputs [2P, 28, 28, 1] (pairs (0, 1), (2, 3), ...), decoded [P, S, 28, 28,
  1] -> [P * (S + 2), 28, 28, 1], a grid of S + 2 columns.
  """
  ends = np.asarray(inputs, np.float32).reshape(
      (-1, 2, 1) + data_base.IMAGE_SHAPE)
  rows = np.concatenate([ends[:, 0], decoded, ends[:, 1]], axis=1)
  return rows.reshape((-1,) + data_base.IMAGE_SHAPE)


def image_grid(images: np.ndarray, columns: int, padding: int = 2
               ) -> np.ndarray:
  """Tiles images into one picture: uint8 [height, width, 1].

  images: [N, 28, 28, 1] in [0, 1] (1 is drawn white), row-major in a grid of
  `columns` columns and ceil(N / columns) rows, with `padding` grey pixels
  around and between the tiles: height = rows * 28 + (rows + 1) * padding.
  """
  height, width, _ = data_base.IMAGE_SHAPE
  images = np.asarray(images, np.float32).reshape(
      (-1,) + data_base.IMAGE_SHAPE)
  columns = max(1, min(columns, len(images)))
  rows = -(-len(images) // columns)
  size = height + padding
  grid = np.full((rows * size + padding, columns * size + padding, 1), 128,
                 np.uint8)
  for index, image in enumerate(images):
    top = padding + (index // columns) * size
    left = padding + (index % columns) * size
    grid[top:top + height, left:left + width] = np.round(
        np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
  return grid


def write_png(path: str, images: np.ndarray, columns: int) -> str:
  """Writes image_grid(images, columns) as a PNG file; returns path."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tf.io.write_file(path, tf.io.encode_png(image_grid(images, columns)))
  return path
