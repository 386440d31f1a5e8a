"""The measurement protocol: exact-length batches, a held-out validation
split, the IW-NLL's sample counts, the MI estimate's noise floor, the
length-only control and the linear probe of a known latent."""

import collections
import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import data as data_lib
from tf_cvae import metrics
from tf_cvae.models import registry
from tf_cvae.models import vae as vae_lib
from tf_cvae.training import evaluation

TINY_TEXT = registry.ModelConfig(embed_dim=16, hidden_dim=32, latent_dim=8,
                                 decoder_dropout=0.0)


@pytest.fixture(scope="module")
def synthetic_text():
  return data_lib.load(data_lib.DataConfig(name="synthetic_text"))


def _lengths(batch) -> np.ndarray:
  return np.sum(batch["tokens"].numpy() != 0, axis=1)


def test_exact_length_batches_hold_one_length_and_every_sentence_once(
    synthetic_text):
  bounds = set(synthetic_text.bucket_boundaries())
  seen, sizes = [], collections.Counter()
  for batch in synthetic_text.batches("train", 32, shuffle=True, seed=4,
                                      with_index=True, multiple_of=2):
    lengths = _lengths(batch)
    assert len(set(lengths)) == 1, "a batch mixes lengths"
    assert batch["tokens"].shape[1] in bounds       # few compiled shapes
    assert len(lengths) % 2 == 0 and len(lengths) <= 32
    seen.extend(batch["index"].numpy().tolist())
    sizes[len(lengths)] += 1
  # Only a length's leftovers (an odd one dropped for 2 replicas) are lost.
  lengths = synthetic_text.lengths("train")
  odd_leftovers = sum(np.sum(lengths == n) % 32 % 2 for n in set(lengths))
  assert len(seen) == len(set(seen)) == len(lengths) - odd_leftovers
  assert sizes[32] > 0.8 * sum(sizes.values()) - len(set(lengths))
  rows = np.asarray(seen)
  for batch in synthetic_text.batches("train", 32, shuffle=True, seed=4,
                                      with_index=True, multiple_of=2):
    index = batch["index"].numpy()
    np.testing.assert_array_equal(lengths[index], _lengths(batch))
    break
  # Another seed gives another order, the same seed the same one.
  again = [b["index"].numpy()[0] for b in synthetic_text.batches(
      "train", 32, shuffle=True, seed=4, with_index=True, multiple_of=2)]
  other = [b["index"].numpy()[0] for b in synthetic_text.batches(
      "train", 32, shuffle=True, seed=5, with_index=True, multiple_of=2)]
  assert again[0] == rows[0]
  assert again != other


def test_full_batching_fills_every_batch_but_the_last(synthetic_text):
  bounds = synthetic_text.bucket_boundaries()
  for shuffle in (False, True):
    seen, sizes, mixed = [], [], 0
    for batch in synthetic_text.batches("valid", 32, batching="full",
                                        shuffle=shuffle, seed=3,
                                        with_index=True):
      seen.extend(batch["index"].numpy().tolist())
      sizes.append(len(batch["index"]))
      mixed += len(set(_lengths(batch))) > 1
      assert batch["tokens"].shape[1] in bounds
    assert sorted(seen) == list(range(1000))
    assert sorted(sizes) == [8] + [32] * 31        # 1000 = 31 * 32 + 8
    assert mixed > 25
  assert synthetic_text.batching == "exact"        # the override is per call


def test_held_out_validation_split_is_disjoint_from_training(synthetic_text):
  held = data_lib.hold_out(synthetic_text, 0.1, seed=3)
  assert held.num_examples("valid") == 1000
  assert held.num_examples("train") == 9000
  # Rows, named by their (continuous, distinct) true latents: disjoint, and
  # together the original training rows, each sentence with its latent.
  train = {tuple(z) for z in held.latents["train"]}
  valid = {tuple(z) for z in held.latents["valid"]}
  assert not train & valid
  assert train | valid == {tuple(z) for z in synthetic_text.latents["train"]}
  where = {tuple(z): i for i, z in enumerate(synthetic_text.latents["train"])}
  for sentence, z in zip(held.splits["valid"][:50], held.latents["valid"]):
    np.testing.assert_array_equal(
        sentence, synthetic_text.splits["train"][where[tuple(z)]])
  np.testing.assert_array_equal(
      np.concatenate([held.latents["train"], held.latents["valid"]]).shape,
      synthetic_text.latents["train"].shape)
  assert held.splits["test"] is synthetic_text.splits["test"]


def test_iw_nll_samples_only_what_is_asked_and_prefixes_match(synthetic_text):
  vae = registry.build_vae(TINY_TEXT, synthetic_text)
  batch = next(iter(synthetic_text.batches("test", 8)))
  decoded = tf.Variable(0)             # rows the decoder scores
  log_likelihood = vae.decoder.sample_log_likelihood
  def counting(batch, z):
    decoded.assign_add(tf.shape(z)[0] * tf.shape(z)[1])
    return log_likelihood(batch, z)
  vae.decoder.sample_log_likelihood = counting
  estimator = metrics.ImportanceWeightedNLL(vae, chunk_size=50)
  five = estimator(batch, 5, seed=3)
  assert int(decoded) == 5 * 8         # 5 samples, not a chunk of 50
  by_prefix = estimator(batch, 60, seed=3, report_at=(5, 20))
  np.testing.assert_allclose(by_prefix[5], five, rtol=1e-5)
  np.testing.assert_allclose(by_prefix[20], estimator(batch, 20, seed=3),
                             rtol=1e-5)
  np.testing.assert_allclose(
      by_prefix[60], metrics.ImportanceWeightedNLL(vae, 7)(batch, 60, seed=3),
      rtol=1e-5)


@pytest.mark.parametrize("lstm_impl", ["fused", "keras"])
def test_iw_nll_shares_the_samples_work_with_the_same_numbers(
    synthetic_text, lstm_impl):
  # The LSTM decoder's sample_log_likelihood (embeddings once, softmax a
  # step at a time) against the batch repeated S times through
  # log_likelihood, the computation it replaced. Weights N(0, 0.5) so that
  # z and every weight matter; a mixed-length batch so padding does.
  model = dataclasses.replace(TINY_TEXT, lstm_impl=lstm_impl)
  vae = registry.build_vae(model, synthetic_text)
  sentences = synthetic_text.splits["test"]
  by_length = {len(s): s for s in sentences}         # one of each length
  longest = max(by_length)
  batch = {"tokens": tf.constant(np.stack([
      np.pad(s, (0, longest - len(s))) for s in by_length.values()]))}
  assert len(by_length) > 3
  vae.log_likelihood(batch, vae.encode(batch)[0])          # builds it
  rng = np.random.default_rng(0)
  for weight in vae.weights:
    weight.assign(rng.normal(0.0, 0.5, weight.shape))
  new = metrics.ImportanceWeightedNLL(vae, chunk_size=7)(batch, 30, seed=5)
  old = metrics.ImportanceWeightedNLL(
      vae, 7, vae_lib.repeated_log_likelihood)(batch, 30, seed=5)
  assert np.ptp(old.numpy()) > 1.0       # the examples' NLLs differ
  # Float32 sums of about 10 words of about 10 nats each: rounding 1e-5.
  np.testing.assert_allclose(new, old, rtol=1e-5)
  z = tf.random.stateless_normal([3, len(by_length), model.latent_dim],
                                 [1, 2])
  np.testing.assert_allclose(
      vae.decoder.sample_log_likelihood(batch, z),
      vae_lib.repeated_log_likelihood(vae, batch, z), rtol=1e-5)


@pytest.mark.slow
def test_noise_floor_is_the_estimate_for_a_posterior_that_ignores_x():
  num, dim = 300, 16
  floor = metrics.mi_noise_floor(num, dim)
  assert floor["std"] == pytest.approx(math.sqrt(dim / (2 * num)))
  assert floor["lo"] < 0 < floor["hi"]
  assert floor["hi"] == pytest.approx(1.96 * floor["std"], rel=0.05)
  # The estimator itself on identical posteriors: over 200 draws, its mean
  # and spread are the floor's, and 95% of draws fall inside [lo, hi].
  rng = np.random.default_rng(0)
  mu = np.tile(rng.normal(size=(1, dim)), (num, 1)).astype(np.float32)
  logvar = np.full((num, dim), -1.0, np.float32)
  values = []
  for draw in range(200):
    eps = rng.normal(size=(num, dim)).astype(np.float32)
    z = mu + np.exp(0.5 * logvar) * eps
    values.append(float(metrics.mutual_information(mu, logvar, z)))
    # Exactly the chi-square form the floor is drawn from.
    assert values[-1] == pytest.approx(
        0.5 * np.mean(np.sum(eps ** 2, 1) - dim), abs=1e-3)
  values = np.asarray(values)
  assert abs(values.mean()) < 3 * floor["std"] / math.sqrt(200)
  assert values.std() == pytest.approx(floor["std"], rel=0.15)
  inside = np.mean((values > floor["lo"]) & (values < floor["hi"]))
  assert 0.9 < inside <= 1.0


def test_length_only_mi_is_what_the_estimator_reads_for_a_length_code():
  rng = np.random.default_rng(1)
  batches = [rng.integers(5, 9, size=32) for _ in range(100)]
  per_batch, full = metrics.length_only_mi(batches)
  # A code z = length with a vanishing variance, through the estimator
  # (whose own noise over 3,200 examples has sd sqrt(1 / 6400) = 0.0125).
  lengths = np.concatenate(batches).astype(np.float32)[:, None]
  logvar = np.full_like(lengths, math.log(1e-6))
  z = lengths + 1e-3 * rng.normal(size=lengths.shape).astype(np.float32)
  estimated_full = float(metrics.mutual_information(lengths, logvar, z))
  assert estimated_full == pytest.approx(full, abs=0.05)
  estimated_batches = np.mean([float(metrics.mutual_information(
      lengths[i * 32:(i + 1) * 32], logvar[:32], z[i * 32:(i + 1) * 32]))
                               for i in range(100)])
  assert estimated_batches == pytest.approx(per_batch, abs=0.05)
  assert full == pytest.approx(math.log(4), abs=0.05)   # 4 lengths, uniform
  assert metrics.length_only_mi([np.full(32, 7)] * 3) == (0.0, 0.0)


def test_probe_recovers_a_planted_latent_and_not_a_collapsed_code():
  rng = np.random.default_rng(2)
  truth = rng.normal(size=(3000, 2))
  mixing = rng.normal(size=(2, 16))
  codes = truth @ mixing + 0.1 * rng.normal(size=(3000, 16))
  r2 = metrics.linear_probe_r2(codes[:2000], truth[:2000], codes[2000:],
                               truth[2000:])
  assert r2 > 0.9
  collapsed = 0.01 * rng.normal(size=(3000, 16))         # ignores the latent
  r2 = metrics.linear_probe_r2(collapsed[:2000], truth[:2000],
                               collapsed[2000:], truth[2000:])
  assert abs(r2) < 0.03


@pytest.mark.slow
def test_a_collapsed_encoder_reads_inside_the_noise_floor(synthetic_text):
  """q(z|x) = p(z) for every x (to_params zeroed, no bias): MI, full MI and
  the probe show nothing, within the interval the evaluation states."""
  vae = registry.build_vae(TINY_TEXT, synthetic_text)
  batch = next(iter(synthetic_text.batches("test", 4)))
  vae.encode(batch)
  for variable in vae.encoder.to_params.variables:
    variable.assign(tf.zeros_like(variable))
  results = evaluation.evaluate(vae, None, synthetic_text, evaluation.EvalConfig(
      iw_samples=0, max_examples=400, seed=7))
  assert results["num_examples"] == 400
  for key in ("mi", "mi_full"):
    assert -results["mi_noise_hi"] < results[key] < results["mi_noise_hi"], key
  assert results["mi_noise_std"] == pytest.approx(math.sqrt(8 / 800))
  assert results["au"] == 0
  assert abs(results["probe_r2"]) < 0.05
  assert abs(results["probe_r2_z"]) < 0.05
  # Batches of 32 (one of 16): lengths mix, so a length code reads > 0.
  assert results["log_k"] == pytest.approx(
      (384 * math.log(32) + 16 * math.log(16)) / 400)
  assert results["mean_batch_size"] == pytest.approx(400 / 13)
  assert 0.5 < results["length_only_mi"] < results["length_only_mi_full"]
  assert results["length_only_mi_full"] > 1.5            # lengths 4-20 words
  exact = evaluation.evaluate(vae, None, synthetic_text, evaluation.EvalConfig(
      iw_samples=0, max_examples=400, seed=7, text_batching="exact",
      probe=False))
  assert exact["length_only_mi"] == 0.0                  # one length a batch
  assert exact["mean_batch_size"] < 25


def test_small_splits_are_read_at_log_k_of_the_full_batch(synthetic_text):
  """337 sentences (PTB's held-out validation size): exact-length batches
  average about 20 rows; full batches are 10 of 32 and one of 17."""
  vae = registry.build_vae(TINY_TEXT, synthetic_text)
  config = evaluation.EvalConfig(iw_samples=0, max_examples=337, probe=False)
  full = evaluation.evaluate(vae, None, synthetic_text, config)
  exact = evaluation.evaluate(vae, None, synthetic_text, dataclasses.replace(
      config, text_batching="exact"))
  assert full["log_k"] == pytest.approx(
      (320 * math.log(32) + 17 * math.log(17)) / 337)     # 3.434
  assert math.log(32) - full["log_k"] < 0.035
  assert full["mean_batch_size"] == pytest.approx(337 / 11)
  assert exact["mean_batch_size"] < 22
  assert exact["log_k"] < full["log_k"] - 0.4
  # The same examples and draws of z per row differ only in the batching:
  # per-example terms agree.
  assert full["kl"] == pytest.approx(exact["kl"], rel=1e-4)


def _planted_codes(vae, latent_dim=8):
  """An encoder whose mean is (sentence length, first word id, 0, ...) with
  a vanishing spread."""
  def encode(batch, training=False):
    del training
    tokens = batch["tokens"]
    mu = tf.pad(tf.concat([
        tf.reduce_sum(tf.cast(tokens != 0, tf.float32), axis=1)[:, None],
        tf.cast(tokens[:, 1:2], tf.float32)], axis=1),
                [[0, 0], [0, latent_dim - 2]])
    mu = tf.ensure_shape(mu, [None, latent_dim])
    return mu, tf.zeros_like(mu) - 20.0
  vae.encode = encode


def test_z_reliance_pairs_rows_of_one_length_in_mixed_batches(synthetic_text):
  """Decoders planted on a planted code: one that ignores z reads 0; one
  that reads only the length from z reads 0 too (partners share the
  length, though batches mix lengths); one that reads the first word from
  z reads far above 0."""
  vae = registry.build_vae(TINY_TEXT, synthetic_text)
  vae.encode(next(iter(synthetic_text.batches("test", 4))))
  _planted_codes(vae)
  config = evaluation.EvalConfig(iw_samples=0, max_examples=300, probe=False)
  def length(batch):
    return tf.reduce_sum(tf.cast(batch["tokens"] != 0, tf.float32), axis=1)
  readings = {}
  for name, log_likelihood in {
      "ignores z": lambda batch, z: -length(batch),
      "length only": lambda batch, z: -100.0 * (z[:, 0] - length(batch)) ** 2,
      "first word": lambda batch, z: -(z[:, 1] - tf.cast(
          batch["tokens"][:, 1], tf.float32)) ** 2,
  }.items():
    vae.log_likelihood = lambda batch, z, training=False, f=log_likelihood: (
        f(batch, z))
    readings[name] = evaluation.evaluate(vae, None, synthetic_text, config)
  assert readings["ignores z"]["z_reliance"] == 0.0
  assert abs(readings["length only"]["z_reliance"]) < 1e-3
  assert readings["first word"]["z_reliance"] > 100.0
  assert readings["length only"]["length_only_mi"] > 0.5   # mixed batches
  # Rows alone with their length in their batch are left out and counted.
  alone = 0
  for batch in synthetic_text.batches(
      "test", 32, batching="full",
      examples=evaluation.example_subset(1000, 300)):
    _, paired = metrics.same_length_partners(_lengths(batch))
    alone += int(np.sum(~paired))
  assert readings["first word"]["z_reliance_unpaired"] == alone
  assert alone < 30


def _with_latents(dataset, latent_of):
  """`dataset` whose latents are latent_of(sentence ids) [d] per sentence."""
  return dataclasses.replace(dataset, latents={
      split: np.asarray([latent_of(s) for s in sentences], np.float64)
      for split, sentences in dataset.splits.items()})


def test_length_probes_split_a_latent_into_length_and_the_rest(
    synthetic_text):
  """With the planted code (length, first word): a latent made of the
  length reads as length and about 0 beyond it; a latent made of the first
  word reads about 0 from length and fully beyond it."""
  vae = registry.build_vae(TINY_TEXT, synthetic_text)
  vae.encode(next(iter(synthetic_text.batches("test", 4))))
  _planted_codes(vae)
  noise = np.random.default_rng(0)
  by_length = _with_latents(synthetic_text, lambda s: [
      len(s) / 10 + 0.1 * noise.normal()])
  by_word = _with_latents(synthetic_text, lambda s: [s[1] / 100.0])
  config = evaluation.EvalConfig(iw_samples=0, max_examples=500)
  length = evaluation.evaluate(vae, None, by_length, config)
  word = evaluation.evaluate(vae, None, by_word, config)
  assert length["probe_r2_length"] > 0.9
  assert abs(length["probe_r2_beyond_length"]) < 0.03
  assert abs(length["probe_r2_z_beyond_length"]) < 0.03
  assert length["probe_r2"] > 0.9                  # the code holds length
  assert abs(word["probe_r2_length"]) < 0.05
  assert word["probe_r2_beyond_length"] > 0.95
  assert word["probe_r2_z_beyond_length"] > 0.95
  assert word["probe_r2_z"] > 0.95


def test_label_probes_read_a_planted_class_and_not_a_random_one():
  """Images whose class (3 levels of ink) the planted code holds one-hot
  read accuracy 1; a random class reads about its majority rate."""
  images = data_lib.load(data_lib.DataConfig(name="synthetic_images"))
  draw = np.random.default_rng(1)          # one binary draw of every split
  images = dataclasses.replace(images, binarization=dict.fromkeys(
      images.splits, "none"), splits={
          s: (draw.random(x.shape) < x).astype(np.float32)
          for s, x in images.splits.items()})
  vae = registry.build_vae(registry.ModelConfig(hidden_dim=16, latent_dim=4),
                           images)
  vae.encode(next(iter(images.batches("test", 4))))
  cuts = np.quantile(images.splits["train"].sum((1, 2, 3)), [1 / 3, 2 / 3])
  def encode(batch, training=False):
    del training
    ink = tf.reduce_sum(batch["image"], axis=[1, 2, 3])
    level = tf.reduce_sum(tf.cast(
        tf.constant(cuts, tf.float32)[None, :] < ink[:, None], tf.int32), 1)
    mu = tf.pad(tf.one_hot(level, 3), [[0, 0], [0, 1]])
    return mu, tf.zeros_like(mu) - 20.0
  vae.encode = encode
  rng = np.random.default_rng(0)
  labels = {}
  for split, x in images.splits.items():
    labels[split] = {
        "ink": np.searchsorted(cuts, x.sum((1, 2, 3))).astype(np.int64),
        "random": (rng.random(len(x)) < 0.6) + rng.integers(0, 2, len(x))}
  labelled = dataclasses.replace(images, labels=labels)
  results = evaluation.evaluate(vae, None, labelled, evaluation.EvalConfig(
      iw_samples=0, max_examples=600))
  assert results["probe_acc_ink"] == 1.0
  assert results["probe_acc_z_ink"] == 1.0
  assert results["probe_acc_ink_chance"] == pytest.approx(1 / 3)
  assert 0.25 < results["probe_acc_ink_majority"] < 0.42
  assert results["probe_acc_random_chance"] == pytest.approx(1 / 3)
  assert 0.4 < results["probe_acc_random_majority"] < 0.6   # class 1: 0.5
  assert abs(results["probe_acc_z_random"]
             - results["probe_acc_random_majority"]) < 0.05


def test_iw_nll_on_the_fixed_subset(synthetic_text):
  """nll_iw<S>_subset reads the same rows whatever max_examples, from the
  full pass's draws or from a pass of its own (other draws: close)."""
  vae = registry.build_vae(TINY_TEXT, synthetic_text)
  config = evaluation.EvalConfig(iw_samples=5, iw_report=(), probe=False,
                                 subset_iw_samples=5, subset_examples=60)
  whole = evaluation.evaluate(vae, None, synthetic_text, config)
  own_pass = evaluation.evaluate(vae, None, synthetic_text, dataclasses.replace(
      config, iw_samples=0, max_examples=100))
  assert whole["subset_examples"] == own_pass["subset_examples"] == 60
  assert "nll" not in own_pass
  assert own_pass["nll_iw5_subset"] == pytest.approx(
      whole["nll_iw5_subset"], rel=0.01)
  # The subset's rows are not the whole split's: their mean differs.
  assert whole["nll_iw5_subset"] != pytest.approx(whole["nll"], rel=1e-4)
  off = evaluation.evaluate(vae, None, synthetic_text, dataclasses.replace(
      config, subset_iw_samples=0, iw_samples=0, max_examples=50))
  assert not any(k.endswith("_subset") for k in off)


def test_ptb_held_out_validation_is_read_at_the_full_batch(data_file):
  """PTB with ptb.valid.txt for training and 10% of it held out (337
  sentences): exact-length batches held about 7 sentences, full batches 32
  (10 of them and one of 17)."""
  ptb = data_lib.load(data_lib.DataConfig(
      name="text", train_file=data_file("ptb/ptb.valid.txt"),
      valid_file=data_file("ptb/ptb.valid.txt"),
      test_file=data_file("ptb/ptb.test.txt"), valid_from_train=0.1))
  assert ptb.num_examples("valid") == 337
  vae = registry.build_vae(TINY_TEXT, ptb)
  config = evaluation.EvalConfig(split="valid", iw_samples=0, probe=False)
  full = evaluation.evaluate(vae, None, ptb, config)
  exact = evaluation.evaluate(vae, None, ptb, dataclasses.replace(
      config, text_batching="exact"))
  assert full["log_k"] == pytest.approx(
      (320 * math.log(32) + 17 * math.log(17)) / 337)
  # Exact: each length's sentences in batches of 32 and one smaller.
  counts = np.unique(ptb.lengths("valid"), return_counts=True)[1]
  sizes = [s for c in counts for s in [32] * (c // 32) + [c % 32] if s]
  assert exact["mean_batch_size"] == pytest.approx(337 / len(sizes))
  assert exact["mean_batch_size"] < 8
  assert exact["log_k"] == pytest.approx(
      sum(s * math.log(s) for s in sizes) / 337)
  assert exact["log_k"] < full["log_k"] - 1.2          # 2.23 against 3.43


def test_the_noise_floor_separates_a_weak_code_from_none():
  # Posteriors N(mu_x, I) with mu_x ~ N(0, s^2 I): the MI is
  # d/2 log(1 + s^2) nats. At s = 0.5 on 400 examples (d = 8: 0.89 nats)
  # the batch estimate lies far above the floor's 97.5% point; at s = 0 it
  # lies inside the floor in about 95% of the draws.
  n, d = 400, 8
  floor = metrics.mi_noise_floor(n, d, seed=0)
  rng = np.random.default_rng(0)
  inside = 0
  for draw in range(40):
    for scale in (0.0, 0.5):
      mu = (scale * rng.normal(size=(n, d))).astype(np.float32)
      logvar = np.zeros_like(mu)
      z = (mu + rng.normal(size=mu.shape)).astype(np.float32)
      mi = float(metrics.mutual_information(mu, logvar, z))
      if scale:
        assert mi > floor["hi"] + 0.3
        assert mi == pytest.approx(d / 2 * math.log(1.25), abs=0.25)
      else:
        inside += floor["lo"] < mi < floor["hi"]
  assert inside >= 34            # 95% of 40, less a binomial margin
