"""The training objective: negative ELBO plus the weighted critic cross-entropy.

    loss = mean_i [ -log p(x_i|z_i) + kl_weight * KL(q(z|x_i) || p(z)) ]
           - critic_weight * mean_j c_j            (c_j <= 0: InfoNCE, critics.py)

All terms are in nats. `forward` returns per-example terms; the reductions are
explicit in `total_loss`.
"""

import dataclasses

import tensorflow as tf
import tensorflow_probability as tfp

from tf_cvae import critics
from tf_cvae.models import latent

tfd = tfp.distributions


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
  """Weights of the loss terms."""
  kl_weight: float = 1.0                 # beta; 1 is the ELBO
  critic_weight: float = 0.0             # lambda of the paper
  critic_target: float | None = None     # nats: no critic loss once bound >= it


def forward(vae, critic, batch: dict, seed: tf.Tensor, training: bool) -> dict:
  """Runs encoder, decoder and critic once on a batch.

  Args:
    vae: a models.vae.VAE.
    critic: a critic layer (critics.py) or None.
    batch: {"tokens": [K, T]} or {"image": [K, 28, 28, 1]}.
    seed: int32 [2], the stateless seed of the reparameterized sample.
    training: enables dropout.

  Returns:
    dict of tensors: mu, logvar, z [K, latent]; log_likelihood, kl [K] nats;
    and with a critic, critic_logits [K, K], log_softmax_positive [K] and
    infonce_bound (scalar, nats).
  """
  mu, logvar = vae.encode(batch, training=training)
  q_z_given_x = latent.posterior(mu, logvar)
  z = q_z_given_x.sample(seed=seed)
  terms = {
      "mu": mu, "logvar": logvar, "z": z,
      "log_likelihood": vae.log_likelihood(batch, z, training=training),
      "kl": tfd.kl_divergence(q_z_given_x, vae.prior()),
  }
  if critic is not None:
    critic_logits = critic(batch, mu, logvar, z, training=training)
    terms["critic_logits"] = critic_logits
    terms["log_softmax_positive"], terms["infonce_bound"] = critics.infonce(
        critic_logits)
  return terms


def negative_elbo(log_likelihood: tf.Tensor, kl: tf.Tensor,
                  kl_weight: float | tf.Tensor = 1.0) -> tf.Tensor:
  """-log p(x|z) + kl_weight * KL per example, [batch] nats."""
  return -log_likelihood + kl_weight * kl


def critic_loss(log_softmax_positive: tf.Tensor, infonce_bound: tf.Tensor,
                critic_target: float | None = None) -> tf.Tensor:
  """The critic's cross-entropy, -mean_j c_j (scalar nats, >= 0).

  With `critic_target`, the loss (and its gradient) is zero once the InfoNCE
  bound has reached the target: a hinge, the critic's analogue of free bits.
  """
  loss = -tf.reduce_mean(log_softmax_positive)
  if critic_target is None:
    return loss
  active = tf.cast(infonce_bound < critic_target, loss.dtype)
  return tf.stop_gradient(active) * loss


def total_loss(terms: dict, config: ObjectiveConfig) -> tf.Tensor:
  """The scalar minimized by training: mean negative ELBO + lambda * critic."""
  loss = tf.reduce_mean(negative_elbo(terms["log_likelihood"], terms["kl"],
                                      config.kl_weight))
  if "log_softmax_positive" in terms and config.critic_weight:
    loss += config.critic_weight * critic_loss(
        terms["log_softmax_positive"], terms["infonce_bound"],
        config.critic_target)
  return loss
