"""Gradient clipping: the negative ELBO's and the critic part's gradients are
clipped by their own global norms, then summed.
SGD with learning rate 1 makes each update minus the applied gradient."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import critics
from tf_cvae import data as data_lib
from tf_cvae import objective
from tf_cvae import train_step
from tf_cvae.models import registry
from tf_cvae.training import build
from tf_cvae.training import train

TINY = registry.ModelConfig(embed_dim=8, hidden_dim=12, latent_dim=3,
                            decoder_dropout=0.0)
HUGE = 1e4          # critic weight: its gradient dwarfs the ELBO's
CLIP, CRITIC_CLIP = 0.005, 0.02


@pytest.fixture(scope="module")
def dataset():
  return data_lib.load(data_lib.DataConfig(name="synthetic_text"))


@pytest.fixture(scope="module")
def batch(dataset):
  return next(iter(dataset.batches("train", 16, drop_remainder=True)))


def _step(dataset, batch, critic_weight, critic="self",
          critic_clip_norm=CRITIC_CLIP):
  """A built TrainStep (SGD, lr 1) with the weights of seed 0."""
  keras.utils.set_random_seed(0)
  vae = registry.build_vae(TINY, dataset)
  step = train_step.TrainStep(
      vae, critics.build_critic(critic, vae, dataset),
      keras.optimizers.SGD(1.0),
      objective.ObjectiveConfig(critic_weight=critic_weight),
      critic_optimizer=keras.optimizers.Adam(1e-3), clip_norm=CLIP,
      critic_clip_norm=critic_clip_norm)
  step.build(batch)
  return step


def _update(step, batch):
  """(the step's outputs, [change of each of step.variables])."""
  before = [v.numpy() for v in step.variables]
  out = step(batch)
  assert int(out["nonfinite"]) == 0
  return out, [v.numpy() - b for v, b in zip(step.variables, before)]


def _norm(arrays) -> float:
  return float(np.sqrt(sum(np.sum(np.square(a)) for a in arrays)))


def _decoder(step, changes):
  """The decoder's entries of `changes` (steps built alike share the order)."""
  ids = {id(v) for v in step.vae.decoder.trainable_variables}
  return [c for v, c in zip(step.variables, changes) if id(v) in ids]


def _of(step, variables, changes):
  """The entries of `changes` of `variables`, in their order."""
  position = {id(v): i for i, v in enumerate(step.variables)}
  return [changes[position[id(v)]] for v in variables]


def _parts(step, batch):
  """The ELBO and critic parts' gradients over the main optimizer's
  variables, by an independent tape (the step's first seed)."""
  main, _ = step._split(step.variables)
  with tf.GradientTape(persistent=True) as tape:
    terms = objective.forward(step.vae, step.critic, batch,
                              tf.constant([0, 0]), training=True)
    losses = objective.loss(terms, step.objective_config, 0)
    elbo, critic = losses.elbo, losses.critic_term
  dense = lambda gs: [np.zeros(v.shape) if g is None
                      else tf.convert_to_tensor(g).numpy()
                      for g, v in zip(gs, main)]
  return main, dense(tape.gradient(elbo, main)), dense(
      tape.gradient(critic, main))


@pytest.mark.slow
def test_separate_clip_keeps_the_critic_out_of_the_decoder_step(dataset,
                                                                 batch):
  _, plain = _update(_step(dataset, batch, 0.0), batch)
  separate_step = _step(dataset, batch, HUGE)
  out, separate = _update(separate_step, batch)
  assert float(out["critic_grad_norm"]) > 100 * CRITIC_CLIP
  assert float(out["elbo_grad_norm"]) > CLIP           # clipping is active
  for a, b in zip(_decoder(separate_step, plain),
                  _decoder(separate_step, separate)):
    np.testing.assert_allclose(b, a, atol=1e-6)
  # Most of the clipped ELBO gradient's norm is the decoder's.
  assert 0.5 * CLIP < _norm(_decoder(separate_step, separate)) <= CLIP


@pytest.mark.parametrize("critic", [
    "self", pytest.param("nn", marks=pytest.mark.slow)])
def test_reported_norms_and_applied_parts_match_an_independent_tape(
    dataset, batch, critic):
  step = _step(dataset, batch, HUGE, critic=critic)
  main, elbo, critic_part = _parts(step, batch)
  out, changes = _update(step, batch)
  np.testing.assert_allclose(float(out["elbo_grad_norm"]), _norm(elbo),
                             rtol=1e-4)
  np.testing.assert_allclose(float(out["critic_grad_norm"]),
                             _norm(critic_part), rtol=1e-4)
  elbo_scale = min(1.0, CLIP / _norm(elbo))
  critic_scale = min(1.0, CRITIC_CLIP / _norm(critic_part))
  assert elbo_scale < 1.0 and critic_scale < 1.0
  applied = _of(step, main, changes)
  for update, e, c in zip(applied, elbo, critic_part):
    np.testing.assert_allclose(update, -(elbo_scale * e + critic_scale * c),
                               rtol=1e-3, atol=1e-5)
  # Each part within its own clip, so the sum exceeds clip_norm: the
  # optimizer did not clip it again.
  assert _norm([elbo_scale * e for e in elbo]) <= CLIP * (1 + 1e-5)
  assert _norm([critic_scale * c for c in critic_part]) <= CRITIC_CLIP * (
      1 + 1e-5)
  assert _norm(applied) > CLIP
  if critic == "nn":    # the critic's own head is trained, by its optimizer
    own = step._split(step.variables)[1]
    assert own and all(np.abs(c).max() > 0
                       for c in _of(step, own, changes))


def test_without_a_critic_term_the_critic_norm_is_zero(dataset, batch):
  out, _ = _update(_step(dataset, batch, 0.0), batch)
  assert float(out["critic_grad_norm"]) == 0.0
  assert float(out["elbo_grad_norm"]) > 0.0


def test_critic_clip_norm_defaults_to_clip_norm(dataset, batch):
  step = _step(dataset, batch, HUGE, critic_clip_norm=None)
  assert step.critic_clip_norm == CLIP


def test_optimizers_do_not_clip_and_a_clipping_one_is_refused(dataset, batch):
  config = train.TrainConfig(critic_clip_norm=1.0)
  assert build.make_optimizer(config, "text").global_clipnorm is None
  vae = registry.build_vae(TINY, dataset)
  with pytest.raises(ValueError, match="global_clipnorm"):
    train_step.TrainStep(vae, None, keras.optimizers.SGD(
        1.0, global_clipnorm=5.0), objective.ObjectiveConfig())
  step = build.build_train_step(
      dataclasses.replace(config, model=TINY), dataset)
  assert (step.clip_norm, step.critic_clip_norm) == (5.0, 1.0)


def test_global_norm_counts_repeated_embedding_rows_once_summed():
  slices = tf.IndexedSlices(tf.ones([2, 3]), tf.constant([0, 0]),
                            tf.constant([4, 3]))
  dense = tf.norm(tf.convert_to_tensor(slices))
  np.testing.assert_allclose(float(train_step.global_norm([slices, None])),
                             float(dense), rtol=1e-6)
  clipped, norm = train_step.clip([slices], 1.0)
  np.testing.assert_allclose(float(norm), float(dense), rtol=1e-6)
  np.testing.assert_allclose(
      float(tf.norm(tf.convert_to_tensor(clipped[0]))), 1.0, rtol=1e-6)


@pytest.mark.slow
def test_separate_clipping_compiles_with_xla_through_the_fused_lstm(dataset,
                                                                     batch):
  keras.utils.set_random_seed(0)
  vae = registry.build_vae(dataclasses.replace(TINY, lstm_impl="fused"),
                           dataset)
  step = train_step.TrainStep(
      vae, critics.build_critic("hybrid", vae, dataset),
      keras.optimizers.SGD(1.0), objective.ObjectiveConfig(critic_weight=3.0),
      jit_compile=True, clip_norm=CLIP)
  out = step(batch)
  assert int(out["nonfinite"]) == 0
  assert float(out["critic_grad_norm"]) > 0.0


@pytest.mark.parametrize("critic_clip, rises", [(1e-5, False), (0.0, True)])
def test_lambda_does_not_wind_up_while_the_critic_clip_binds(
    dataset, batch, critic_clip, rises):
  # A target out of reach: plain dual ascent raises lambda every step; while
  # the critic's clip binds (more lambda would not move the update) its
  # integral holds, and the effective weight lambda * clip / norm is logged.
  keras.utils.set_random_seed(0)
  vae = registry.build_vae(TINY, dataset)
  step = train_step.TrainStep(
      vae, critics.build_critic("self", vae, dataset),
      keras.optimizers.SGD(0.01), objective.ObjectiveConfig(
          critic_weight=1.0, critic_target=3.0, critic_lambda_kp=0.0,
          critic_lambda_step=0.1),
      clip_norm=CLIP, critic_clip_norm=critic_clip)
  weights = []
  for _ in range(5):
    out = step(batch)
    weights.append(float(step.multiplier.weight))
  assert (weights[-1] > 1.3) == rises
  if not rises:
    assert weights == [1.0] * 5
    np.testing.assert_allclose(
        float(out["critic_lambda_effective"]),
        float(out["critic_lambda"]) * critic_clip
        / float(out["critic_grad_norm"]), rtol=1e-5)
  else:
    assert float(out["critic_lambda_effective"]) == pytest.approx(
        float(out["critic_lambda"]))
