"""The LSTM text models' initialisation: He et al.'s, every weight drawn
uniformly and the linear maps without biases."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import data as data_lib
from tf_cvae.data import vocabulary as vocab_lib
from tf_cvae.models import fused_lstm
from tf_cvae.models import registry

TINY = registry.ModelConfig(embed_dim=16, hidden_dim=24, latent_dim=4,
                            decoder_dropout=0.0)
LINEAR_MAPS = ("to_params", "z_to_cell", "to_vocab")


@pytest.fixture(scope="module")
def dataset():
  return data_lib.load(data_lib.DataConfig(name="synthetic_text"))


def _vae(dataset, lstm_impl="fused"):
  vae = registry.build_vae(dataclasses.replace(TINY, lstm_impl=lstm_impl),
                           dataset)
  batch = next(iter(dataset.batches("train", 4)))
  vae.log_likelihood(batch, vae.encode(batch)[0])   # builds every layer
  return vae, batch


def _lstms(vae):
  return [vae.encoder.lstm, vae.decoder.lstm]


@pytest.mark.parametrize("lstm_impl", ["fused", "keras"])
def test_he_init_draws_every_weight_uniformly_without_linear_biases(
    dataset, lstm_impl):
  vae, _ = _vae(dataset, lstm_impl)
  assert vae.trainable_variables
  for variable in vae.trainable_variables:
    values = np.abs(variable.numpy())
    bound = 0.1 if "embedding" in variable.path else 0.01
    assert values.max() <= bound, variable.path
    assert values.max() > bound / 2, variable.path      # spread, not zeros
    parts = variable.path.split("/")
    assert not (parts[-1] == "bias" and set(parts) & set(LINEAR_MAPS)), (
        variable.path)
  for lstm in _lstms(vae):
    units = lstm.cell.units
    forget = lstm.cell.bias.numpy()[units:2 * units]
    assert np.abs(forget).max() <= 0.01
  for layer in (vae.encoder.to_params, vae.decoder.z_to_cell,
                vae.decoder.to_vocab):
    assert layer.bias is None and not layer.use_bias


def test_likelihoods_samples_and_gradients_are_finite(dataset):
  vae, batch = _vae(dataset)
  z = tf.random.stateless_normal([4, TINY.latent_dim], seed=[1, 2])
  with tf.GradientTape() as tape:
    log_likelihood = vae.log_likelihood(batch, z)
    mu, logvar = vae.encode(batch)
    loss = -tf.reduce_mean(log_likelihood) + tf.reduce_sum(mu + logvar)
  assert np.all(np.isfinite(log_likelihood.numpy()))
  assert np.all(log_likelihood.numpy() < 0.0)
  gradients = tape.gradient(loss, vae.trainable_variables)
  assert all(g is not None for g in gradients)
  assert np.isfinite(float(tf.linalg.global_norm(gradients)))
  # The log-probs through word_log_probs equal the Categorical's of logits.
  target = vae.target(batch)
  xent = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=target, logits=vae.decoder.logits(batch, z))
  valid = tf.cast(target != vocab_lib.PAD_ID, tf.float32)
  expected = -tf.reduce_sum(valid * xent, axis=1)
  np.testing.assert_allclose(log_likelihood.numpy(), expected.numpy(),
                             rtol=1e-5)
  sample = vae.decoder.likelihood(batch, z).sample(seed=[3, 4])
  assert sample.shape == target.shape
  words = vae.decoder.sample_tokens(z, 6, tf.constant([5, 6]))
  assert words.shape == (4, 6)


def test_fused_lstm_takes_the_bias_initializer():
  layer = fused_lstm.FusedLSTM(3, bias_initializer="ones",
                               unit_forget_bias=False)
  layer(tf.zeros([1, 2, 4]))
  np.testing.assert_array_equal(layer.cell.bias.numpy(), 1.0)
