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

  def sample_tokens(self, z: tf.Tensor, num_steps: int, seed: tf.Tensor,
                    greedy: bool = False) -> tf.Tensor:
    """Decodes from z: int32 [batch, num_steps] ids after <s>, PAD after </s>.

    Ancestral sampling (stateless, `seed` int32 [2]) or, with `greedy`, the
    most probable word at each step. No gradient flows through the ids.
    """
    cell = self.z_to_cell(z)
    state = [tf.tanh(cell), cell]
    previous = tf.fill([tf.shape(z)[0]], vocab_lib.BOS_ID)
    ended = tf.zeros([tf.shape(z)[0]], tf.bool)
    words = []
    for step in range(num_steps):
      inputs = tf.concat([self.embedding(previous), z], axis=-1)
      hidden, state = self.lstm.cell(inputs, state, training=False)
      logits = self.to_vocab(hidden)
      if greedy:
        word = tf.argmax(logits, axis=-1, output_type=tf.int32)
      else:
        step_seed = tf.random.experimental.stateless_fold_in(seed, step)
        word = tf.random.stateless_categorical(
            logits, 1, seed=step_seed, dtype=tf.int32)[:, 0]
      words.append(tf.where(ended, vocab_lib.PAD_ID, word))
      ended = ended | tf.equal(word, vocab_lib.EOS_ID)
      previous = word
    return tf.stop_gradient(tf.stack(words, axis=1))

  def model_sample(self, batch: dict, z: tf.Tensor, seed: tf.Tensor) -> dict:
    """x ~ p(x|z) shaped like `batch`: {"tokens": [B, time]}, <s> first."""
    words = self.sample_tokens(z, batch["tokens"].shape[1] - 1, seed)
    bos = tf.fill([tf.shape(z)[0], 1], vocab_lib.BOS_ID)
    return {"tokens": tf.concat([bos, words], axis=1)}

  def relax(self, sample: dict, z: tf.Tensor, training: bool = False) -> dict:
    """Adds the decoder's probabilities at each sampled position (one
    teacher-forced pass), which the critic turns into expected embeddings so
    its gradient reaches the decoder: {"tokens", "token_probs" [B, T, V]}
    (<s>'s probabilities are one-hot)."""
    tokens = sample["tokens"]
    probs = tf.nn.softmax(self.logits(sample, z, training))
    first = tf.one_hot(tokens[:, :1], tf.shape(probs)[-1], dtype=probs.dtype)
    return {"tokens": tokens, "token_probs": tf.concat([first, probs], axis=1)}

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

  def logits(self, z: tf.Tensor) -> tf.Tensor:
    """Pixel logits [batch, 28, 28, 1]."""
    return self.reshape(self.to_logits(self.hidden2(self.hidden1(z))))

  def likelihood(self, batch: dict, z: tf.Tensor,
                 training: bool = False) -> tfd.Distribution:
    """p(x|z): Bernoulli per pixel; event [28, 28, 1]."""
    del batch, training  # not autoregressive: the pixels are not inputs
    return tfd.Independent(tfd.Bernoulli(logits=self.logits(z),
                                         dtype=tf.float32),
                           reinterpreted_batch_ndims=len(self.image_shape))

  def model_sample(self, batch: dict, z: tf.Tensor, seed: tf.Tensor) -> dict:
    """x ~ p(x|z): {"image": [B, 28, 28, 1]} binary."""
    del batch
    return {"image": self.likelihood(None, z).sample(seed=seed)}

  def relax(self, sample: dict, z: tf.Tensor, training: bool = False) -> dict:
    """The pixel probabilities given z (the expected image, differentiable
    in the decoder): {"image": [B, 28, 28, 1]} in (0, 1)."""
    del sample, training
    return {"image": tf.sigmoid(self.logits(z))}
