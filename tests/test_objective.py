"""The loss: ELBO terms, the critic hinge, and the combined scalar."""

import numpy as np
import tensorflow as tf

from tf_cvae import objective


def test_negative_elbo_is_reconstruction_plus_weighted_kl():
  log_likelihood = tf.constant([-3.0, -5.0])
  kl = tf.constant([1.0, 2.0])
  np.testing.assert_allclose(objective.negative_elbo(log_likelihood, kl),
                             [4.0, 7.0])
  np.testing.assert_allclose(
      objective.negative_elbo(log_likelihood, kl, kl_weight=0.5), [3.5, 6.0])


def _critic_terms(bound):
  c = tf.Variable([-1.0, -2.0, -0.5])
  return c, tf.constant(bound)


def test_critic_hinge_gradient_zero_above_target():
  c, bound = _critic_terms(1.5)
  with tf.GradientTape() as tape:
    loss = objective.critic_loss(c, bound, critic_target=1.0)
  assert float(loss) == 0.0
  grad = tape.gradient(loss, c)
  assert grad is None or float(tf.reduce_sum(tf.abs(grad))) == 0.0


def test_critic_hinge_active_below_target():
  c, bound = _critic_terms(0.5)
  with tf.GradientTape() as tape:
    loss = objective.critic_loss(c, bound, critic_target=1.0)
  np.testing.assert_allclose(float(loss), 3.5 / 3, rtol=1e-6)
  np.testing.assert_allclose(tape.gradient(loss, c).numpy(), [-1 / 3] * 3,
                             rtol=1e-6)


def test_total_loss_adds_lambda_times_critic_cross_entropy():
  terms = objective.Terms(
      None, None, None, log_likelihood=tf.constant([-3.0, -5.0]),
      kl_per_dim=tf.constant([[1.0], [2.0]]), kl=tf.constant([1.0, 2.0]),
      critic=objective.Contrast(
          None, None, tf.constant([-0.5, -1.5]), tf.constant(0.0)))
  config = objective.ObjectiveConfig(critic_weight=4.0)
  # mean neg. ELBO 5.5, critic cross-entropy 1.0.
  np.testing.assert_allclose(float(objective.loss(terms, config).total), 9.5)
  plain = objective.ObjectiveConfig(critic_weight=0.0)
  np.testing.assert_allclose(float(objective.loss(terms, plain).total), 5.5)
