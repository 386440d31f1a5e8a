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
    chunk_size: evaluate q(z) over blocks of this many z and x at a time
      (in a tf.function), so memory stays O(chunk_size^2 * latent + N) for a
      whole test set, never [N, N]; None: all pairs at once.
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


@tf.function(reduce_retracing=True)
def _logsumexp_over_x(mu, logvar, z_chunk, chunk_size):
  """logsumexp_i log q(z_j | x_i) over all N x, a block at a time: [chunk].

  A running logsumexp over [chunk_size, chunk] blocks of pairs.
  """
  total = tf.fill(tf.shape(z_chunk)[:1], tf.constant(-float("inf"), mu.dtype))
  for start in tf.range(0, tf.shape(mu)[0], chunk_size):
    block = latent.pairwise_log_q(mu[start:start + chunk_size],
                                  logvar[start:start + chunk_size], z_chunk)
    total = tf.reduce_logsumexp(
        tf.stack([total, tf.reduce_logsumexp(block, axis=0)]), axis=0)
  return total


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

  -log (1/S sum_s p(x, z_s) / q(z_s|x)), z_s ~ q(z|x). The S samples are
  scored `chunk_size` at a time and summed into a running logsumexp, so
  memory holds one chunk (the LSTM decoder's logits are
  [chunk_size * batch, time - 1, vocab]) plus [batch], whatever S (He et al.:
  500 in chunks). Sample s of example i is mu_i + sigma_i * eps_s with eps_s
  drawn from the stateless seed (seed, s): the estimate does not depend on
  chunk_size. As S grows it falls towards -log p(x) (IWAE bound).
  """

  def __init__(self, vae: vae_lib.VAE, chunk_size: int = 50):
    self.vae = vae
    self.chunk_size = chunk_size
    self._log_weights = tf.function(self._chunk_log_weights,
                                    reduce_retracing=True)

  def _chunk_log_weights(self, batch, seed, start):
    """log p(x, z_s) - log q(z_s|x) for s in [start, start + chunk): [chunk, B]."""
    vae, chunk = self.vae, self.chunk_size
    mu, logvar = vae.encode(batch, training=False)
    q_z_given_x = latent.posterior(mu, logvar)
    eps = tf.map_fn(
        lambda s: tf.random.stateless_normal(tf.shape(mu), tf.stack([seed, s]),
                                             dtype=mu.dtype),
        tf.range(start, start + chunk), fn_output_signature=mu.dtype)
    z = mu + tf.exp(0.5 * logvar) * eps                       # [C, B, latent]
    log_p_x_given_z = tf.reshape(
        vae.log_likelihood(vae_lib.repeat_batch(batch, chunk),
                           tf.reshape(z, [-1, vae.latent_dim])),
        [chunk, tf.shape(mu)[0]])
    return log_p_x_given_z + vae.prior().log_prob(z) - q_z_given_x.log_prob(z)

  def __call__(self, batch: dict, num_samples: int, seed: int = 0):
    """[batch] IW-NLL in nats from `num_samples` samples per example."""
    log_sum = None                                            # [batch]
    for start in range(0, num_samples, self.chunk_size):
      log_w = self._log_weights(batch, tf.constant(seed, tf.int64),
                                tf.constant(start, tf.int64))
      part = tf.reduce_logsumexp(
          log_w[:min(self.chunk_size, num_samples - start)], axis=0)
      log_sum = part if log_sum is None else tf.reduce_logsumexp(
          tf.stack([log_sum, part]), axis=0)
    return -(log_sum - tf.math.log(tf.cast(num_samples, log_sum.dtype)))


def perplexity(total_nll: float, total_tokens: int) -> float:
  """exp(total NLL / total predicted tokens, </s> included)."""
  return math.exp(total_nll / total_tokens)
