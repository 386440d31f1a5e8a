"""The latent space: the standard normal prior and diagonal-Gaussian posteriors.

Posteriors are given by their parameters `mu`, `logvar` (each [batch, latent]);
every density here is a TFP distribution built from those tensors, and every
log-density is in nats.
"""

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def posterior(mu: tf.Tensor, logvar: tf.Tensor) -> tfd.Distribution:
  """q(z|x) = N(mu, diag(exp(logvar))); batch shape [batch], event [latent]."""
  return tfd.MultivariateNormalDiag(loc=mu, scale_diag=tf.exp(0.5 * logvar))


def prior(latent_dim: int, dtype=tf.float32) -> tfd.Distribution:
  """p(z) = N(0, I) with event shape [latent_dim]."""
  return tfd.MultivariateNormalDiag(loc=tf.zeros([latent_dim], dtype))


def kl_to_prior_per_dim(mu: tf.Tensor, logvar: tf.Tensor) -> tf.Tensor:
  """KL(q(z_d|x) || N(0, 1)) per example and dimension: [batch, latent] nats.

  Its sum over the last axis is KL(q(z|x) || p(z)); free bits floors it per
  dimension.
  """
  return tfd.kl_divergence(tfd.Normal(mu, tf.exp(0.5 * logvar)),
                           tfd.Normal(tf.zeros_like(mu), 1.0))


def pairwise_log_q(mu: tf.Tensor, logvar: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
  """log q(z_j | x_i) for every pair: [num_x, num_z] nats.

  Args:
    mu, logvar: posterior parameters of x_1..x_num_x, each [num_x, latent].
    z: latent samples z_1..z_num_z, [num_z, latent].
  """
  q = posterior(mu[:, tf.newaxis, :], logvar[:, tf.newaxis, :])  # batch [nx, 1]
  return q.log_prob(z[tf.newaxis, :, :])
