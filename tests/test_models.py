"""Encoders and decoders: log-probs against TFP evaluated by hand, masking."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tf_cvae import data as data_lib
from tf_cvae.data import vocabulary as vocab_lib
from tf_cvae.models import registry

tfd = tfp.distributions
CONFIG = registry.ModelConfig(embed_dim=8, hidden_dim=12, latent_dim=3,
                              decoder_dropout=0.0)


def _text_vae():
  dataset = data_lib.load(data_lib.DataConfig(name="synthetic_text"))
  return registry.build_vae(CONFIG, dataset)


def _tokens(rows, width):
  out = np.zeros((len(rows), width), np.int32)
  for i, row in enumerate(rows):
    out[i, :len(row)] = row
  return {"tokens": tf.constant(out)}


def test_lstm_decoder_log_prob_is_masked_sum_of_categorical_log_probs():
  vae = _text_vae()
  batch = _tokens([[1, 10, 11, 12, 2], [1, 20, 2]], 7)
  z = tf.constant(np.random.default_rng(0).normal(size=(2, 3)), tf.float32)
  log_p = vae.log_likelihood(batch, z).numpy()
  logits = vae.decoder.logits(batch, z).numpy()
  target = batch["tokens"].numpy()[:, 1:]
  for i in range(2):
    expected = sum(float(tfd.Categorical(logits=logits[i, t]).log_prob(
        target[i, t])) for t in range(6) if target[i, t] != vocab_lib.PAD_ID)
    assert abs(log_p[i] - expected) < 1e-4


def test_padding_changes_neither_likelihood_nor_posterior():
  vae = _text_vae()
  short = _tokens([[1, 10, 11, 2], [1, 30, 31, 32, 33, 2]], 6)
  padded = _tokens([[1, 10, 11, 2], [1, 30, 31, 32, 33, 2]], 18)
  z = tf.constant([[0.1, -0.2, 0.3], [1.0, 0.0, -1.0]])
  np.testing.assert_allclose(vae.log_likelihood(short, z).numpy(),
                             vae.log_likelihood(padded, z).numpy(), atol=1e-5)
  for a, b in zip(vae.encode(short), vae.encode(padded)):
    # The encoder's state is taken at each sentence's last real token.
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def test_mlp_decoder_log_prob_is_sum_of_bernoulli_log_probs():
  dataset = data_lib.load(data_lib.DataConfig(name="synthetic_images"))
  vae = registry.build_vae(registry.ModelConfig(hidden_dim=16, latent_dim=3),
                           dataset)
  batch = next(iter(dataset.batches("test", 4)))
  z = tf.zeros([4, 3])
  likelihood = vae.decoder.likelihood(batch, z)
  assert likelihood.event_shape == (28, 28, 1)
  probs = likelihood.distribution.probs_parameter().numpy()
  x = batch["image"].numpy()
  expected = np.sum(x * np.log(probs) + (1 - x) * np.log1p(-probs),
                    axis=(1, 2, 3))
  np.testing.assert_allclose(vae.log_likelihood(batch, z).numpy(), expected,
                             rtol=1e-4)


def test_model_registry_rejects_mismatched_kinds():
  dataset = data_lib.load(data_lib.DataConfig(name="synthetic_images"))
  with pytest.raises(ValueError, match="models text data"):
    registry.build_vae(registry.ModelConfig(name="lstm"), dataset)
