"""The embedded default data: deterministic, padded to a few shapes,
binarized as documented."""

import numpy as np

from tf_cvae.data import synthetic
from tf_cvae.data import vocabulary as vocab_lib

SMALL_TEXT = synthetic.SyntheticTextConfig(num_train=300, num_valid=50,
                                           num_test=50)
SMALL_IMAGES = synthetic.SyntheticImageConfig(num_train=200, num_valid=40,
                                              num_test=40)


def test_text_is_deterministic_given_the_seed():
  a = synthetic.synthetic_text(SMALL_TEXT)
  b = synthetic.synthetic_text(SMALL_TEXT)
  c = synthetic.synthetic_text(synthetic.SyntheticTextConfig(
      num_train=300, num_valid=50, num_test=50, seed=1))
  for x, y in zip(a.splits["train"], b.splits["train"]):
    np.testing.assert_array_equal(x, y)
  assert any(len(x) != len(y) or np.any(x != y)
             for x, y in zip(a.splits["train"], c.splits["train"]))


def test_text_sentences_are_framed_and_within_length_limits():
  data = synthetic.synthetic_text(SMALL_TEXT)
  for sentence in data.splits["train"]:
    assert sentence[0] == vocab_lib.BOS_ID and sentence[-1] == vocab_lib.EOS_ID
    words = sentence[1:-1]
    assert SMALL_TEXT.min_words <= len(words) <= SMALL_TEXT.max_words
    assert np.all(words >= len(vocab_lib.SPECIALS))
  assert len(data.vocab) == SMALL_TEXT.num_words + len(vocab_lib.SPECIALS)


def test_the_latent_shapes_the_sentences():
  # Sentences from nearby latents share more words than from distant ones.
  config = SMALL_TEXT
  rng = np.random.default_rng(0)
  params = synthetic._generator_params(config, rng)
  words, z = synthetic.sample_text(config, 4000, rng, params)
  bags = np.zeros((len(words), config.num_words))
  for row, w in enumerate(words):
    bags[row, w] = 1
  order = np.argsort(z[:, 0])
  near = np.mean([bags[order[i]] @ bags[order[i + 1]] for i in range(0, 3998, 2)])
  far = np.mean([bags[order[i]] @ bags[order[-1 - i]] for i in range(0, 1000)])
  assert near > 1.5 * far


def test_text_batches_use_a_few_fixed_shapes_and_cover_every_sentence():
  data = synthetic.synthetic_text(SMALL_TEXT)
  bounds = data.bucket_boundaries()
  seen = 0
  for batch in data.batches("train", 32, shuffle=True, seed=3):
    tokens = batch["tokens"].numpy()
    assert tokens.shape[1] in bounds
    for row in tokens:
      end = int(np.argmax(row == vocab_lib.EOS_ID))
      assert np.all(row[end + 1:] == vocab_lib.PAD_ID)
    seen += len(tokens)
  assert seen == SMALL_TEXT.num_train


def test_image_binarization_fixed_for_test_and_fresh_each_epoch_for_train():
  data = synthetic.synthetic_images(SMALL_IMAGES)
  again = synthetic.synthetic_images(SMALL_IMAGES)
  test_a = np.concatenate([b["image"] for b in data.batches("test", 16)])
  test_b = np.concatenate([b["image"] for b in again.batches("test", 16)])
  np.testing.assert_array_equal(test_a, test_b)
  assert set(np.unique(test_a)) <= {0.0, 1.0}
  epoch0 = np.concatenate([b["image"] for b in data.batches("train", 50, seed=0)])
  epoch1 = np.concatenate([b["image"] for b in data.batches("train", 50, seed=1)])
  assert set(np.unique(epoch0)) <= {0.0, 1.0}
  assert np.mean(epoch0 != epoch1) > 0.005
  # Each draw follows the stored probabilities.
  np.testing.assert_allclose(epoch0.mean(), data.splits["train"].mean(),
                             atol=0.01)
