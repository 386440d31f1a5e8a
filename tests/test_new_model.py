"""A new model is one encoder/decoder pair and one registry line.

A toy pair defined here, registered under "toy", trains a few steps, is
restored and evaluated, exported (serving posterior means) and sampled from,
with no other change to the package.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tf_cvae import data as data_lib
from tf_cvae.models import formats
from tf_cvae.models import layers
from tf_cvae.models import registry
from tf_cvae.trained import export
from tf_cvae.trained import restore
from tf_cvae.trained import sampling
from tf_cvae.training import evaluation
from tf_cvae.training import train
from tf_cvae.training import validation

tfd = tfp.distributions
LATENT_DIM = 2


class ToyEncoder(layers.Composite):
  """Images -> (mu, logvar) [batch, 2] through one linear map."""

  input_format = formats.Images

  def __init__(self, latent_dim: int, **kwargs):
    super().__init__(**kwargs)
    self.early = keras.layers.Flatten(name="early")   # the hybrid critic's
    self.to_params = keras.layers.Dense(2 * latent_dim, name="to_params")

  def call(self, batch: dict, training: bool = False):
    params = self.to_params(self.early(batch["image"]))
    return tuple(tf.split(params, 2, axis=-1))


class ToyDecoder(layers.Composite):
  """z -> independent Bernoulli pixels through one linear map."""

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.to_logits = keras.layers.Dense(28 * 28, name="to_logits")

  @staticmethod
  def target(batch: dict) -> tf.Tensor:
    return batch["image"]

  def logits(self, z: tf.Tensor) -> tf.Tensor:
    return tf.reshape(self.to_logits(z), (-1, 28, 28, 1))

  def likelihood(self, batch, z, training=False):
    return tfd.Independent(tfd.Bernoulli(logits=self.logits(z),
                                         dtype=tf.float32), 3)

  def model_sample(self, batch, z, seed):
    return {"image": self.likelihood(batch, z).sample(seed=seed)}

  def relax(self, sample, z, training=False):
    return {"image": tf.sigmoid(self.logits(z))}

  def generate(self, z, seed, greedy=False, max_length=40):
    if greedy:
      return {"image": tf.cast(self.logits(z) > 0.0, tf.float32)}
    return self.model_sample(None, z, seed)


def _toy(config: registry.ModelConfig, dataset):
  del dataset
  return ToyEncoder(config.latent_dim, name="encoder"), ToyDecoder(
      name="decoder")


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
  """A 4-step run of the registered toy model (self critic), restored."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setitem(registry.MODELS, "toy", ("image", _toy))
    run_dir = str(tmp_path_factory.mktemp("toy") / "run")
    results = train.run(train.TrainConfig(
        data=data_lib.DataConfig(name="synthetic_images"),
        model=registry.ModelConfig(name="toy", latent_dim=LATENT_DIM),
        critic="self", batch_size=16, max_steps=4, out_dir=run_dir,
        eval=evaluation.EvalConfig(iw_samples=2, iw_chunk_size=2,
                                   max_examples=32),
        log_every=1000, checkpoint_every=1000))
    yield run_dir, results, restore.restore_run(run_dir, "last")


def test_the_toy_model_trains_and_evaluates_after_restoring(toy_run):
  run_dir, results, run = toy_run
  assert isinstance(run.vae.encoder, ToyEncoder)
  assert isinstance(run.vae.decoder, ToyDecoder)
  assert run.vae.name == "toy_vae" and run.vocab is None
  assert run.which == "last" and run.checkpoint.startswith(run_dir)
  assert np.isfinite(results["rec"]) and results["rec"] > 0
  again = evaluation.evaluate(run.vae, run.critic, run.dataset,
                              validation.final_eval_config(run.config))
  for key in ("kl", "rec", "nll"):
    assert again[key] == pytest.approx(results[key], rel=1e-5), key


def test_the_toy_export_serves_posterior_means(toy_run, tmp_path):
  run = toy_run[2]
  images = (np.random.default_rng(0).random((5, 28, 28, 1)) < 0.3).astype(
      np.float32)
  export_dir = export.export_encoder(run.vae, str(tmp_path / "export"),
                                     run.vocab)
  loaded = tf.saved_model.load(export_dir)
  served = loaded.signatures["serving_default"](images=tf.constant(images))
  assert served["mean"].shape == (5, LATENT_DIM)
  live = run.vae.encode({"image": tf.constant(images)})[0].numpy()
  np.testing.assert_allclose(served["mean"].numpy(), live, atol=1e-5)


def test_the_toy_model_samples_and_reconstructs(toy_run):
  vae = toy_run[2].vae
  z = sampling.prior_latents(LATENT_DIM, 3, seed=0)
  sampled = sampling.decode(vae, z, "sample", seed=1)
  assert sampled.shape == (3, 28, 28, 1)
  assert set(np.unique(sampled)) <= {0.0, 1.0}
  np.testing.assert_array_equal(sampled,
                                sampling.decode(vae, z, "sample", seed=1))
  greedy = sampling.decode(vae, z, "greedy")
  expected = vae.decoder.logits(z).numpy() > 0.0
  np.testing.assert_array_equal(greedy, expected.astype(np.float32))
  images = np.zeros((4, 28, 28), np.float32)
  means, decoded = sampling.reconstruct(vae, sampling.to_batch(vae, images))
  assert means.shape == (4, LATENT_DIM) and decoded.shape == (4, 28, 28, 1)
  _, paths = sampling.interpolate(vae, sampling.to_batch(vae, images), 3)
  assert paths.shape == (2, 3, 28, 28, 1)
