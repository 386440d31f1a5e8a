"""Generative networks: z -> p(x|z) as a TFP distribution.

`likelihood(batch, z)` returns a distribution whose `log_prob(target(batch))`
is the per-example log-likelihood in nats, [batch].
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tf_cvae.data import vocabulary as vocab_lib
from tf_cvae.models import encoders

tfd = tfp.distributions


class LSTMDecoder(keras.layers.Layer):
  """An LSTM language model conditioned on z (He et al. 2019).

  z is concatenated to every input embedding and sets the initial cell state
  through a linear map (hidden = tanh(cell)). Dropout on the input embeddings
  and on the LSTM output before the vocabulary projection.
  """

  def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int,
               dropout: float = 0.5, **kwargs):
    super().__init__(**kwargs)
    self.embedding = keras.layers.Embedding(
        vocab_size, embed_dim, embeddings_initializer=encoders.embedding_init(),
        name="embedding")
    self.z_to_cell = keras.layers.Dense(hidden_dim, name="z_to_cell")
    self.lstm = keras.layers.LSTM(
        hidden_dim, return_sequences=True,
        kernel_initializer=encoders.lstm_init(),
        recurrent_initializer=encoders.lstm_init(), name="lstm")
    self.embed_dropout = keras.layers.Dropout(dropout)
    self.output_dropout = keras.layers.Dropout(dropout)
    self.to_vocab = keras.layers.Dense(vocab_size, name="to_vocab")

  @staticmethod
  def target(batch: dict) -> tf.Tensor:
    """The predicted tokens: int32 [batch, time - 1] (everything after <s>)."""
    return batch["tokens"][:, 1:]

  def logits(self, batch: dict, z: tf.Tensor, training: bool = False):
    """Next-token logits [batch, time - 1, vocab] given z [batch, latent]."""
    inputs = batch["tokens"][:, :-1]
    embedded = self.embed_dropout(self.embedding(inputs), training=training)
    steps = tf.shape(inputs)[1]
    z_every_step = tf.tile(z[:, tf.newaxis, :], tf.stack([1, steps, 1]))
    cell = self.z_to_cell(z)
    hidden = self.lstm(tf.concat([embedded, z_every_step], axis=-1),
                       initial_state=[tf.tanh(cell), cell], training=training)
    return self.to_vocab(self.output_dropout(hidden, training=training))

  def likelihood(self, batch: dict, z: tf.Tensor,
                 training: bool = False) -> tfd.Distribution:
    """p(x|z): Categorical per token, padding masked; event [time - 1]."""
    valid = tf.not_equal(self.target(batch), vocab_lib.PAD_ID)
    tokens = tfd.Categorical(logits=self.logits(batch, z, training))
    return tfd.Independent(tfd.Masked(tokens, validity_mask=valid),
                           reinterpreted_batch_ndims=1)


class MLPDecoder(keras.layers.Layer):
  """z -> independent Bernoulli pixels through two ReLU layers."""

  def __init__(self, hidden_dim: int, image_shape=(28, 28, 1), **kwargs):
    super().__init__(**kwargs)
    self.image_shape = tuple(image_shape)
    size = 1
    for d in self.image_shape:
      size *= d
    self.hidden1 = keras.layers.Dense(hidden_dim, activation="relu",
                                      name="hidden1")
    self.hidden2 = keras.layers.Dense(hidden_dim, activation="relu",
                                      name="hidden2")
    self.to_logits = keras.layers.Dense(size, name="to_logits")
    self.reshape = keras.layers.Reshape(self.image_shape)

  @staticmethod
  def target(batch: dict) -> tf.Tensor:
    """The pixels: float32 [batch, 28, 28, 1] in {0, 1}."""
    return batch["image"]

  def likelihood(self, batch: dict, z: tf.Tensor,
                 training: bool = False) -> tfd.Distribution:
    """p(x|z): Bernoulli per pixel; event [28, 28, 1]."""
    del batch, training  # not autoregressive: the pixels are not inputs
    logits = self.reshape(self.to_logits(self.hidden2(self.hidden1(z))))
    return tfd.Independent(tfd.Bernoulli(logits=logits, dtype=tf.float32),
                           reinterpreted_batch_ndims=len(self.image_shape))
