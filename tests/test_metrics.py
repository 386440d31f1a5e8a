"""Metrics against closed forms."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tf_cvae import metrics
from tf_cvae.models import latent

tfd = tfp.distributions


def test_kl_matches_hand_computed_gaussian_kl():
  mu = np.array([[0.5, -1.0], [2.0, 0.0]], np.float32)
  logvar = np.array([[0.2, -0.7], [1.0, 0.0]], np.float32)
  var = np.exp(logvar)
  expected = 0.5 * np.sum(var + mu ** 2 - 1.0 - logvar, axis=1)
  kl = tf.reduce_sum(latent.kl_to_prior_per_dim(mu, logvar), axis=-1)
  np.testing.assert_allclose(kl.numpy(), expected, rtol=1e-5)


def test_forward_reports_the_closed_form_kl_of_its_posterior():
  from tf_cvae import data as data_lib
  from tf_cvae import objective
  from tf_cvae.models import registry
  dataset = data_lib.load(data_lib.DataConfig(name="synthetic_text"))
  vae = registry.build_vae(registry.ModelConfig(
      embed_dim=8, hidden_dim=8, latent_dim=3, decoder_dropout=0.0), dataset)
  batch = next(iter(dataset.batches("train", 16)))
  terms = objective.forward(vae, None, batch, tf.constant([3, 4]),
                            training=False)
  # In float64: at a near-prior posterior float32 cancels to ~1e-7 nats.
  mu, logvar = (t.numpy().astype(np.float64) for t in (terms.mu, terms.logvar))
  expected = 0.5 * np.sum(np.exp(logvar) + mu ** 2 - 1.0 - logvar, axis=1)
  np.testing.assert_allclose(terms.kl.numpy(), expected, rtol=1e-4,
                             atol=1e-7)
  np.testing.assert_allclose(terms.kl_per_dim.numpy().sum(-1), expected,
                             rtol=1e-4, atol=1e-7)


def test_mi_is_zero_when_posterior_ignores_x():
  n, d = 4000, 3
  mu = tf.fill([n, d], 0.3)
  logvar = tf.fill([n, d], -0.5)
  z = latent.posterior(mu, logvar).sample(seed=[1, 2])
  mi = float(metrics.mutual_information(mu, logvar, z, chunk_size=1000))
  assert abs(mi) < 0.05


def test_mi_reaches_log_n_for_separated_posteriors():
  # Far-apart posteriors: q(z_j) = q(z_j|x_j) / N, so the estimate is log N
  # plus the gap between the exact and the sampled E[log q(z|x)].
  n = 50
  mu = tf.constant(np.arange(n, dtype=np.float32)[:, None] * 10.0)
  logvar = tf.fill([n, 1], -2.0)
  q = latent.posterior(mu, logvar)
  z = q.sample(seed=[3, 4])
  mi = float(metrics.mutual_information(mu, logvar, z))
  sampling_gap = float(tf.reduce_mean(-q.entropy()) - tf.reduce_mean(
      q.log_prob(z)))
  assert abs(mi - (math.log(n) + sampling_gap)) < 1e-4
  assert abs(mi - math.log(n)) < 0.15


def test_chunked_mi_equals_unchunked():
  rng = np.random.default_rng(0)
  mu = tf.constant(rng.normal(size=(300, 4)), tf.float32)
  logvar = tf.constant(rng.normal(size=(300, 4)) * 0.3 - 1.0, tf.float32)
  z = latent.posterior(mu, logvar).sample(seed=[5, 6])
  full = float(metrics.mutual_information(mu, logvar, z))
  chunked = float(metrics.mutual_information(mu, logvar, z, chunk_size=64))
  assert abs(full - chunked) < 1e-4
  assert full <= math.log(300) + 1e-5


def test_active_units_counts_dims_with_varying_means():
  rng = np.random.default_rng(1)
  means = np.zeros((1000, 5), np.float32)
  means[:, 0] = rng.normal(size=1000)               # variance 1: active
  means[:, 1] = rng.normal(size=1000) * 0.2         # variance 0.04: active
  means[:, 2] = rng.normal(size=1000) * 0.05        # variance 0.0025: inactive
  means[:, 3] = 7.0                                 # constant: inactive
  count, variances = metrics.active_units(tf.constant(means))
  assert count == 2
  assert variances.shape == (5,)


class _LinearGaussianVAE:
  """p(z) = N(0, 1), p(x|z) = N(a z + b, s^2): p(x) = N(b, a^2 + s^2) exactly.

  Its encoder is deliberately off the true posterior, so the IW estimate must
  do real work to reach the exact marginal.
  """
  latent_dim = 1
  a, b, s = 2.0, 0.5, 0.7

  def encode(self, batch, training=False):
    x = batch["x"]
    precision = 1.0 + self.a ** 2 / self.s ** 2
    mean = (self.a / self.s ** 2) * (x - self.b) / precision
    return mean + 0.3, tf.fill(tf.shape(x), math.log(2.0 / precision))

  def prior(self):
    return latent.prior(1)

  def log_likelihood(self, batch, z, training=False):
    return tfd.Normal(self.a * z[:, 0] + self.b, self.s).log_prob(
        batch["x"][:, 0])


def test_iw_nll_matches_exact_marginal_likelihood():
  vae = _LinearGaussianVAE()
  x = tf.constant([[-1.0], [0.5], [2.5], [4.0]])
  exact_nll = -tfd.Normal(vae.b, math.sqrt(vae.a ** 2 + vae.s ** 2)).log_prob(
      x[:, 0]).numpy()
  estimator = metrics.ImportanceWeightedNLL(vae, chunk_size=100)
  iw_nll = estimator({"x": x}, num_samples=2000, seed=3).numpy()
  np.testing.assert_allclose(iw_nll, exact_nll, atol=0.02)
  # One sample is the ELBO: an upper bound on the NLL, looser than IW.
  single = np.mean([estimator({"x": x}, 1, seed=s).numpy() for s in range(200)],
                   axis=0)
  assert np.all(single > exact_nll + 0.01)


class _ExactPosteriorVAE(_LinearGaussianVAE):
  """The same model with q(z|x) = p(z|x): every importance weight is p(x)."""

  def encode(self, batch, training=False):
    x = batch["x"]
    precision = 1.0 + self.a ** 2 / self.s ** 2
    mean = (self.a / self.s ** 2) * (x - self.b) / precision
    return mean, tf.fill(tf.shape(x), -math.log(precision))


@pytest.mark.parametrize("num_samples", [1, 7, 100, 250])
def test_iw_nll_normalizes_by_exactly_num_samples(num_samples):
  # With the exact posterior the estimate is exact for any S, so a wrong
  # count of samples in the last, partial chunk would show as an offset.
  vae = _ExactPosteriorVAE()
  x = tf.constant([[0.0], [1.0], [3.0]])
  exact_nll = -tfd.Normal(vae.b, math.sqrt(vae.a ** 2 + vae.s ** 2)).log_prob(
      x[:, 0]).numpy()
  iw_nll = metrics.ImportanceWeightedNLL(vae, chunk_size=32)({"x": x},
                                                             num_samples)
  np.testing.assert_allclose(iw_nll.numpy(), exact_nll, atol=1e-4)


def test_perplexity_is_exp_of_nll_per_token():
  assert abs(metrics.perplexity(200.0, 100) - math.exp(2.0)) < 1e-9


def _planted_lengths(rng, count):
  return rng.integers(5, 25, size=count)


def _by_and_beyond_length(lengths, truth, codes):
  """(the probe R^2 of truth from length alone, truth's training residuals
  after length, the probe R^2 of those residuals from the codes), fit on
  the first 3000 rows, scored on the rest."""
  tr, te = slice(0, 3000), slice(3000, None)
  by_length = metrics.probe_r2_length(lengths[tr], truth[tr], lengths[te],
                                      truth[te])
  rest_train, rest = metrics.beyond_length(lengths[tr], truth[tr],
                                           lengths[te], truth[te])
  beyond = metrics.linear_probe_r2(codes[tr], rest_train, codes[te], rest)
  return by_length, rest_train, beyond


def test_a_latent_carried_by_length_reads_as_length_and_nothing_beyond():
  rng = np.random.default_rng(0)
  lengths = _planted_lengths(rng, 4000)
  # The latent is a function of length plus a part the code never sees.
  truth = np.stack([np.sin(lengths / 3.0), lengths / 10.0], 1)
  truth = truth + 0.05 * rng.normal(size=truth.shape)
  codes = metrics.one_hot(lengths, np.unique(lengths)) @ rng.normal(
      size=(20, 8)) + 0.01 * rng.normal(size=(4000, 8))
  by_length, rest_train, beyond = _by_and_beyond_length(lengths, truth,
                                                        codes)
  assert by_length > 0.95
  assert abs(beyond) < 0.03
  # The residuals are the latent less its per-length training mean.
  at_7 = lengths[:3000] == 7
  np.testing.assert_allclose(rest_train[at_7].mean(0), 0.0, atol=1e-12)


def test_a_latent_independent_of_length_reads_fully_beyond_length():
  rng = np.random.default_rng(1)
  lengths = _planted_lengths(rng, 4000)
  truth = rng.normal(size=(4000, 2))
  codes = truth @ rng.normal(size=(2, 8)) + 0.05 * rng.normal(size=(4000, 8))
  by_length, rest_train, beyond = _by_and_beyond_length(lengths, truth,
                                                        codes)
  assert abs(by_length) < 0.03
  assert beyond > 0.97
  # A length never seen in training subtracts the training mean.
  _, unseen = metrics.beyond_length(np.array([3, 3, 4]),
                                    np.array([[1.0], [3.0], [8.0]]),
                                    np.array([3, 9]), np.array([[2.0], [4.0]]))
  np.testing.assert_allclose(unseen, [[0.0], [0.0]])


def test_classification_probe_reads_separable_classes_and_random_codes():
  rng = np.random.default_rng(2)
  # 10 classes of unequal size (class 0 a third of the rows).
  labels = np.where(rng.random(6000) < 1 / 3, 0, rng.integers(1, 10, 6000))
  centres = 3.0 * rng.normal(size=(10, 16))
  codes = centres[labels] + 0.3 * rng.normal(size=(6000, 16))
  tr, te = slice(0, 4000), slice(4000, None)
  read = metrics.linear_probe_accuracy(codes[tr], labels[tr], codes[te],
                                       labels[te])
  assert read["accuracy"] > 0.99
  assert read["chance"] == pytest.approx(0.1)
  assert read["majority"] == pytest.approx(np.mean(labels[te] == 0))
  assert 0.3 < read["majority"] < 0.37
  noise = rng.normal(size=(6000, 16))
  blind = metrics.linear_probe_accuracy(noise[tr], labels[tr], noise[te],
                                        labels[te])
  assert abs(blind["accuracy"] - blind["majority"]) < 0.03


def test_same_length_partners_pair_only_rows_of_one_length():
  partner, paired = metrics.same_length_partners(
      np.array([5, 7, 5, 9, 5, 7]))
  np.testing.assert_array_equal(partner, [2, 5, 4, 3, 0, 1])
  np.testing.assert_array_equal(paired, [1, 1, 1, 0, 1, 1])


def test_size_weighted_log_k_of_a_known_batch_layout():
  expected = (2 * 32 * math.log(32) + 4 * math.log(4)) / 68
  assert metrics.size_weighted_log_k([32, 32, 4]) == pytest.approx(expected)
  assert expected == pytest.approx(3.3434, abs=1e-4)
  assert metrics.size_weighted_log_k([32] * 5) == pytest.approx(math.log(32))
