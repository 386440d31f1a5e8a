"""The VAE: an encoder q(z|x), the N(0, I) prior and a decoder p(x|z)."""

import keras
import tensorflow as tf

from tf_cvae.models import latent


class VAE(keras.Model):
  """Holds encoder and decoder; every density it returns is a TFP distribution."""

  def __init__(self, encoder: keras.layers.Layer, decoder: keras.layers.Layer,
               latent_dim: int, **kwargs):
    super().__init__(**kwargs)
    self.encoder = encoder
    self.decoder = decoder
    self.latent_dim = latent_dim

  def encode(self, batch: dict, training: bool = False):
    """Posterior parameters (mu, logvar), each [batch, latent]."""
    return self.encoder(batch, training=training)

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
