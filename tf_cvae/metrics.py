"""The paper's metrics as functions of tensors, shared by text and images.

All log-densities, KLs and informations are in nats.
"""

import math

import tensorflow as tf

from tf_cvae.models import latent
from tf_cvae.models import vae as vae_lib

ACTIVE_UNIT_THRESHOLD = 0.01


def mutual_information(mu: tf.Tensor, logvar: tf.Tensor, z: tf.Tensor,
                       chunk_size: int | None = None) -> tf.Tensor:
  """He et al.'s estimate of I_q(x; z) over one set of N examples (nats).

  I = E[log q(z|x)] - E[log q(z)], with q(z) = 1/N sum_i q(z|x_i), the
  aggregate posterior over the same N examples, and one z_j ~ q(z|x_j) each.
  E[log q(z|x)] is the exact negative entropy. The estimate cannot exceed
  log N and can read slightly negative from sampling noise.

  Args:
    mu, logvar: [N, latent] posterior parameters.
    z: [N, latent], z_j drawn from q(z|x_j).
    chunk_size: evaluate q(z) over chunks of this many z and x at a time, so
      memory stays O(chunk_size^2 * latent) for a whole test set; None: all.
  """
  num = tf.shape(mu)[0]
  neg_entropy = -tf.reduce_mean(latent.posterior(mu, logvar).entropy())
  if chunk_size is None:
    log_q_z = tf.reduce_logsumexp(latent.pairwise_log_q(mu, logvar, z), axis=0)
  else:
    log_q_z = tf.concat([
        _logsumexp_over_x(mu, logvar, z[start:start + chunk_size], chunk_size)
        for start in range(0, int(num), chunk_size)], axis=0)
  log_q_z -= tf.math.log(tf.cast(num, mu.dtype))
  return neg_entropy - tf.reduce_mean(log_q_z)


def _logsumexp_over_x(mu, logvar, z_chunk, chunk_size):
  """logsumexp_i log q(z_j | x_i) over all x, chunk by chunk: [chunk]."""
  parts = [tf.reduce_logsumexp(latent.pairwise_log_q(
      mu[start:start + chunk_size], logvar[start:start + chunk_size], z_chunk),
      axis=0) for start in range(0, int(mu.shape[0]), chunk_size)]
  return tf.reduce_logsumexp(tf.stack(parts), axis=0)


def active_units(means: tf.Tensor,
                 threshold: float = ACTIVE_UNIT_THRESHOLD):
  """Active units: dims whose posterior mean varies over the data set.

  Args:
    means: [N, latent] posterior means E_q[z|x] over a whole split.
    threshold: variance above which a unit counts as active (He et al.: 0.01).

  Returns:
    (count, variances): the int count and the per-dim variances [latent].
  """
  variances = tf.math.reduce_variance(means, axis=0)
  return int(tf.reduce_sum(tf.cast(variances > threshold, tf.int32))), variances


class ImportanceWeightedNLL:
  """Importance-weighted estimate of -log p(x) per example (nats).

  -log (1/S sum_s p(x, z_s) / q(z_s|x)), z_s ~ q(z|x), the S samples drawn
  `chunk_size` at a time so memory does not grow with S (He et al.: 500 in
  chunks). As S grows the estimate falls towards -log p(x) (IWAE bound).
  """

  def __init__(self, vae: vae_lib.VAE, chunk_size: int = 50):
    self.vae = vae
    self.chunk_size = chunk_size
    self._log_weights = tf.function(self._chunk_log_weights,
                                    reduce_retracing=True)

  def _chunk_log_weights(self, batch, seed):
    """log p(x, z_s) - log q(z_s|x) for chunk_size samples: [chunk, batch]."""
    vae, chunk = self.vae, self.chunk_size
    mu, logvar = vae.encode(batch, training=False)
    q_z_given_x = latent.posterior(mu, logvar)
    z = q_z_given_x.sample(chunk, seed=seed)                 # [C, B, latent]
    log_p_x_given_z = tf.reshape(
        vae.log_likelihood(vae_lib.repeat_batch(batch, chunk),
                           tf.reshape(z, [-1, vae.latent_dim])),
        [chunk, tf.shape(mu)[0]])
    return log_p_x_given_z + vae.prior().log_prob(z) - q_z_given_x.log_prob(z)

  def __call__(self, batch: dict, num_samples: int, seed: int = 0):
    """[batch] IW-NLL in nats from `num_samples` samples per example."""
    log_weights = []
    for start in range(0, num_samples, self.chunk_size):
      log_w = self._log_weights(batch, tf.constant([seed, start], tf.int32))
      log_weights.append(log_w[:min(self.chunk_size, num_samples - start)])
    log_weights = tf.concat(log_weights, axis=0)             # [S, batch]
    return -(tf.reduce_logsumexp(log_weights, axis=0)
             - tf.math.log(tf.cast(num_samples, log_weights.dtype)))


def perplexity(total_nll: float, total_tokens: int) -> float:
  """exp(total NLL / total predicted tokens, </s> included)."""
  return math.exp(total_nll / total_tokens)
