"""The baselines as settings of the objective: annealing, beta, free bits, and
He et al.'s aggressive training."""

import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import aggressive
from tf_cvae import data as data_lib
from tf_cvae import objective
from tf_cvae.models import registry
from tf_cvae.training import build
from tf_cvae.training import train


def test_kl_annealing_schedule_values():
  config = objective.ObjectiveConfig(kl_weight=1.0, kl_anneal_steps=100,
                                     kl_anneal_start=0.2)
  values = [float(objective.kl_weight(config, s))
            for s in (0, 25, 50, 100, 1000)]
  np.testing.assert_allclose(values, [0.2, 0.4, 0.6, 1.0, 1.0], rtol=1e-6)
  beta = objective.ObjectiveConfig(kl_weight=0.5)     # beta-VAE: constant
  assert float(objective.kl_weight(beta, 7)) == 0.5


def test_critic_weight_warmup_values():
  config = objective.ObjectiveConfig(critic_weight=4.0, critic_warmup_steps=10)
  values = [float(objective.CriticWeight(config)(s))
            for s in (0, 5, 10, 20)]
  np.testing.assert_allclose(values, [0.0, 2.0, 4.0, 4.0], rtol=1e-6)


def test_free_bits_floor_per_dimension():
  kl_per_dim = tf.Variable([[0.1, 2.0, 0.3], [0.3, 4.0, 0.1]])
  with tf.GradientTape() as tape:
    value = objective.free_bits_kl(kl_per_dim, floor=0.5)
  # batch means 0.2, 3.0, 0.2: the two small dims cost the floor, 0.5 each.
  assert float(value) == pytest.approx(4.0)
  grad = tape.gradient(value, kl_per_dim).numpy()
  np.testing.assert_allclose(grad, [[0, 0.5, 0], [0, 0.5, 0]])


def test_free_bits_changes_the_total_loss():
  terms = objective.Terms(
      None, None, None, log_likelihood=tf.constant([-3.0, -5.0]),
      kl_per_dim=tf.constant([[0.2, 0.2], [0.2, 0.2]]),
      kl=tf.constant([0.4, 0.4]))
  plain = objective.loss(terms, objective.ObjectiveConfig()).total
  floored = objective.loss(terms, objective.ObjectiveConfig(
      free_bits=1.0)).total
  assert float(plain) == pytest.approx(4.4)
  assert float(floored) == pytest.approx(6.0)


def test_inner_loop_stop_rule():
  improving = list(np.linspace(10, 5, 30))
  assert not aggressive.inner_loop_converged(improving[:20])
  assert not aggressive.inner_loop_converged(improving[:25])   # mid-window
  # The third window sums higher than the second: the encoder has converged.
  worse = improving[:20] + [improving[10]] * 10
  assert aggressive.inner_loop_converged(worse)
  assert not aggressive.inner_loop_converged(improving[:30])
  assert not aggressive.inner_loop_converged(improving[:10])


@pytest.mark.parametrize("stop_at", [20, 30, 60, None])
def test_aggressive_step_stops_where_the_rule_does(stop_at):
  # Scripted encoder losses that fall, then (from update stop_at - 10 on)
  # stay at the level of the window before: the rule stops at stop_at
  # (None: never, so at max_inner_steps). The losses reach the host a
  # window at a time; the count is what reading each one would give.
  losses = list(np.linspace(10, 5, 100))
  if stop_at:
    losses[stop_at - 10:] = [losses[stop_at - 20]] * (110 - stop_at)
  expected = next((n for n in range(1, 101)
                   if aggressive.inner_loop_converged(losses[:n])), 100)
  calls = []
  def step(batch, update="all"):
    calls.append(update)
    return {"loss": tf.constant(losses[len(calls) - 1] if update == "encoder"
                                else 0.0)}
  _, inner = aggressive.aggressive_step(step, {}, iter(lambda: {}, None))
  assert inner == expected == (stop_at or 100)
  assert calls == ["encoder"] * inner + ["decoder"]


def test_aggressive_switch_follows_validation_mi():
  assert aggressive.stays_aggressive([0.1])
  assert aggressive.stays_aggressive([0.1, 0.3])
  assert not aggressive.stays_aggressive([0.1, 0.3, 0.3])


@pytest.mark.slow
def test_aggressive_step_updates_encoder_then_decoder_only():
  dataset = data_lib.load(data_lib.DataConfig(name="synthetic_text"))
  config = train.TrainConfig(
      model=registry.ModelConfig(embed_dim=16, hidden_dim=16, latent_dim=4,
                                 decoder_dropout=0.0), aggressive=True)
  step = build.build_train_step(config, dataset)
  batches = iter(dataset.batches("train", 32, shuffle=True, seed=1,
                                 drop_remainder=True).repeat())
  batch = next(batches)
  step.build(batch)
  decoder_before = [v.numpy().copy() for v in step.vae.decoder.trainable_variables]
  encoder_before = [v.numpy().copy() for v in step.vae.encoder.trainable_variables]
  out, inner = aggressive.aggressive_step(step, batch, batches,
                                          max_inner_steps=30)
  assert inner in (20, 30)       # the rule is checked every 10 updates
  assert int(step.encoder_optimizer.iterations) == inner
  assert int(step.optimizer.iterations) == 1           # one outer step
  assert "loss" in out
  assert any(np.any(a != b.numpy()) for a, b in
             zip(encoder_before, step.vae.encoder.trainable_variables))
  assert any(np.any(a != b.numpy()) for a, b in
             zip(decoder_before, step.vae.decoder.trainable_variables))
  # A decoder-only step leaves the encoder alone.
  encoder_now = [v.numpy().copy() for v in step.vae.encoder.trainable_variables]
  step(batch, "decoder")
  for a, b in zip(encoder_now, step.vae.encoder.trainable_variables):
    np.testing.assert_array_equal(a, b.numpy())
