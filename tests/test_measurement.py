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


def test_bucket_batching_stays_reachable_and_mixes_lengths(synthetic_text):
  bucketed = dataclasses.replace(synthetic_text, batching="bucket")
  mixed = [len(set(_lengths(b))) > 1 for b in bucketed.batches("train", 32)]
  assert sum(mixed) > 0.7 * len(mixed)


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
  log_likelihood = vae.log_likelihood
  def counting(batch, z, **kwargs):
    decoded.assign_add(tf.shape(z)[0])
    return log_likelihood(batch, z, **kwargs)
  vae.log_likelihood = counting
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
  vae(batch)
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
  assert results["length_only_mi"] == 0.0                # one length a batch
  assert results["length_only_mi_full"] > 1.5            # lengths 4-20 words
