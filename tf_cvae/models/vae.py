"""The VAE: an encoder q(z|x), the N(0, I) prior and a decoder p(x|z)."""

import keras
import tensorflow as tf

from tf_cvae.models import latent


class MeanNormalization(keras.layers.Layer):
  """BN-VAE's batch normalisation of the posterior means (Zhu et al. 2020):
  mu_d -> gamma * (mu_d - mean_d) / std_d + beta_d per latent dimension, with
  gamma fixed and beta learned; batch statistics in training, moving ones at
  evaluation. Over a training batch mean(mu_d^2) = gamma^2 + beta_d^2 (up to
  BN's epsilon, 1e-5, against the means' variance), so the batch-mean KL is
  at least latent * gamma^2 / 2 nats."""

  def __init__(self, gamma: float, **kwargs):
    super().__init__(**kwargs)
    self.gamma = gamma
    # Synchronized: under tf.distribute the statistics are the global
    # batch's, so replicas take the single-device step.
    self.norm = keras.layers.BatchNormalization(center=False, scale=False,
                                                epsilon=1e-5,
                                                synchronized=True)

  def build(self, input_shape):
    self.beta = self.add_weight(shape=(input_shape[-1],), initializer="zeros",
                                name="beta")

  def call(self, mu, training=False):
    return self.gamma * self.norm(mu, training=training) + self.beta


class VAE(keras.Model):
  """Holds encoder and decoder; every density it returns is a TFP distribution.

  With `bn_gamma` > 0 the posterior means pass through MeanNormalization
  (BN-VAE), which belongs to the encoder's side."""

  def __init__(self, encoder: keras.layers.Layer, decoder: keras.layers.Layer,
               latent_dim: int, bn_gamma: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    self.encoder = encoder
    self.decoder = decoder
    self.latent_dim = latent_dim
    self.mean_norm = (MeanNormalization(bn_gamma, name="mean_norm")
                      if bn_gamma else None)

  def encode(self, batch: dict, training: bool = False):
    """Posterior parameters (mu, logvar), each [batch, latent]."""
    mu, logvar = self.encoder(batch, training=training)
    if self.mean_norm is not None:
      mu = self.mean_norm(mu, training=training)
    return mu, logvar

  @property
  def inference_layers(self) -> list:
    """The layers of q(z|x): the encoder, and BN-VAE's normalisation."""
    return [self.encoder] + ([self.mean_norm] if self.mean_norm else [])

  def prior(self):
    """p(z) = N(0, I), event [latent]."""
    return latent.prior(self.latent_dim)

  def target(self, batch: dict) -> tf.Tensor:
    """What the decoder's likelihood scores (tokens after <s>, or pixels)."""
    return self.decoder.target(batch)

  def log_likelihood(self, batch: dict, z: tf.Tensor,
                     training: bool = False) -> tf.Tensor:
    """log p(x|z) in nats per example, [batch]; z is [batch, latent]."""
    likelihood = self.decoder.likelihood(batch, z, training=training)
    return likelihood.log_prob(self.target(batch))

  def call(self, batch: dict, training: bool = False):
    """(mu, logvar) of q(z|x): lets Keras build and summarise the encoder."""
    return self.encode(batch, training=training)


def repeat_batch(batch: dict, times: int) -> dict:
  """Tiles every [batch, ...] entry to [times * batch, ...] (sample-major)."""
  def tile(x):
    multiples = tf.concat([[times], tf.ones([tf.rank(x) - 1], tf.int32)], 0)
    return tf.tile(x, multiples)
  return {k: tile(v) for k, v in batch.items()}


def repeated_log_likelihood(vae, batch: dict, z: tf.Tensor) -> tf.Tensor:
  """log p(x|z_s) [S, B] nats for z [S, B, latent]: the batch repeated S
  times through `vae.log_likelihood` (any decoder)."""
  samples, batch_size = tf.shape(z)[0], tf.shape(z)[1]
  flat = vae.log_likelihood(repeat_batch(batch, samples),
                            tf.reshape(z, [-1, vae.latent_dim]))
  return tf.reshape(flat, [samples, batch_size])


def sample_log_likelihood(vae, batch: dict, z: tf.Tensor) -> tf.Tensor:
  """log p(x|z_s) in nats, [S, B], for z [S, B, latent] (S samples of each
  example; evaluation): the decoder's own `sample_log_likelihood` where it
  has one (it shares work across the samples), else
  `repeated_log_likelihood`."""
  decoder = getattr(vae, "decoder", None)
  if hasattr(decoder, "sample_log_likelihood"):
    return decoder.sample_log_likelihood(batch, z)
  return repeated_log_likelihood(vae, batch, z)
