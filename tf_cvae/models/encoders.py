"""Inference networks: x -> (mu, logvar) of a diagonal-Gaussian q(z|x).

Each encoder also exposes `early`, a layer made of its first layers (batch ->
[batch, features]) whose variables the hybrid critic shares, and no others.
"""

import keras
import tensorflow as tf

from tf_cvae.data import vocabulary as vocab_lib
from tf_cvae.models import fused_lstm
from tf_cvae.models import layers


def lstm_init():
  """He et al.'s LSTM initialisation: U(-0.01, 0.01)."""
  return keras.initializers.RandomUniform(-0.01, 0.01)


def embedding_init():
  """He et al.'s embedding initialisation: U(-0.1, 0.1)."""
  return keras.initializers.RandomUniform(-0.1, 0.1)


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
  `lstm_impl`: "fused", "keras" or "auto" (fused_lstm.resolve_impl).
  """

  def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int,
               latent_dim: int, lstm_impl: str = "auto", **kwargs):
    super().__init__(**kwargs)
    self.embedding = keras.layers.Embedding(
        vocab_size, embed_dim, embeddings_initializer=embedding_init(),
        mask_zero=True, name="embedding")
    self.lstm = fused_lstm.lstm(
        hidden_dim, lstm_impl, kernel_initializer=lstm_init(),
        recurrent_initializer=lstm_init(), name="lstm")
    self.to_params = keras.layers.Dense(2 * latent_dim, name="to_params")
    self.early = MaskedMeanEmbedding(self.embedding, name="early")

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
