"""Beam search over the LSTM decoder (tf_cvae.trained.beam) against an
exhaustive search, and through sampling's decode / reconstruct / interpolate."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import errors
from tf_cvae.data import vocabulary as vocab_lib
from tf_cvae.models import decoders
from tf_cvae.models import encoders
from tf_cvae.models import vae as vae_lib
from tf_cvae.trained import beam
from tf_cvae.trained import sampling

VOCAB_SIZE, MAX_LENGTH = 5, 3        # ids: pad, <s>, </s>, <unk>, one word
WORDS_BUT_EOS = [i for i in range(VOCAB_SIZE) if i != vocab_lib.EOS_ID]


@pytest.fixture(scope="module")
def decoder():
  """A tiny untrained LSTM decoder over 5 ids, latent 2; its weights N(0, 1),
  peaked enough that the best sentence is not always </s> alone."""
  keras.utils.set_random_seed(0)
  tiny = decoders.LSTMDecoder(VOCAB_SIZE, 4, 8, dropout=0.0,
                              lstm_impl="keras")
  tiny.logits({"tokens": tf.zeros([1, 2], tf.int32)}, tf.zeros([1, 2]))
  for i, weight in enumerate(tiny.trainable_variables):
    weight.assign(tf.random.stateless_normal(weight.shape, [1, i]))
  return tiny


def _every_sentence():
  """All word sequences of at most MAX_LENGTH ids: ended by </s>, or cut at
  MAX_LENGTH without one (85 for 5 ids and length 3)."""
  ended = [words + (vocab_lib.EOS_ID,) for n in range(MAX_LENGTH)
           for words in itertools.product(WORDS_BUT_EOS, repeat=n)]
  return ended + list(itertools.product(WORDS_BUT_EOS, repeat=MAX_LENGTH))


def _teacher_forced_scores(decoder, z, sentences):
  """log p(sentence | z) in nats by one teacher-forced pass of the decoder
  (not its step-by-step cell), for every pair of a row of z and a sentence
  (tuples of ids): numpy [len(z), len(sentences)], and the sentences as
  tokens [len(sentences), 1 + longest] (<s> first, PAD after the end)."""
  count, longest = len(sentences), max(len(s) for s in sentences)
  tokens = np.full((count, 1 + longest), vocab_lib.PAD_ID, np.int32)
  tokens[:, 0] = vocab_lib.BOS_ID
  counted = np.zeros((count, longest), bool)
  for row, sentence in enumerate(sentences):
    tokens[row, 1:1 + len(sentence)] = sentence
    counted[row, :len(sentence)] = True
  tiled = tf.tile(tokens, [len(z), 1])
  log_probs = tf.nn.log_softmax(decoder.logits(
      {"tokens": tiled}, tf.repeat(z, count, axis=0)))
  picked = tf.gather(log_probs, tiled[:, 1:], batch_dims=2)
  scores = tf.reduce_sum(tf.where(np.tile(counted, [len(z), 1]), picked, 0.0),
                         axis=-1)
  return scores.numpy().reshape(len(z), count), tokens


@pytest.mark.parametrize("normalize_length, greedy_misses, best_lengths", [
    (False, 23, [0, 31, 2, 31]), (True, 10, [0, 15, 6, 43])])
def test_a_full_beam_finds_the_exhaustive_argmax(
    decoder, normalize_length, greedy_misses, best_lengths):
  z = 2.0 * tf.random.stateless_normal([64, 2], [0, 0])
  sentences = _every_sentence()
  assert len(sentences) == 85        # the hypotheses after the last step
  scores, tokens = _teacher_forced_scores(decoder, z, sentences)
  lengths = np.array([len(s) for s in sentences])
  best = np.argmax(scores / lengths if normalize_length else scores, axis=1)
  found, log_probs = beam.beam_search(decoder, z, len(sentences), MAX_LENGTH,
                                      normalize_length)
  np.testing.assert_array_equal(found, tokens[best])
  np.testing.assert_allclose(log_probs, scores[np.arange(64), best],
                             atol=1e-4)
  # Not a trivial case: greedy decoding misses the best sentence of some z,
  # and the best sentences have several lengths (ids, </s> counted).
  greedy = decoder.generate(z, tf.constant([0, 0]), greedy=True,
                            max_length=MAX_LENGTH)["tokens"]
  assert np.sum(np.any(greedy != tokens[best], axis=1)) == greedy_misses
  assert np.bincount(lengths[best], minlength=4).tolist() == best_lengths


def test_beam_of_one_is_greedy_decoding(decoder):
  z = 2.0 * tf.random.stateless_normal([64, 2], [1, 0])
  greedy = decoder.generate(z, tf.constant([0, 0]), greedy=True,
                            max_length=8)["tokens"].numpy()
  found, log_probs = beam.beam_search(decoder, z, 1, max_length=8)
  assert found.shape == (64, 9)
  np.testing.assert_array_equal(found, greedy)
  sentences = []                          # up to </s>, or all 8 ids
  for row in greedy[:, 1:]:
    ends = np.flatnonzero(row == vocab_lib.EOS_ID)
    sentences.append(tuple(row[:ends[0] + 1] if len(ends) else row))
  scores, _ = _teacher_forced_scores(decoder, z, sentences)
  np.testing.assert_allclose(log_probs, np.diag(scores), atol=1e-4)


def test_beam_refuses_image_decoders_and_bad_sizes(decoder):
  z = tf.zeros([2, 2])
  with pytest.raises(errors.InputError, match="MLPDecoder"):
    beam.beam_search(decoders.MLPDecoder(8), z, 3)
  with pytest.raises(errors.InputError, match="beam_size must be at least 1"):
    beam.beam_search(decoder, z, 0)


def test_sampling_decodes_with_beams():
  """decode, reconstruct and interpolate take decoding="beam" and pass the
  beam's options on."""
  keras.utils.set_random_seed(1)
  vocab = vocab_lib.Vocabulary(["a", "b", "c"])
  vae = vae_lib.VAE(
      encoders.LSTMEncoder(len(vocab), 4, 8, 2, lstm_impl="keras"),
      decoders.LSTMDecoder(len(vocab), 4, 8, dropout=0.0, lstm_impl="keras"),
      latent_dim=2)
  batch = sampling.to_batch(vae, ["a b", "c", "b b a", "a"], vocab)
  vae.log_likelihood(batch, vae.encode(batch)[0])            # builds it
  for i, weight in enumerate(vae.trainable_variables):   # N(0, 1): peaked
    weight.assign(tf.random.stateless_normal(weight.shape, [1, i]))
  z = sampling.prior_latents(2, 6, seed=0)
  options = dict(vocab=vocab, max_words=5)
  greedy = sampling.decode(vae, z, "greedy", **options)
  assert greedy == sampling.decode(vae, z, "beam", beam_size=1, **options)
  assert greedy[2:4] == ["b c c a", "a c c c c"]
  # Untrained: </s> alone is the most probable sentence, but not per word.
  assert sampling.decode(vae, z, "beam", beam_size=8, **options) == [""] * 6
  options.update(beam_size=8, normalize_length=True)
  means, decoded = sampling.reconstruct(vae, batch, "beam", **options)
  assert decoded == sampling.decode(vae, means, "beam", **options)
  assert decoded[0] == "b c c"
  _, paths = sampling.interpolate(vae, batch, 3, "beam", **options)
  assert [p[0] for p in paths] == decoded[0::2]
  assert [p[-1] for p in paths] == decoded[1::2]
