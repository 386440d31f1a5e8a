"""Restoring a trained VAE from its run directory, and exporting its encoder.

`restore_vae(run_dir)` rebuilds the model of a `train.run` directory from its
config.json (and, for text, vocab.txt) and restores the VAE's variables from
the latest checkpoint; it reads no data files.

`export_encoder(vae, export_dir, vocab)` writes a SavedModel whose one
function, `encode` (also the `serving_default` signature), maps raw inputs to
q(z|x). Loading it needs only TensorFlow:

  encoder = tf.saved_model.load(export_dir)
  out = encoder.encode(tf.constant(["the cat sat", "a dog"]))   # text
  out = encoder.encode(images)          # float32 [batch, 28, 28, 1] in [0, 1]
  out["mean"], out["log_variance"], out["sample"]     # each [batch, latent]
"""

import dataclasses
import os
import shutil

import tensorflow as tf

from tf_cvae import data as data_lib
from tf_cvae import errors
from tf_cvae.data import vocabulary as vocab_lib
from tf_cvae.models import registry
from tf_cvae.models import vae as vae_lib
from tf_cvae.training import build
from tf_cvae.training import config as config_lib

IMAGE_SHAPE = (28, 28, 1)


@dataclasses.dataclass(frozen=True)
class _ModelInputs:
  """What registry.build_vae reads of a data set: its kind and vocabulary."""
  kind: str
  vocab: vocab_lib.Vocabulary | None = None


def _dummy_batch(kind: str) -> dict:
  if kind == "text":
    return {"tokens": tf.constant([[vocab_lib.BOS_ID, vocab_lib.EOS_ID]])}
  return {"image": tf.zeros((1,) + IMAGE_SHAPE)}


def restore_vae(run_dir: str):
  """The VAE of a run directory, restored from its best (else last) checkpoint.

  Args:
    run_dir: a directory written by `train.run` (config.json, checkpoints/,
      and vocab.txt for text).

  Returns:
    (vae, vocab, config_dict): the models.vae.VAE with every variable built
    and restored; the run's Vocabulary (text; ids as in training) or None
    (images); the parsed config.json.

  Raises:
    errors.InputError (a ValueError) naming the path when run_dir has no
    readable config.json, no vocab.txt (text) or no checkpoint, or when the
    checkpoint does not fit the config.
  """
  config = config_lib.load_config(run_dir)
  kind = data_lib.kind(config.data.name)
  vocab = None
  if kind == "text":
    vocab_path = os.path.join(run_dir, "vocab.txt")
    if not os.path.exists(vocab_path):
      raise errors.InputError(f"{vocab_path} does not exist: a text run "
                              f"saves its vocabulary there")
    vocab = vocab_lib.Vocabulary.load(vocab_path)
  # The best checkpoint (by validation loss) once an epoch has finished,
  # else the last one: the weights the run's metrics.json was computed with.
  latest = None
  for which in ("best", "last"):
    checkpoint_dir = os.path.join(run_dir, build.CHECKPOINT_DIRS[which])
    latest = latest or tf.train.latest_checkpoint(checkpoint_dir)
  if latest is None:
    raise errors.InputError(f"no checkpoint in {checkpoint_dir}")
  vae = registry.build_vae(config.model, _ModelInputs(kind, vocab))
  batch = _dummy_batch(kind)
  mu, _ = vae.encode(batch)
  vae.log_likelihood(batch, mu)          # builds the decoder's variables too
  # The checkpoint also holds optimizers, critics and counters: expect_partial.
  try:
    tf.train.Checkpoint(vae=vae).restore(latest).expect_partial() \
        .assert_existing_objects_matched()
  except AssertionError as error:
    raise errors.InputError(f"checkpoint {latest} does not fit the model of "
                            f"{run_dir}/config.json: {error}") from None
  return vae, vocab, dataclasses.asdict(config)


def _data_kind(vae: vae_lib.VAE) -> str | None:
  """"text" or "image" for a VAE named by registry.build_vae, else None."""
  model = registry.MODELS.get(vae.name.removesuffix("_vae"))
  return model[0] if model else None


class EncoderModule(tf.Module):
  """q(z|x) of a VAE with raw inputs, for tf.saved_model.save.

  `encode` returns a dict of float32 [batch, latent] tensors: `mean` and
  `log_variance` of the diagonal Gaussian q(z|x), and `sample`, one draw
  mean + exp(log_variance / 2) * eps with eps ~ N(0, I).
  """

  def __init__(self, vae: vae_lib.VAE,
               vocab: vocab_lib.Vocabulary | None = None):
    super().__init__(name="encoder_export")
    kind = _data_kind(vae)
    if kind is not None and (kind == "text") != (vocab is not None):
      raise errors.InputError(f"{vae.name} models {kind} data: "
                       + ("pass its vocabulary" if kind == "text"
                          else "an image model takes no vocabulary"))
    self.vae = vae
    if vocab is None:
      self.encode = tf.function(self._encode_images, input_signature=[
          tf.TensorSpec([None, *IMAGE_SHAPE], tf.float32, name="images")])
      return
    # The vocabulary travels as the table's constants. Tokens outside it (the
    # unknown markers <unk>, _UNK, ... included) get the unknown id.
    self.table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(vocab.tokens), tf.range(len(vocab), dtype=tf.int32)),
        default_value=vocab_lib.UNK_ID)
    self.encode = tf.function(self._encode_sentences, input_signature=[
        tf.TensorSpec([None], tf.string, name="sentences")])

  def _posterior(self, batch: dict) -> dict:
    mean, log_variance = self.vae.encode(batch, training=False)
    sample = mean + tf.exp(0.5 * log_variance) * tf.random.normal(
        tf.shape(mean))
    return {"mean": mean, "log_variance": log_variance, "sample": sample}

  def _encode_sentences(self, sentences: tf.Tensor) -> dict:
    """Whitespace-tokenized sentences, string [batch] -> q(z|x)."""
    words = tf.strings.split(sentences)
    assert_nonempty = tf.debugging.assert_positive(
        words.row_lengths(), message="empty sentence: every sentence needs at "
        "least one whitespace-separated token")
    with tf.control_dependencies([assert_nonempty]):
      ids = tf.ragged.map_flat_values(self.table.lookup, words)
    rows = ids.nrows()
    tokens = tf.concat([tf.fill([rows, 1], vocab_lib.BOS_ID), ids,
                        tf.fill([rows, 1], vocab_lib.EOS_ID)], axis=1)
    return self._posterior(
        {"tokens": tokens.to_tensor(default_value=vocab_lib.PAD_ID)})

  def _encode_images(self, images: tf.Tensor) -> dict:
    """float32 [batch, 28, 28, 1] with values in [0, 1] -> q(z|x)."""
    checks = [
        tf.debugging.assert_greater_equal(
            images, 0.0, message="image values must lie in [0, 1]"),
        tf.debugging.assert_less_equal(
            images, 1.0, message="image values must lie in [0, 1]")]
    with tf.control_dependencies(checks):
      images = tf.identity(images)
    return self._posterior({"image": images})


def _recover(export_dir: str) -> None:
  """Undoes what a killed export_encoder left beside export_dir.

  export_dir + ".tmp" (a save that did not finish) is removed; a previous
  export parked at export_dir + ".old" moves back when export_dir is missing
  (killed between the two renames), else is removed.
  """
  tmp, old = export_dir + ".tmp", export_dir + ".old"
  shutil.rmtree(tmp, ignore_errors=True)
  if os.path.isdir(old) and not os.path.exists(export_dir):
    os.replace(old, export_dir)
  shutil.rmtree(old, ignore_errors=True)


def export_encoder(vae: vae_lib.VAE, export_dir: str,
                   vocab: vocab_lib.Vocabulary | None = None) -> str:
  """Writes the SavedModel of EncoderModule(vae, vocab) to export_dir.

  Text models need `vocab` (input: `sentences`, string [batch]); image models
  take none (input: `images`, float32 [batch, 28, 28, 1]). The model is
  written to export_dir + ".tmp" and moved into place only once complete, so
  a failed or killed export leaves an existing export_dir as it was. A
  directory cannot replace another in one rename: the old export moves to
  export_dir + ".old" first, and a kill between the two renames (two system
  calls apart) leaves it there; the next export moves it back (_recover).

  Returns:
    export_dir.
  """
  export_dir = os.path.normpath(export_dir)
  tmp, old = export_dir + ".tmp", export_dir + ".old"
  _recover(export_dir)
  module = EncoderModule(vae, vocab)
  try:
    tf.saved_model.save(module, tmp, signatures={
        "serving_default": module.encode.get_concrete_function()})
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  if os.path.exists(export_dir):
    os.replace(export_dir, old)
  os.replace(tmp, export_dir)
  shutil.rmtree(old, ignore_errors=True)
  return export_dir
