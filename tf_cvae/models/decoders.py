"""Generative networks: z -> p(x|z) as a TFP distribution.

`likelihood(batch, z)` returns a distribution whose `log_prob(target(batch))`
is the per-example log-likelihood in nats, [batch]. `generate(z, seed,
greedy, max_length)` decodes x from z as a batch (what trained.sampling
decodes with).
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tf_cvae.data import vocabulary as vocab_lib
from tf_cvae.models import encoders
from tf_cvae.models import fused_lstm

tfd = tfp.distributions


class LSTMDecoder(keras.layers.Layer):
  """An LSTM language model conditioned on z (He et al. 2019).

  z is concatenated to every input embedding and sets the initial cell state
  through a linear map (hidden = tanh(cell)). Dropout on the input embeddings
  and on the LSTM output before the vocabulary projection. `lstm_impl`:
  "fused", "keras" or "auto" (fused_lstm.resolve_impl). He et al.'s
  initialisation (encoders.lstm_initializers, encoders.linear_map).
  """

  def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int,
               dropout: float = 0.5, lstm_impl: str = "auto", **kwargs):
    super().__init__(**kwargs)
    self.embedding = keras.layers.Embedding(
        vocab_size, embed_dim, embeddings_initializer=encoders.embedding_init(),
        name="embedding")
    self.z_to_cell = encoders.linear_map(hidden_dim, "z_to_cell")
    self.lstm = fused_lstm.lstm(hidden_dim, lstm_impl, return_sequences=True,
                                name="lstm", **encoders.lstm_initializers())
    self.embed_dropout = keras.layers.Dropout(dropout)
    self.output_dropout = keras.layers.Dropout(dropout)
    self.to_vocab = encoders.linear_map(vocab_size, "to_vocab")

  @staticmethod
  def target(batch: dict) -> tf.Tensor:
    """The predicted tokens: int32 [batch, time - 1] (everything after <s>)."""
    return batch["tokens"][:, 1:]

  def hidden(self, batch: dict, z: tf.Tensor, training: bool = False):
    """The LSTM's outputs after dropout, [batch, time - 1, hidden]."""
    inputs = batch["tokens"][:, :-1]
    embedded = self.embed_dropout(self.embedding(inputs), training=training)
    steps = tf.shape(inputs)[1]
    z_every_step = tf.tile(z[:, tf.newaxis, :], tf.stack([1, steps, 1]))
    cell = self.z_to_cell(z)
    hidden = self.lstm(tf.concat([embedded, z_every_step], axis=-1),
                       initial_state=[tf.tanh(cell), cell], training=training)
    if not self.to_vocab.built:
      self.to_vocab.build(hidden.shape)
    return self.output_dropout(hidden, training=training)

  def sample_log_likelihood(self, batch: dict, z: tf.Tensor) -> tf.Tensor:
    """log p(x|z_s) of every sample z_s of each example: [S, B] nats.

    z: [S, B, latent], S samples for each of the batch's B sentences; no
    dropout (evaluation). The same numbers as `likelihood(...).log_prob` on
    the batch repeated S times, but the embeddings and their share of the
    LSTM's input projection are computed once for all S samples, and each
    step's softmax is scored inside the recurrence: memory holds [S * B,
    vocab] logits, not [S * B, time - 1, vocab].
    """
    cell = self.lstm.cell
    units, embed_dim = cell.units, self.embedding.output_dim
    samples, batch_size = tf.shape(z)[0], tf.shape(z)[1]
    rows = samples * batch_size
    inputs, words = batch["tokens"][:, :-1], self.target(batch)
    steps = tf.shape(inputs)[1]
    if not cell.built:                 # a model neither trained nor restored
      cell.build([None, embed_dim + z.shape[-1]])
    if not self.to_vocab.built:
      self.to_vocab.build([None, units])
    kernel = tf.convert_to_tensor(cell.kernel)          # [embed + latent, 4H]
    embedded = tf.reshape(tf.transpose(self.embedding(inputs), [1, 0, 2]),
                          [-1, embed_dim])
    xw = tf.reshape(tf.matmul(embedded, kernel[:embed_dim]),
                    [steps, 1, batch_size, 4 * units])  # [T, 1, B, 4H]
    zw = tf.reshape(tf.matmul(tf.reshape(z, [rows, -1]), kernel[embed_dim:])
                    + cell.bias, [samples, batch_size, 4 * units])
    cell_state = tf.reshape(self.z_to_cell(z), [rows, units])
    words = tf.tile(tf.transpose(words), [1, samples])  # [T, S * B]
    valid = tf.not_equal(words, vocab_lib.PAD_ID)
    recurrent = tf.convert_to_tensor(cell.recurrent_kernel)
    to_vocab = tf.convert_to_tensor(self.to_vocab.kernel)
    bias = self.to_vocab.bias

    def body(t, h, c, total):
      gates = tf.reshape(xw[t] + zw, [rows, 4 * units]) + tf.matmul(
          h, recurrent)
      i, f, g, o = tf.split(gates, 4, axis=-1)
      c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
      h = tf.sigmoid(o) * tf.tanh(c)
      logits = tf.matmul(h, to_vocab)
      if bias is not None:
        logits += bias
      word_logit = tf.gather(logits, words[t][:, tf.newaxis], batch_dims=1)
      log_p = word_logit[:, 0] - tf.reduce_logsumexp(logits, axis=-1)
      return t + 1, h, c, total + tf.where(valid[t], log_p, 0.0)

    *_, total = tf.while_loop(
        lambda t, *_: t < steps, body,
        [tf.constant(0), tf.tanh(cell_state), cell_state,
         tf.zeros([rows], z.dtype)])
    return tf.reshape(total, [samples, batch_size])

  def logits(self, batch: dict, z: tf.Tensor, training: bool = False):
    """Next-token logits [batch, time - 1, vocab] given z [batch, latent]."""
    return _project(self.hidden(batch, z, training), self.to_vocab.kernel)

  def sample_tokens(self, z: tf.Tensor, num_steps, seed: tf.Tensor,
                    greedy: bool = False) -> tf.Tensor:
    """Decodes from z: int32 [batch, num_steps] ids after <s>, PAD after </s>.

    Ancestral sampling (stateless, `seed` int32 [2]) or, with `greedy`, the
    most probable word at each step. No gradient flows through the ids.
    `num_steps`: a Python int (an unrolled loop) or an int32 scalar tensor
    (a tf.while_loop; traced steps may not know the batch's length).
    """
    cell = self.z_to_cell(z)
    state = [tf.tanh(cell), cell]
    previous = tf.fill([tf.shape(z)[0]], vocab_lib.BOS_ID)
    ended = tf.zeros([tf.shape(z)[0]], tf.bool)

    def next_word(step, previous, ended, state):
      inputs = tf.concat([self.embedding(previous), z], axis=-1)
      hidden, state = self.lstm.cell(inputs, state, training=False)
      logits = self.to_vocab(hidden)
      if greedy:
        word = tf.argmax(logits, axis=-1, output_type=tf.int32)
      else:
        step_seed = tf.random.experimental.stateless_fold_in(seed, step)
        word = tf.random.stateless_categorical(
            logits, 1, seed=step_seed, dtype=tf.int32)[:, 0]
      return (tf.where(ended, vocab_lib.PAD_ID, word),
              ended | tf.equal(word, vocab_lib.EOS_ID), state)

    if isinstance(num_steps, int):
      words = []
      for step in range(num_steps):
        word, ended, state = next_word(step, previous, ended, state)
        words.append(word)
        previous = word
      return tf.stop_gradient(tf.stack(words, axis=1))

    def body(step, previous, ended, state, words):
      word, ended, state = next_word(step, previous, ended, state)
      return step + 1, word, ended, state, words.write(step, word)
    *_, words = tf.while_loop(
        lambda step, *_: step < num_steps, body,
        [tf.constant(0), previous, ended, state,
         tf.TensorArray(tf.int32, size=num_steps)])
    return tf.stop_gradient(tf.transpose(words.stack()))

  def generate(self, z: tf.Tensor, seed: tf.Tensor, greedy: bool = False,
               max_length: int = 40) -> dict:
    """Sentences from z [B, latent]: {"tokens": int32 [B, 1 + max_length]},
    <s> then at most max_length words, PAD after </s>; greedy or sampled
    (stateless, `seed` int32 [2])."""
    words = self.sample_tokens(z, max_length, seed, greedy=greedy)
    bos = tf.fill([tf.shape(z)[0], 1], vocab_lib.BOS_ID)
    return {"tokens": tf.concat([bos, words], axis=1)}

  def model_sample(self, batch: dict, z: tf.Tensor, seed: tf.Tensor) -> dict:
    """x ~ p(x|z) shaped like `batch`: {"tokens": [B, time]}, <s> first."""
    time = batch["tokens"].shape[1]
    if time is None:                      # a step traced for any length
      time = tf.shape(batch["tokens"])[1]
    words = self.sample_tokens(z, time - 1, seed)
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
    return Words(self.hidden(batch, z, training), self.to_vocab.kernel,
                 tf.not_equal(self.target(batch), vocab_lib.PAD_ID),
                 fused_gradient=training)


def _project(hidden, kernel):
  """hidden [B, T, H] @ kernel [H, V] as one 2-D matmul: logits [B, T, V]."""
  flat = tf.matmul(tf.reshape(hidden, [-1, tf.shape(hidden)[-1]]), kernel)
  return tf.reshape(flat, tf.concat([tf.shape(hidden)[:2], [-1]], 0))


def word_log_probs(hidden, kernel, words):
  """log softmax(hidden @ kernel)[word] per row, [N] nats.

  hidden [N, H], kernel [H, V], words int32 [N].
  One fused softmax cross-entropy; its gradient scales the [N, H] and [N, V]
  operands of the two gradient matmuls by the upstream gradient instead of
  making d logits (a pass over [N, V] saved; the same values as autodiff,
  tested).
  """
  @tf.custom_gradient
  def log_probs(hidden, kernel):
    logits = tf.matmul(hidden, kernel)
    xent, d_xent = tf.raw_ops.SparseSoftmaxCrossEntropyWithLogits(
        features=logits, labels=words)
    def grad(upstream):
      scale = -upstream[:, tf.newaxis]           # log p = -xent
      return (tf.matmul(d_xent, kernel, transpose_b=True) * scale,
              tf.matmul(hidden * scale, d_xent, transpose_a=True))
    return -xent, grad
  return log_probs(hidden, kernel)


class Words(tfd.Distribution):
  """Sentences [B, T] of word ids: a Categorical per position with logits
  hidden @ kernel; positions where `valid` is
  False (padding) add 0.

  Batch shape [B], event [T]. log_prob (nats, [B]) goes through
  `word_log_probs` when `fused_gradient` (training: its gradient is the
  cheaper one), else through logit - logsumexp(logits), which skips the
  fused op's [N, V] gradient buffer (evaluation: about half the time);
  only sampling keeps the [B, T, V] logits.
  """

  def __init__(self, hidden, kernel, valid, fused_gradient=True,
               name="Words"):
    parameters = dict(locals())
    self._hidden, self._valid = hidden, valid
    self._fused_gradient = fused_gradient
    self._kernel = tf.convert_to_tensor(kernel)
    super().__init__(dtype=tf.int32, validate_args=False,
                     reparameterization_type=tfd.NOT_REPARAMETERIZED,
                     allow_nan_stats=True, parameters=parameters, name=name)

  def _batch_shape(self):
    return self._hidden.shape[:1]

  def _batch_shape_tensor(self):
    return tf.shape(self._hidden)[:1]

  def _event_shape(self):
    return self._hidden.shape[1:2]

  def _event_shape_tensor(self):
    return tf.shape(self._hidden)[1:2]

  def _log_prob(self, words):
    words = tf.where(self._valid, tf.cast(words, tf.int32), vocab_lib.PAD_ID)
    hidden = tf.reshape(self._hidden, [-1, tf.shape(self._hidden)[-1]])
    flat_words = tf.reshape(words, [-1])
    if self._fused_gradient:
      flat = word_log_probs(hidden, self._kernel, flat_words)
    else:
      logits = tf.matmul(hidden, self._kernel)
      flat = (tf.gather(logits, flat_words[:, tf.newaxis], batch_dims=1)[:, 0]
              - tf.reduce_logsumexp(logits, axis=-1))
    return tf.reduce_sum(tf.where(self._valid, tf.reshape(
        flat, tf.shape(words)), 0.0), axis=-1)

  def _sample_n(self, n, seed=None):
    logits = _project(self._hidden, self._kernel)
    words = tfd.Categorical(logits=logits, dtype=tf.int32).sample(n, seed=seed)
    return tf.where(self._valid, words, vocab_lib.PAD_ID)


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

  def generate(self, z: tf.Tensor, seed: tf.Tensor, greedy: bool = False,
               max_length: int = 40) -> dict:
    """Images from z [B, latent]: {"image": float32 [B, 28, 28, 1]} binary;
    greedy: p(pixel = 1 | z) > 0.5, else sampled (stateless, `seed` int32
    [2]). max_length: unused (no sequence)."""
    del max_length
    if greedy:
      return {"image": tf.cast(self.logits(z) > 0.0, tf.float32)}
    return self.model_sample(None, z, seed)

  def relax(self, sample: dict, z: tf.Tensor, training: bool = False) -> dict:
    """The pixel probabilities given z (the expected image, differentiable
    in the decoder): {"image": [B, 28, 28, 1]} in (0, 1)."""
    del sample, training
    return {"image": tf.sigmoid(self.logits(z))}
