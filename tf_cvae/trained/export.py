"""Exporting a trained VAE's encoder q(z|x) as a SavedModel.

`export_encoder(vae, export_dir, vocab)` writes a SavedModel with one
function, q(z|x) of raw inputs (the encoder's `input_format`), reachable
three ways: the signatures `serving_default` and `encode` (SIGNATURES: what
TensorFlow Serving and `saved_model_cli run --signature_def` call, by input
name) and the loaded object's `encode` attribute. Loading it needs only
TensorFlow:

  encoder = tf.saved_model.load(export_dir)
  out = encoder.encode(tf.constant(["the cat sat", "a dog"]))   # text
  out = encoder.encode(images)          # float32 [batch, 28, 28, 1] in [0, 1]
  out = encoder.signatures["encode"](sentences=tf.constant(["a dog"]))
  out["mean"], out["log_variance"], out["sample"]     # each [batch, latent]
  out["unknown_words"]      # text: int32 [batch], words outside the vocabulary

A run's VAE and vocabulary come from restore.restore_run(run_dir).
"""

import json
import os
import shutil

import tensorflow as tf

from tf_cvae.data import vocabulary as vocab_lib
from tf_cvae.models import vae as vae_lib

# The export's signature names; each serves EncoderModule.encode.
SIGNATURES = ("serving_default", "encode")
METADATA = "tf_cvae_export.json"     # what was exported (export_encoder)


class EncoderModule(tf.Module):
  """q(z|x) of a VAE with raw inputs, for tf.saved_model.save.

  The input is what `vae.encoder.input_format` takes (sentences: string
  [batch], needing `vocab`; images: float32 [batch, 28, 28, 1]). `encode`
  returns a dict of float32 [batch, latent] tensors: `mean` and
  `log_variance` of the diagonal Gaussian q(z|x), and `sample`, one draw
  mean + exp(log_variance / 2) * eps with eps ~ N(0, I); for text also
  `unknown_words`, int32 [batch]: each sentence's words outside the
  vocabulary (read as the unknown word; unknown markers not counted).
  """

  def __init__(self, vae: vae_lib.VAE,
               vocab: vocab_lib.Vocabulary | None = None):
    super().__init__(name="encoder_export")
    # The format (and its vocabulary table) is saved with the module.
    self.inputs = vae.encoder.input_format(vocab)
    # The encoder's tf.Variables themselves, not their Keras wrappers: the
    # function reads these, and the TF1 loader behind saved_model_cli and
    # TF Serving finds only tracked variables (the decoder is not saved).
    self.encoder_variables = [v.value for layer in vae.inference_layers
                              for v in layer.variables]
    self._vae_encode = vae.encode          # a method: not tracked
    self.encode = tf.function(self._encode,
                              input_signature=[self.inputs.spec])

  def _encode(self, raw: tf.Tensor) -> dict:
    """Raw inputs [batch, ...] -> q(z|x), each [batch, latent]."""
    mean, log_variance = self._vae_encode(self.inputs.to_batch(raw),
                                          training=False)
    sample = mean + tf.exp(0.5 * log_variance) * tf.random.normal(
        tf.shape(mean))
    out = {"mean": mean, "log_variance": log_variance, "sample": sample}
    if hasattr(self.inputs, "unknown_words"):
      out["unknown_words"] = self.inputs.unknown_words(raw)
    return out


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
                   vocab: vocab_lib.Vocabulary | None = None,
                   metadata: dict | None = None) -> str:
  """Writes the SavedModel of EncoderModule(vae, vocab) to export_dir, its
  `encode` also under each of SIGNATURES.

  Text models need `vocab` (input: `sentences`, string [batch]); image models
  take none (input: `images`, float32 [batch, 28, 28, 1]); errors.InputError
  otherwise. The model is written to export_dir + ".tmp" and moved into
  place only once complete, so a failed or killed export leaves an existing
  export_dir as it was. A directory cannot replace another in one rename:
  the old export moves to export_dir + ".old" first, and a kill between the
  two renames (two system calls apart) leaves it there; the next export
  moves it back (_recover).

  Returns:
    export_dir.
  """
  export_dir = os.path.normpath(export_dir)
  tmp, old = export_dir + ".tmp", export_dir + ".old"
  _recover(export_dir)
  module = EncoderModule(vae, vocab)
  try:
    encode = module.encode.get_concrete_function()
    tf.saved_model.save(module, tmp,
                        signatures={name: encode for name in SIGNATURES})
    if metadata is not None:
      with open(os.path.join(tmp, METADATA), "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=2, sort_keys=True)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  if os.path.exists(export_dir):
    os.replace(export_dir, old)
  os.replace(tmp, export_dir)
  shutil.rmtree(old, ignore_errors=True)
  return export_dir
