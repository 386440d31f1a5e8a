"""Hand-written gradients against autodiff: FusedLSTM against
keras.layers.LSTM (outputs, states, gradients), the decoder's word_log_probs
against softmax cross-entropy."""

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import data as data_lib
from tf_cvae.models import decoders
from tf_cvae.models import fused_lstm
from tf_cvae.models import registry

BATCH, TIME, INPUT, UNITS = 5, 9, 6, 7
LENGTHS = [9, 4, 6, 1, 8]      # padding after each sentence's end


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  x = tf.constant(rng.normal(size=(BATCH, TIME, INPUT)), tf.float32)
  state = [tf.constant(rng.normal(size=(BATCH, UNITS)), tf.float32)
           for _ in range(2)]
  mask = tf.constant(np.arange(TIME)[None, :] < np.array(LENGTHS)[:, None])
  return x, state, mask


def _layer_pair(return_sequences, seed=0):
  """A Keras LSTM and a FusedLSTM holding the same random weights."""
  keras_layer = keras.layers.LSTM(UNITS, return_sequences=return_sequences,
                                  return_state=True)
  fused = fused_lstm.FusedLSTM(UNITS, return_sequences=return_sequences,
                               return_state=True)
  x, _, _ = _inputs()
  keras_layer(x)
  fused(x)
  rng = np.random.default_rng(seed + 1)
  for a, b in zip(keras_layer.weights, fused.weights):
    assert a.shape == b.shape
    a.assign(rng.normal(size=a.shape).astype(np.float32) * 0.5)
    b.assign(a)
  return keras_layer, fused


def _outputs_and_gradients(layer, x, state, mask, compiled):
  """(output, h, c) and d loss / d (x, h0, c0, kernel, recurrent, bias)."""
  weights = np.sin(np.arange(UNITS, dtype=np.float32))

  def run(x, h0, c0):
    with tf.GradientTape() as tape:
      tape.watch([x, h0, c0])
      output, h, c = layer(x, mask=mask, initial_state=[h0, c0])
      # Every output feeds the loss, with distinct weights per unit.
      loss = (tf.reduce_sum(output * weights) + 1.3 * tf.reduce_sum(h)
              + tf.reduce_sum(c * c))
    grads = tape.gradient(loss, [x, h0, c0] + layer.trainable_weights)
    return [output, h, c] + grads

  if compiled:
    run = tf.function(run)
  return [t.numpy() for t in run(x, *state)]


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("compiled", [True, False])
def test_fused_lstm_equals_keras_lstm(return_sequences, masked, compiled):
  keras_layer, fused = _layer_pair(return_sequences)
  x, state, mask = _inputs()
  mask = mask if masked else None
  expected = _outputs_and_gradients(keras_layer, x, state, mask, compiled)
  got = _outputs_and_gradients(fused, x, state, mask, compiled)
  names = ["output", "h", "c", "dx", "dh0", "dc0", "dkernel", "drecurrent",
           "dbias"]
  for name, a, b in zip(names, expected, got):
    np.testing.assert_allclose(b, a, atol=1e-5, rtol=1e-5, err_msg=name)


def test_masked_final_state_is_the_last_real_tokens():
  _, fused = _layer_pair(return_sequences=True)
  x, state, mask = _inputs()
  outputs, h, c = fused(x, mask=mask, initial_state=state)
  for row, length in enumerate(LENGTHS):
    alone, h_alone, c_alone = fused(x[row:row + 1, :length],
                                    initial_state=[s[row:row + 1]
                                                   for s in state])
    np.testing.assert_allclose(h[row], h_alone[0], atol=1e-6)
    np.testing.assert_allclose(c[row], c_alone[0], atol=1e-6)
    # Masked steps output the kept state, as Keras does.
    np.testing.assert_allclose(outputs[row, length:],
                               np.tile(h_alone, [TIME - length, 1]), atol=1e-6)


def _vae(lstm_impl):
  dataset = data_lib.load(data_lib.DataConfig(name="synthetic_text"))
  config = registry.ModelConfig(embed_dim=8, hidden_dim=12, latent_dim=3,
                                decoder_dropout=0.0, lstm_impl=lstm_impl)
  vae = registry.build_vae(config, dataset)
  batch = next(iter(dataset.batches("test", 6)))
  mu, _ = vae.encode(batch)
  vae.log_likelihood(batch, mu)
  return vae, batch


def test_checkpoints_move_between_implementations(tmp_path):
  keras_vae, batch = _vae("keras")
  fused_vae, _ = _vae("fused")
  assert isinstance(fused_vae.encoder.lstm, fused_lstm.FusedLSTM)
  assert ([v.path for v in keras_vae.weights]
          == [v.path for v in fused_vae.weights])
  path = tf.train.Checkpoint(vae=keras_vae).write(str(tmp_path / "ckpt"))
  tf.train.Checkpoint(vae=fused_vae).read(path).assert_consumed()
  z = tf.constant(np.random.default_rng(0).normal(size=(6, 3)), tf.float32)
  for a, b in zip(keras_vae.encode(batch), fused_vae.encode(batch)):
    np.testing.assert_allclose(b, a, atol=1e-5)
  np.testing.assert_allclose(fused_vae.log_likelihood(batch, z),
                             keras_vae.log_likelihood(batch, z), atol=1e-4)
  # Sampling steps the same cell.
  seed = tf.constant([1, 2])
  np.testing.assert_array_equal(fused_vae.decoder.sample_tokens(z, 5, seed),
                                keras_vae.decoder.sample_tokens(z, 5, seed))


def test_saved_model_runs_the_forward_pass(tmp_path):
  _, fused = _layer_pair(return_sequences=False)
  x, state, mask = _inputs()
  module = tf.Module()
  module.layer = fused
  module.encode = tf.function(
      lambda x, mask: fused(x, mask=mask)[0], input_signature=[
          tf.TensorSpec([None, None, INPUT]), tf.TensorSpec([None, None],
                                                            tf.bool)])
  tf.saved_model.save(module, str(tmp_path / "export"))
  loaded = tf.saved_model.load(str(tmp_path / "export"))
  np.testing.assert_allclose(loaded.encode(x, mask), fused(x, mask=mask)[0],
                             atol=1e-6)


_MIRRORED = textwrap.dedent("""
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tf_cvae.models import fused_lstm
    strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
    with strategy.scope():
      layer = fused_lstm.FusedLSTM(4)
      layer(tf.zeros([1, 3, 2]))
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 3, 2)),
                    tf.float32)

    def grads(x):
      with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) ** 2)
      return tape.gradient(loss, layer.trainable_weights)

    @tf.function
    def mirrored():
      per_replica = strategy.run(
          lambda: grads(x[2 * tf.distribute.get_replica_context()
                          .replica_id_in_sync_group:][:2]))
      return [strategy.reduce("SUM", g, axis=None) for g in per_replica]

    for a, b in zip(mirrored(), grads(x)):
      np.testing.assert_allclose(a, b, atol=1e-5)
    print("ok")
""")


@pytest.mark.slow
def test_gradients_under_mirrored_strategy_sum_to_the_single_device_ones():
  result = subprocess.run([sys.executable, "-c", _MIRRORED],
                          capture_output=True, text=True, timeout=300)
  assert result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_lstm_impl_auto_is_fused_on_cpu_and_unknown_names_are_refused():
  expected = ("keras" if tf.config.list_physical_devices("GPU") else "fused")
  assert fused_lstm.resolve_impl("auto") == expected
  with pytest.raises(ValueError, match="lstm_impl must be one of"):
    _vae("cudnn")


def test_word_log_probs_and_gradients_equal_autodiff():
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
  got = run(lambda: decoders.word_log_probs(hidden, kernel, words))
  for name, a, b in zip(["log_probs", "dhidden", "dkernel"], expected, got):
    np.testing.assert_allclose(b, a, atol=1e-5, rtol=1e-5, err_msg=name)
