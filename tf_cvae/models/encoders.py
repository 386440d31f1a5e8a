"""Inference networks: x -> (mu, logvar) of a diagonal-Gaussian q(z|x).

Each encoder also exposes `early`, a layer made of its first layers (batch ->
[batch, features]) whose variables the hybrid critic shares, and no others,
and names its raw inputs' format (`input_format`, a formats class): what an
export of it takes and which example batch builds it.
"""

import keras
import tensorflow as tf

from tf_cvae import errors
from tf_cvae.data import vocabulary as vocab_lib
from tf_cvae.models import formats
from tf_cvae.models import fused_lstm
from tf_cvae.models import layers


def lstm_init():
  """He et al.'s LSTM initialisation: U(-0.01, 0.01)."""
  return keras.initializers.RandomUniform(-0.01, 0.01)


def embedding_init():
  """He et al.'s embedding initialisation: U(-0.1, 0.1)."""
  return keras.initializers.RandomUniform(-0.1, 0.1)


# Initialisations of the text models' LSTMs and linear maps (embeddings are
# U(-0.1, 0.1) under both). "he": He et al. 2019, every LSTM weight and bias
# U(-0.01, 0.01) (no forget-gate bias of 1) and bias-free linear maps with
# U(-0.01, 0.01) kernels. "keras": LSTM kernels U(-0.01, 0.01), Keras's zero
# LSTM biases with forget-gate bias 1, Glorot linear maps with zero biases
# (the layout of runs from before the option).
INITS = ("he", "keras")


def check_init(init: str) -> None:
  """Raises errors.InputError unless `init` is one of INITS."""
  if init not in INITS:
    raise errors.InputError(f"init must be one of {', '.join(INITS)}, "
                            f"got {init!r}")


def lstm_initializers(init: str) -> dict:
  """The initializer keyword arguments of an LSTM layer under `init`."""
  check_init(init)
  kwargs = dict(kernel_initializer=lstm_init(),
                recurrent_initializer=lstm_init())
  if init == "he":
    kwargs.update(bias_initializer=lstm_init(), unit_forget_bias=False)
  return kwargs


def linear_map(units: int, init: str, name: str) -> keras.layers.Dense:
  """A linear layer under `init`: "he" bias-free with a U(-0.01, 0.01)
  kernel, "keras" Glorot kernel plus a zero bias."""
  check_init(init)
  if init == "he":
    return keras.layers.Dense(units, use_bias=False,
                              kernel_initializer=lstm_init(), name=name)
  return keras.layers.Dense(units, name=name)


class MaskedMeanEmbedding(layers.Composite):
  """Mean of a shared embedding over a sentence's real tokens: [batch, embed]."""

  def __init__(self, embedding: keras.layers.Embedding, **kwargs):
    super().__init__(**kwargs)
    self.embedding = embedding

  def call(self, batch: dict, training: bool = False) -> tf.Tensor:
    tokens = batch["tokens"]
    mask = tf.cast(tf.not_equal(tokens, vocab_lib.PAD_ID), tf.float32)
    total = tf.reduce_sum(self.embedding(tokens) * mask[..., tf.newaxis], 1)
    return total / tf.reduce_sum(mask, axis=1, keepdims=True)


class LastHidden(layers.Composite):
  """The encoder's embedding and LSTM, shared: the last state [batch, hidden]
  (at each sentence's </s>), the hybrid critic's features of a sentence."""

  def __init__(self, embedding: keras.layers.Embedding, lstm, **kwargs):
    super().__init__(**kwargs)
    self.embedding, self.lstm = embedding, lstm

  def call(self, batch: dict, training: bool = False) -> tf.Tensor:
    tokens = batch["tokens"]
    return self.lstm(self.embedding(tokens), training=training,
                     mask=tf.not_equal(tokens, vocab_lib.PAD_ID))


# What the hybrid critic shares of an LSTM encoder (LSTMEncoder.early):
# "hidden" its embedding and LSTM (the last state), "embedding" the word
# embedding alone (mean over the sentence; runs before the option).
HYBRID_FEATURES = ("hidden", "embedding")


class FirstDense(layers.Composite):
  """The first hidden layer of an image MLP: pixels in {-1, 1} -> ReLU."""

  def __init__(self, hidden_dim: int, **kwargs):
    super().__init__(**kwargs)
    self.flatten = keras.layers.Flatten()
    self.dense = keras.layers.Dense(hidden_dim, activation="relu")

  def call(self, batch: dict, training: bool = False) -> tf.Tensor:
    return self.dense(self.flatten(2.0 * batch["image"] - 1.0))


class LSTMEncoder(layers.Composite):
  """Sentences -> q(z|x): embedding, 1-layer LSTM, linear map of its last state.

  The last state is taken at each sentence's </s> (padding is masked).
  `lstm_impl`: "fused", "keras" or "auto" (fused_lstm.resolve_impl); `init`:
  one of INITS; `hybrid_features`: one of HYBRID_FEATURES.
  """

  input_format = formats.Sentences

  def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int,
               latent_dim: int, lstm_impl: str = "auto", init: str = "he",
               hybrid_features: str = "hidden", **kwargs):
    super().__init__(**kwargs)
    self.embedding = keras.layers.Embedding(
        vocab_size, embed_dim, embeddings_initializer=embedding_init(),
        mask_zero=True, name="embedding")
    self.lstm = fused_lstm.lstm(hidden_dim, lstm_impl, name="lstm",
                                **lstm_initializers(init))
    self.to_params = linear_map(2 * latent_dim, init, "to_params")
    if hybrid_features not in HYBRID_FEATURES:
      raise errors.InputError(f"hybrid_features must be one of "
                              f"{', '.join(HYBRID_FEATURES)}, got "
                              f"{hybrid_features!r}")
    self.early = (LastHidden(self.embedding, self.lstm, name="early")
                  if hybrid_features == "hidden" else
                  MaskedMeanEmbedding(self.embedding, name="early"))

  def call(self, batch: dict, training: bool = False):
    """{"tokens": int32 [batch, time]} -> (mu, logvar), each [batch, latent]."""
    tokens = batch["tokens"]
    embedded = self.embedding(tokens)
    mask = tf.not_equal(tokens, vocab_lib.PAD_ID)
    last_hidden = self.lstm(embedded, mask=mask, training=training)
    mu, logvar = tf.split(self.to_params(last_hidden), 2, axis=-1)
    return mu, logvar


class MLPEncoder(layers.Composite):
  """Images -> q(z|x): flatten, two ReLU layers, linear map to (mu, logvar)."""

  input_format = formats.Images

  def __init__(self, hidden_dim: int, latent_dim: int, **kwargs):
    super().__init__(**kwargs)
    self.early = FirstDense(hidden_dim, name="early")
    self.hidden2 = keras.layers.Dense(hidden_dim, activation="relu",
                                      name="hidden2")
    self.to_params = keras.layers.Dense(2 * latent_dim, name="to_params")

  def call(self, batch: dict, training: bool = False):
    """{"image": float32 [batch, 28, 28, 1]} -> (mu, logvar) [batch, latent]."""
    hidden = self.hidden2(self.early(batch, training=training))
    mu, logvar = tf.split(self.to_params(hidden), 2, axis=-1)
    return mu, logvar
