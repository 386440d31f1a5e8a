"""InfoNCE and the critics: values against hand computations."""

import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tf_cvae import critics
from tf_cvae import data as data_lib
from tf_cvae import objective
from tf_cvae.models import registry

tfd = tfp.distributions


def test_infonce_equals_log_k_minus_hand_cross_entropy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(5, 5)) * 3
  c, bound = critics.infonce(tf.constant(logits, tf.float32))
  # column j: z_j against every x_i, positive i = j.
  log_softmax = logits - np.log(np.exp(logits).sum(axis=0, keepdims=True))
  expected_c = np.diag(log_softmax)
  cross_entropy = -expected_c.mean()
  np.testing.assert_allclose(c.numpy(), expected_c, rtol=1e-5, atol=1e-5)
  assert abs(float(bound) - (math.log(5) - cross_entropy)) < 1e-5


def test_infonce_bound_never_exceeds_log_k():
  rng = np.random.default_rng(1)
  for k in (2, 8, 32):
    for scale in (0.1, 10.0, 1000.0):
      logits = rng.normal(size=(k, k)) * scale
      logits[np.arange(k), np.arange(k)] += scale * 5   # a near-perfect critic
      c, bound = critics.infonce(tf.constant(logits, tf.float32))
      assert float(bound) <= math.log(k) + 1e-6
      assert np.all(c.numpy() <= 1e-6)


def test_infonce_perfect_critic_reaches_log_k():
  logits = 100.0 * np.eye(16, dtype=np.float32)
  _, bound = critics.infonce(tf.constant(logits))
  assert abs(float(bound) - math.log(16)) < 1e-4


def test_self_critic_logits_are_log_q_from_tfp():
  rng = np.random.default_rng(2)
  mu = rng.normal(size=(6, 3)).astype(np.float32)
  logvar = rng.normal(size=(6, 3)).astype(np.float32) * 0.5
  z = rng.normal(size=(6, 3)).astype(np.float32)
  logits = critics.SelfCritic()(None, mu, logvar, z).numpy()
  for i in range(6):
    q_i = tfd.MultivariateNormalDiag(mu[i], np.exp(0.5 * logvar[i]))
    for j in range(6):
      assert abs(logits[i, j] - float(q_i.log_prob(z[j]))) < 1e-4


def _small_text_vae():
  dataset = data_lib.load(data_lib.DataConfig(name="synthetic_text"))
  config = registry.ModelConfig(embed_dim=16, hidden_dim=16, latent_dim=4,
                                decoder_dropout=0.0)
  batch = next(iter(dataset.batches("train", 8)))
  return registry.build_vae(config, dataset), batch


def test_hybrid_critic_shapes_gradients_and_shared_variables():
  vae, batch = _small_text_vae()
  critic = registry.build_critic("hybrid", vae)
  with tf.GradientTape() as tape:
    terms = objective.forward(vae, critic, batch, tf.constant([0, 0]),
                              training=False)
    loss = -tf.reduce_mean(terms["log_softmax_positive"])
  assert terms["critic_logits"].shape == (8, 8)
  shared = {id(v) for v in vae.trainable_variables} & {
      id(v) for v in critic.trainable_variables}
  # Exactly the encoder's word embedding is shared, nothing else.
  assert shared == {id(vae.encoder.embedding.embeddings)}
  grads = tape.gradient(loss, vae.encoder.trainable_variables)
  by_name = {v.path: g for v, g in zip(vae.encoder.trainable_variables, grads)}
  # The critic's gradient reaches the encoder's output layer through z.
  to_params = [g for name, g in by_name.items() if "to_params" in name]
  assert to_params and all(g is not None and float(tf.norm(g)) > 0
                           for g in to_params)
  own = [v for v in critic.trainable_variables if id(v) not in shared]
  print("hybrid critic parameters:",
        sum(int(np.prod(v.shape)) for v in own))


def test_self_critic_gradient_reaches_encoder():
  vae, batch = _small_text_vae()
  critic = registry.build_critic("self", vae)
  assert not critic.trainable_variables
  with tf.GradientTape() as tape:
    terms = objective.forward(vae, critic, batch, tf.constant([0, 0]),
                              training=False)
    loss = -tf.reduce_mean(terms["log_softmax_positive"])
  grads = tape.gradient(loss, vae.encoder.trainable_variables)
  assert all(g is not None for g in grads)
  assert sum(float(tf.norm(tf.convert_to_tensor(g))) for g in grads) > 0
