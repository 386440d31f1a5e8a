"""The stronger baselines, each pinned by its defining property: BN-VAE's KL
floor, the cyclical beta schedule, and encoder pre-training's decoder reset."""

import dataclasses
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import data as data_lib
from tf_cvae import methods
from tf_cvae import objective
from tf_cvae.models import registry
from tf_cvae.training import train

TINY = registry.ModelConfig(embed_dim=8, hidden_dim=12, latent_dim=4,
                            decoder_dropout=0.0)


@pytest.fixture(scope="module")
def dataset():
  return data_lib.load(data_lib.DataConfig(name="synthetic_text"))


def test_cyclical_beta_rises_over_half_of_each_cycle_then_holds():
  config = objective.ObjectiveConfig(kl_cycle_steps=100, kl_cycle_ratio=0.5)
  steps = [0, 25, 50, 75, 99, 100, 125, 150, 399, 400]
  values = [float(objective.kl_weight(config, s)) for s in steps]
  np.testing.assert_allclose(
      values, [0.0, 0.5, 1.0, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0, 0.0], atol=1e-6)
  with pytest.raises(ValueError, match="set one of them"):
    objective.ObjectiveConfig(kl_cycle_steps=10, kl_anneal_steps=10)


def test_pretraining_has_beta_zero_until_its_last_step():
  config = objective.ObjectiveConfig(pretrain_steps=10, kl_weight=1.0)
  values = [float(objective.kl_weight(config, s)) for s in (0, 9, 10, 50)]
  assert values == [0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("gamma", [0.3, 0.8])
def test_bn_vae_keeps_the_batch_mean_kl_above_its_floor(gamma):
  # Over a training batch mean(mu_d^2) = gamma^2 + beta_d^2 >= gamma^2, and
  # KL_d >= mu_d^2 / 2: the batch-mean KL is at least latent * gamma^2 / 2
  # whatever the encoder's means (while their variance dwarfs BN's epsilon).
  from tf_cvae.models import vae as vae_lib
  norm = vae_lib.MeanNormalization(gamma)
  rng = np.random.default_rng(0)
  mu = tf.constant(0.7 + 0.5 * rng.standard_normal((64, 4)), tf.float32)
  logvar = tf.constant(rng.normal(-3.0, 0.5, (64, 4)), tf.float32)
  normed = norm(mu, training=True)
  norm.beta.assign([0.1, -0.2, 0.0, 0.3])     # a learned shift only adds
  shifted = norm(mu, training=True)
  floor = 4 * gamma ** 2 / 2
  for means, shift in ((normed, 0.0), (shifted, norm.beta.numpy())):
    np.testing.assert_allclose(np.mean(means.numpy() ** 2, axis=0),
                               gamma ** 2 + shift ** 2, rtol=1e-3)
    kl = float(tf.reduce_mean(tf.reduce_sum(
        objective.latent.kl_to_prior_per_dim(means, logvar), -1)))
    assert kl >= floor
  # At evaluation the moving statistics are used: no batch dependence.
  first = norm(mu[:1], training=False)
  whole = norm(mu, training=False)
  np.testing.assert_allclose(first.numpy()[0], whole.numpy()[0], atol=1e-6)


def test_bn_vae_trains_and_its_floor_holds_in_a_run(dataset, tmp_path):
  config = methods.method_config(
      train.TrainConfig(model=TINY, max_steps=6, batch_size=16,
                        log_every=3, checkpoint_every=3,
                        out_dir=str(tmp_path / "bn"),
                        eval=train.TrainConfig().eval.__class__(
                            iw_samples=2, iw_chunk_size=2, max_examples=32)),
      "bn_vae", {"model": {"bn_gamma": 0.5}})
  assert config.model.bn_gamma == 0.5
  results = train.run(config)
  assert np.isfinite(results["nll"])
  # The normalisation's moving statistics moved and are saved.
  saved = tf.train.load_checkpoint(str(tmp_path / "bn" / "checkpoints"))
  variance = [n for n in saved.get_variable_to_shape_map()
              if "mean_norm/norm/moving_variance" in n]
  assert variance
  assert np.abs(saved.get_tensor(variance[0]) - 1.0).max() > 1e-3


def test_pretraining_resets_the_decoder_at_the_switch(dataset, tmp_path):
  base = train.TrainConfig(
      model=TINY, max_steps=8, batch_size=16, log_every=4,
      checkpoint_every=2, out_dir=str(tmp_path / "pre"),
      eval=train.TrainConfig().eval.__class__(
          iw_samples=2, iw_chunk_size=2, max_examples=32))
  config = methods.method_config(base, "pretrain_free_bits",
                                 {"objective": {"pretrain_steps": 4}})
  assert (config.objective.pretrain_steps, config.objective.free_bits) == (
      4, 0.25)
  seen = {}
  original = train._Training.one_step

  def spy(self, batch, aggressive, inner):
    step = self.step_fn.iterations
    weights = [v.numpy().copy()
               for v in self.step_fn.vae.decoder.trainable_variables]
    if step == 0:
      seen["initial"] = weights
    if step == 3:
      seen["pretrained"] = weights
    if step == 4:
      seen["after_reset"] = weights
    return original(self, batch, aggressive, inner)

  train._Training.one_step = spy
  try:
    train.run(config)
  finally:
    train._Training.one_step = original
  # Pre-training moved the decoder; at step 4 it is back at its first draw.
  assert max(np.abs(a - b).max() for a, b in zip(seen["pretrained"],
                                                  seen["initial"])) > 1e-4
  for a, b in zip(seen["after_reset"], seen["initial"]):
    np.testing.assert_array_equal(a, b)


def test_pretraining_reset_survives_a_resume(dataset, tmp_path):
  # Stopped before the switch and resumed: the reset still restores the
  # first draw (checkpointed), not the resumed process's new initial draw.
  base = train.TrainConfig(
      model=TINY, batch_size=16, log_every=2, checkpoint_every=2,
      out_dir=str(tmp_path / "resume"),
      eval=train.TrainConfig().eval.__class__(
          iw_samples=2, iw_chunk_size=2, max_examples=32))
  first = methods.method_config(dataclasses.replace(base, max_steps=2),
                                "pretrain_free_bits",
                                {"objective": {"pretrain_steps": 4}})
  train.run(first)
  initial = tf.train.load_checkpoint(str(tmp_path / "resume" / "checkpoints"))
  names = [n for n in initial.get_variable_to_shape_map()
           if n.startswith("decoder_reset/initial")]
  assert names
  saved = {name: initial.get_tensor(name) for name in names}
  keras.utils.set_random_seed(123)       # another initial draw on resume
  results = train.run(dataclasses.replace(first, max_steps=6))
  assert math.isfinite(results["nll"])
  after = tf.train.load_checkpoint(str(tmp_path / "resume" / "checkpoints"))
  assert bool(after.get_tensor(
      "decoder_reset/done/.ATTRIBUTES/VARIABLE_VALUE"))
  for name in names:
    np.testing.assert_array_equal(saved[name], after.get_tensor(name))
