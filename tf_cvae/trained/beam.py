"""Beam search over an LSTM decoder p(x|z): the most probable sentences.

`beam_search(decoder, z, beam_size)` keeps, for each row of z, the
`beam_size` best hypotheses at every step, ranked by log p(words | z) in
nats (summed over the words, </s> included). A hypothesis ends at </s>; one
still open after `max_length` words is cut there and scored by the words it
has, as greedy decoding cuts it. Every id of the vocabulary is a candidate
at every step, as in greedy decoding, so beam_size 1 is greedy decoding;
with a beam at least as wide as the number of hypotheses at the widest step
the search is exhaustive.
"""

import tensorflow as tf

from tf_cvae import errors
from tf_cvae.data import vocabulary as vocab_lib
from tf_cvae.models import decoders


def _check(decoder, beam_size: int, max_length: int) -> None:
  """Raises errors.InputError for a decoder without words or bad sizes."""
  if not isinstance(decoder, decoders.LSTMDecoder):
    raise errors.InputError(f"beam search decodes text (an LSTM decoder); "
                            f"this model's decoder is "
                            f"{type(decoder).__name__}")
  if beam_size < 1:
    raise errors.InputError(f"beam_size must be at least 1, got {beam_size}")
  if max_length < 1:
    raise errors.InputError(f"max_length must be at least 1, got "
                            f"{max_length}")


def beam_search(decoder: decoders.LSTMDecoder, z: tf.Tensor, beam_size: int,
                max_length: int = 40, normalize_length: bool = False):
  """The best sentence of p(x|z) a beam of `beam_size` finds, per row of z.

  z: float32 [B, latent]. With `normalize_length`, hypotheses are ranked by
  log p / their number of words (</s> included) instead of log p, which
  favours short sentences less. Runs eagerly (it stops once every beam has
  ended).

  Returns:
    tokens: int32 [B, 1 + max_length], <s>, the words, then PAD after </s>
      (the layout of `decoder.generate`);
    log_probs: float32 [B], log p(words | z) in nats of each returned
      sentence (never length-normalised).
  """
  _check(decoder, beam_size, max_length)
  batch = int(z.shape[0])
  z_beams = tf.repeat(z, beam_size, axis=0)                 # [B * K, L]
  cell = decoder.z_to_cell(z_beams)
  state = [tf.tanh(cell), cell]
  # Only the first beam is live at the start: no duplicate hypotheses.
  scores = tf.tile([[0.0] + [-float("inf")] * (beam_size - 1)], [batch, 1])
  ended = tf.zeros([batch, beam_size], tf.bool)
  lengths = tf.zeros([batch, beam_size])          # words, </s> included
  words = tf.zeros([batch, beam_size, 0], tf.int32)
  previous = tf.fill([batch * beam_size], vocab_lib.BOS_ID)
  first_row = tf.range(batch)[:, tf.newaxis] * beam_size
  for _ in range(max_length):
    inputs = tf.concat([decoder.embedding(previous), z_beams], axis=-1)
    hidden, state = decoder.lstm.cell(inputs, state, training=False)
    log_probs = tf.reshape(tf.nn.log_softmax(decoder.to_vocab(hidden)),
                           [batch, beam_size, -1])
    vocab_size = int(log_probs.shape[-1])
    # An ended hypothesis goes on unchanged, as itself followed by PAD.
    carry = tf.where(tf.range(vocab_size) == vocab_lib.PAD_ID, 0.0,
                     -float("inf"))
    candidates = scores[..., tf.newaxis] + tf.where(
        ended[..., tf.newaxis], carry, log_probs)             # [B, K, V]
    candidate_lengths = lengths + tf.where(ended, 0.0, 1.0)   # [B, K]
    rank = candidates
    if normalize_length:
      rank = candidates / candidate_lengths[..., tf.newaxis]
    _, best = tf.math.top_k(tf.reshape(rank, [batch, -1]), beam_size)
    parent, word = best // vocab_size, best % vocab_size      # [B, K] each
    scores = tf.gather(tf.reshape(candidates, [batch, -1]), best,
                       batch_dims=1)
    ended = tf.gather(ended, parent, batch_dims=1) | tf.equal(
        word, vocab_lib.EOS_ID)
    lengths = tf.gather(candidate_lengths, parent, batch_dims=1)
    words = tf.concat([tf.gather(words, parent, batch_dims=1),
                       word[..., tf.newaxis]], axis=-1)
    rows = tf.reshape(first_row + parent, [-1])
    state = [tf.gather(s, rows) for s in state]
    previous = tf.reshape(word, [-1])
    if bool(tf.reduce_all(ended)):
      break
  # top_k sorts: the first beam is the best by the ranking.
  best_words = tf.pad(words[:, 0],
                      [[0, 0], [0, max_length - int(words.shape[-1])]],
                      constant_values=vocab_lib.PAD_ID)
  bos = tf.fill([batch, 1], vocab_lib.BOS_ID)
  return tf.concat([bos, best_words], axis=1), scores[:, 0]
