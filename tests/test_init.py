"""The LSTM text models' initialisations: He et al.'s ("he", the default) and
the earlier layout ("keras"), which run directories from before the option
load as."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import data as data_lib
from tf_cvae.data import vocabulary as vocab_lib
from tf_cvae.models import decoders
from tf_cvae.models import fused_lstm
from tf_cvae.models import registry
from tf_cvae.training import config as config_lib
from tf_cvae.training import train

TINY = registry.ModelConfig(embed_dim=16, hidden_dim=24, latent_dim=4,
                            decoder_dropout=0.0)
LINEAR_MAPS = ("to_params", "z_to_cell", "to_vocab")


@pytest.fixture(scope="module")
def dataset():
  return data_lib.load(data_lib.DataConfig(name="synthetic_text"))


def _vae(dataset, init, lstm_impl="fused"):
  vae = registry.build_vae(
      dataclasses.replace(TINY, init=init, lstm_impl=lstm_impl), dataset)
  batch = next(iter(dataset.batches("train", 4)))
  vae.log_likelihood(batch, vae.encode(batch)[0])   # builds every layer
  return vae, batch


def _lstms(vae):
  return [vae.encoder.lstm, vae.decoder.lstm]


@pytest.mark.parametrize("lstm_impl", ["fused", "keras"])
def test_he_init_draws_every_weight_uniformly_without_linear_biases(
    dataset, lstm_impl):
  vae, _ = _vae(dataset, "he", lstm_impl)
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


def test_keras_init_keeps_the_earlier_layout(dataset):
  vae, _ = _vae(dataset, "keras")
  for layer in (vae.encoder.to_params, vae.decoder.z_to_cell,
                vae.decoder.to_vocab):
    np.testing.assert_array_equal(layer.bias.numpy(), 0.0)
    # Glorot: wider than U(-0.01, 0.01).
    assert np.abs(layer.kernel.numpy()).max() > 0.05
  for lstm in _lstms(vae):
    units = lstm.cell.units
    bias = lstm.cell.bias.numpy()
    np.testing.assert_array_equal(bias[units:2 * units], 1.0)
    np.testing.assert_array_equal(bias[:units], 0.0)
    np.testing.assert_array_equal(bias[2 * units:], 0.0)
    assert np.abs(lstm.cell.kernel.numpy()).max() <= 0.01


@pytest.mark.parametrize("init", ["he", "keras"])
def test_both_inits_give_finite_likelihoods_samples_and_gradients(
    dataset, init):
  vae, batch = _vae(dataset, init)
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


def test_unknown_init_is_an_input_error(dataset):
  with pytest.raises(ValueError, match="init must be one of"):
    registry.build_vae(dataclasses.replace(TINY, init="glorot"), dataset)


def _write_config(run_dir, config):
  saved = dataclasses.asdict(config)
  saved["model"].pop("init")               # as written before the option
  run_dir.mkdir()
  (run_dir / "config.json").write_text(json.dumps(saved))


def test_old_text_config_without_init_loads_as_keras(tmp_path):
  _write_config(tmp_path / "old", train.TrainConfig(model=TINY))
  assert config_lib.load_config(str(tmp_path / "old")).model.init == "keras"
  # Resuming it with today's default (he) would drop its biases: refused.
  with pytest.raises(ValueError, match="different model"):
    config_lib.check_resumable(str(tmp_path / "old"), dataclasses.asdict(
        train.TrainConfig(model=TINY)))
  config_lib.check_resumable(str(tmp_path / "old"), dataclasses.asdict(
      train.TrainConfig(model=dataclasses.replace(TINY, init="keras"))))
  # A config that names its init keeps it.
  new = tmp_path / "new"
  new.mkdir()
  (new / "config.json").write_text(json.dumps(dataclasses.asdict(
      train.TrainConfig(model=TINY))))
  assert config_lib.load_config(str(new)).model.init == "he"


def test_old_image_config_keeps_the_default(tmp_path):
  _write_config(tmp_path / "old", train.TrainConfig(
      data=data_lib.DataConfig(name="synthetic_images")))
  assert config_lib.load_config(str(tmp_path / "old")).model.init == "he"


def test_fused_lstm_takes_the_bias_initializer():
  layer = fused_lstm.FusedLSTM(3, bias_initializer="ones",
                               unit_forget_bias=False)
  layer(tf.zeros([1, 2, 4]))
  np.testing.assert_array_equal(layer.cell.bias.numpy(), 1.0)


def test_bias_free_word_log_probs_and_gradients_equal_autodiff():
  rng = np.random.default_rng(4)
  hidden, kernel, upstream = (tf.constant(rng.normal(size=shape), tf.float32)
                              for shape in [(9, 6), (6, 13), (9,)])
  words = tf.constant(rng.integers(0, 13, 9), tf.int32)

  def run(log_probs_fn):
    with tf.GradientTape() as tape:
      tape.watch([hidden, kernel])
      log_probs = log_probs_fn()
      loss = tf.reduce_sum(log_probs * upstream)
    return [log_probs] + tape.gradient(loss, [hidden, kernel])

  expected = run(lambda: -tf.nn.sparse_softmax_cross_entropy_with_logits(
      words, tf.matmul(hidden, kernel)))
  got = run(lambda: decoders.word_log_probs(hidden, kernel, None, words))
  for name, a, b in zip(["log_probs", "dhidden", "dkernel"], expected, got):
    np.testing.assert_allclose(b, a, atol=1e-5, rtol=1e-5, err_msg=name)
