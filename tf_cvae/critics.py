"""Contrastive critics and the one InfoNCE function they all share.

A critic scores every (x_i, z_j) pair of a batch: `critic_logits[i, j] =
f(x_i, z_j)`, a [K, K] matrix. For each z_j the critic must pick, by a K-way
softmax over i, the x it was drawn from (the diagonal). Every critic here is
separable: x and z are embedded separately, so a batch costs 2K network
passes, never K^2.
"""

import keras
import tensorflow as tf

from tf_cvae.models import latent


def infonce(critic_logits: tf.Tensor):
  """InfoNCE of a K x K critic matrix whose positives lie on the diagonal.

  Args:
    critic_logits: [K_x, K_z] scores f(x_i, z_j); column j holds z_j's scores
      against every x, and x_j is its positive (K_z <= K_x: extra rows are
      negatives only, e.g. from other replicas or a queue).

  Returns:
    (log_softmax_positive, bound): the per-z log-probability of the positive,
    c_j = S[j, j] - logsumexp_i S[i, j] (<= 0 nats), shape [K_z]; and the
    InfoNCE lower bound on I(x; z), mean_j c_j + log K_x (<= log K_x nats).
  """
  num_x = tf.shape(critic_logits)[0]
  num_z = tf.shape(critic_logits)[1]
  per_z_logits = tf.transpose(critic_logits)            # [K_z, K_x]
  cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.range(num_z), logits=per_z_logits)
  log_softmax_positive = -cross_entropy
  bound = (tf.reduce_mean(log_softmax_positive)
           + tf.math.log(tf.cast(num_x, critic_logits.dtype)))
  return log_softmax_positive, bound


class SelfCritic(keras.layers.Layer):
  """f(x_i, z_j) = log q(z_j | x_i): the encoder's own density, no parameters."""

  def call(self, batch, mu, logvar, z, training=False):
    """[K, K] log q(z_j | x_i) in nats from posterior parameters and samples."""
    del batch, training
    return latent.pairwise_log_q(mu, logvar, z)


class HybridCritic(keras.layers.Layer):
  """A small head on the encoder's early layers, scored by scaled cosine.

  x_i -> encoder.early (shared) -> LayerNorm, MLP -> u_i; z_j -> MLP -> v_j;
  f(x_i, z_j) = cos(u_i, v_j) / temperature. The shared early layers get the
  critic's gradient. Normalizing makes the scores independent of the scale of
  the shared features (word embeddings start at U(-0.1, 0.1), where raw dot
  products are too flat for the critic to learn from).
  """

  def __init__(self, early: keras.layers.Layer, hidden_dim: int = 128,
               proj_dim: int = 64, temperature: float = 0.1, **kwargs):
    super().__init__(**kwargs)
    self.early = early
    self.temperature = temperature
    self.x_head = keras.Sequential([
        keras.layers.LayerNormalization(),
        keras.layers.Dense(hidden_dim, activation="relu"),
        keras.layers.Dense(proj_dim)], name="x_head")
    self.z_head = keras.Sequential([
        keras.layers.Dense(hidden_dim, activation="relu"),
        keras.layers.Dense(proj_dim)], name="z_head")

  def build(self, input_shape):
    del input_shape  # the sublayers build on their first call

  def call(self, batch, mu, logvar, z, training=False):
    """[K, K] scores cos(u_i, v_j) / temperature."""
    del mu, logvar
    x_embedding = tf.math.l2_normalize(
        self.x_head(self.early(batch, training=training)), axis=-1)
    z_embedding = tf.math.l2_normalize(self.z_head(z), axis=-1)
    return tf.matmul(x_embedding, z_embedding,
                     transpose_b=True) / self.temperature
