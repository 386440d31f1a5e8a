"""Inference networks: x -> (mu, logvar) of a diagonal-Gaussian q(z|x).

Each encoder also exposes `early`, a layer made of its first layers (batch ->
[batch, features]) whose variables the hybrid critic shares, and no others,
and names its raw inputs' format (`input_format`, a formats class): what an
export of it takes and which example batch builds it.
"""

import keras
import tensorflow as tf

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


def lstm_initializers() -> dict:
  """He et al.'s initializer keyword arguments of an LSTM layer: every
  weight and bias U(-0.01, 0.01), no forget-gate bias of 1."""
  return dict(kernel_initializer=lstm_init(),
              recurrent_initializer=lstm_init(),
              bias_initializer=lstm_init(), unit_forget_bias=False)


def linear_map(units: int, name: str) -> keras.layers.Dense:
  """He et al.'s linear map: bias-free, a U(-0.01, 0.01) kernel."""
  return keras.layers.Dense(units, use_bias=False,
                            kernel_initializer=lstm_init(), name=name)


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

  The last state is taken at each sentence's </s> (padding is masked); the
  embedding and LSTM are `early`, what the hybrid critic shares. He et al.'s
  initialisation (lstm_initializers, linear_map). `lstm_impl`: "fused",
  "keras" or "auto" (fused_lstm.resolve_impl).
  """

  input_format = formats.Sentences

  def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int,
               latent_dim: int, lstm_impl: str = "auto", **kwargs):
    super().__init__(**kwargs)
    self.embedding = keras.layers.Embedding(
        vocab_size, embed_dim, embeddings_initializer=embedding_init(),
        mask_zero=True, name="embedding")
    self.lstm = fused_lstm.lstm(hidden_dim, lstm_impl, name="lstm",
                                **lstm_initializers())
    self.to_params = linear_map(2 * latent_dim, "to_params")
    self.early = LastHidden(self.embedding, self.lstm, name="early")

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
