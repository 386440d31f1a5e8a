"""lambda as a Lagrange multiplier (tf_cvae.constraint): closed forms."""

import dataclasses
import json
import math

import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import data as data_lib
from tf_cvae import objective
from tf_cvae.models import registry
from tf_cvae.training import build
from tf_cvae.training import config as config_lib
from tf_cvae.training import evaluation
from tf_cvae.training import schedule
from tf_cvae.training import train


def _run(multiplier, bounds):
  return [{k: float(v) for k, v in multiplier.update(b).items()}
          for b in bounds]


def test_a_bound_below_target_raises_lambda_linearly():
  """A constant bound b: the debiased average is b from the first step, so
  lambda_n = lambda_0 + n * step_size * (target - b)."""
  config = objective.DualConfig(target=2.0, initial_weight=1.0,
                                 step_size=0.05, rate=0.9)
  states = _run(objective.CriticMultiplier(config), [0.5] * 20)
  for n, state in enumerate(states, start=1):
    assert state["critic_bound_average"] == pytest.approx(0.5, abs=1e-5)
    assert state["critic_lambda"] == pytest.approx(1.0 + n * 0.05 * 1.5,
                                                   rel=1e-5)
    assert state["critic_constraint_active"] == 1.0


def test_a_bound_above_target_lowers_lambda_to_zero_and_not_below():
  config = objective.DualConfig(target=1.0, initial_weight=0.3,
                                 step_size=0.1, rate=0.5)
  states = _run(objective.CriticMultiplier(config), [2.0] * 6)
  lambdas = [s["critic_lambda"] for s in states]
  np.testing.assert_allclose(lambdas[:3], [0.2, 0.1, 0.0], atol=1e-6)
  assert lambdas[3:] == [0.0, 0.0, 0.0]
  assert states[-1]["critic_constraint_active"] == 0.0


def test_lambda_stops_at_its_ceiling_while_the_target_stays_out_of_reach():
  """A bound stuck 1 nat short: lambda rises by step_size a step up to
  max_weight, stays there, and the constraint stays active."""
  config = objective.DualConfig(target=3.0, initial_weight=1.0,
                                 step_size=0.5, rate=0.5, max_weight=4.0)
  states = _run(objective.CriticMultiplier(config), [2.0] * 10)
  lambdas = [s["critic_lambda"] for s in states]
  np.testing.assert_allclose(lambdas[:6], [1.5, 2.0, 2.5, 3.0, 3.5, 4.0],
                             atol=1e-6)
  assert lambdas[6:] == [4.0] * 4
  assert all(s["critic_constraint_active"] == 1.0 for s in states)


def test_a_run_saved_before_the_ceiling_existed_reads_as_uncapped(tmp_path):
  """config.json without critic_lambda_max: those runs had no ceiling; nor
  did their step follow the learning rate."""
  config = train.TrainConfig(critic="self", out_dir=str(tmp_path))
  saved = dataclasses.asdict(config)
  del saved["objective"]["critic_lambda_max"]
  del saved["objective"]["critic_lambda_follows_lr"]
  config_lib.write_json(str(tmp_path / "config.json"), saved)
  loaded = config_lib.load_config(str(tmp_path))
  assert loaded.objective.critic_lambda_max == math.inf
  assert not loaded.objective.critic_lambda_follows_lr
  capped = objective.ObjectiveConfig(critic_weight=1.0, critic_target=2.0,
                                     critic_lambda_max=10.0)
  assert objective.dual_config(capped).max_weight == 10.0


def test_the_average_follows_a_step_in_the_bound_at_its_rate():
  """After 10 steps at 0 and k at 1 the average is (1 - rate^k), debiased by
  the weight of all 10 + k steps, 1 - rate^(10 + k)."""
  rate = 0.8
  multiplier = objective.CriticMultiplier(objective.DualConfig(
      target=5.0, initial_weight=0.0, rate=rate))
  states = _run(multiplier, [0.0] * 10 + [1.0] * 5)
  for k, state in enumerate(states[10:], start=1):
    expected = (1 - rate ** k) / (1 - rate ** (10 + k))
    assert state["critic_bound_average"] == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("target", [1.0, 2.0, 3.0])
def test_dual_ascent_drives_a_toy_bound_to_its_target(target):
  """Closed loop: a bound that answers lambda with a lag and saturates,
  bound = b_max * l / (l + c) with l the lagged lambda. Dual ascent from
  lambda 0.5 settles the bound's average at the target (within 0.05 nats)
  and lambda at the toy's l* = c * target / (b_max - target)."""
  b_max, c, lag = 3.47, 2.0, 0.9       # log 32 nats; lambda's half-effect
  multiplier = objective.CriticMultiplier(objective.DualConfig(
      target=target, initial_weight=0.5, step_size=0.05, rate=0.99))
  lagged = 0.5
  for _ in range(1500):
    lagged = lag * lagged + (1 - lag) * float(multiplier.value())
    state = multiplier.update(b_max * lagged / (lagged + c))
  assert float(state["critic_bound_average"]) == pytest.approx(target,
                                                               abs=0.05)
  assert float(state["critic_lambda"]) == pytest.approx(
      c * target / (b_max - target), rel=0.05)


def test_the_proportional_term_adds_its_gain_times_the_shortfall():
  """A constant bound b: lambda_n = lambda_0 + n * step * (target - b)
  + kp * (target - b), the integral alone clipped at 0 and lambda too."""
  config = objective.DualConfig(target=2.0, initial_weight=1.0,
                                 step_size=0.05, rate=0.9, proportional=0.5)
  states = _run(objective.CriticMultiplier(config), [0.5] * 10)
  for n, state in enumerate(states, start=1):
    assert state["critic_lambda"] == pytest.approx(
        1.0 + n * 0.05 * 1.5 + 0.5 * 1.5, rel=1e-5)
  above = objective.CriticMultiplier(dataclasses.replace(
      config, initial_weight=0.2, proportional=1.0))
  state = _run(above, [3.0])[0]          # 0.2 - 0.05 - 1.0 < 0
  assert state["critic_lambda"] == 0.0
  assert float(above.weight) == pytest.approx(0.15, rel=1e-5)


def test_a_step_that_follows_the_learning_rate_shrinks_with_it():
  """lr_scale 0.5 (one halving) halves the integral's step; without
  follow_learning_rate the scale is ignored."""
  config = objective.DualConfig(target=2.0, initial_weight=1.0,
                                 step_size=0.1, rate=0.5,
                                 follow_learning_rate=True)
  following = objective.CriticMultiplier(config)
  fixed = objective.CriticMultiplier(dataclasses.replace(
      config, follow_learning_rate=False))
  for _ in range(4):
    following.update(1.0, lr_scale=0.5)
    fixed.update(1.0, lr_scale=0.5)
  assert float(following.weight) == pytest.approx(1.0 + 4 * 0.05, rel=1e-5)
  assert float(fixed.weight) == pytest.approx(1.0 + 4 * 0.1, rel=1e-5)


def _lagged_toy(config, steps=4000, lag=0.99):
  """The saturating toy below, answering lambda with a 100-step lag (an
  encoder that takes about an epoch to follow): (min, max) of its bound
  over the last 1000 steps, in nats."""
  multiplier = objective.CriticMultiplier(config)
  lagged, bounds = config.initial_weight, []
  for _ in range(steps):
    lagged = lag * lagged + (1 - lag) * float(multiplier.value())
    bounds.append(3.47 * lagged / (lagged + 2.0))
    multiplier.update(bounds[-1])
  return min(bounds[-1000:]), max(bounds[-1000:])


@pytest.mark.slow
def test_a_proportional_term_damps_the_cycle_of_a_steep_integral():
  """With a 100-step lag and a step of 0.03, dual ascent alone overshoots
  into a cycle (the bound swings by more than 1 nat around its 1-nat target,
  as the self critic's did on PTB); kp = 3 settles it within 0.01 nats."""
  config = objective.DualConfig(target=1.0, initial_weight=0.5,
                                 step_size=0.03, rate=0.99)
  low, high = _lagged_toy(config)
  assert high - low > 1.0
  low, high = _lagged_toy(dataclasses.replace(config, proportional=3.0))
  assert 0.99 < low <= high < 1.01


def test_a_restored_multiplier_continues_exactly(tmp_path):
  config = objective.DualConfig(target=2.0, initial_weight=1.0,
                                 step_size=0.02, rate=0.95)
  bounds = np.linspace(0.0, 3.0, 12)
  whole = _run(objective.CriticMultiplier(config), bounds)
  first = objective.CriticMultiplier(config)
  _run(first, bounds[:5])
  path = tf.train.Checkpoint(multiplier=first).save(str(tmp_path / "ckpt"))
  second = objective.CriticMultiplier(config)
  tf.train.Checkpoint(multiplier=second).restore(path).assert_consumed()
  for resumed, uninterrupted in zip(_run(second, bounds[5:]), whole[5:]):
    assert resumed == pytest.approx(uninterrupted, rel=1e-6)


@pytest.mark.slow
def test_training_moves_lambda_toward_the_target_and_records_it(tmp_path):
  """A self critic held at an unreachable target (above log K): lambda rises
  every step by at least step_size * (target - log K), and history.jsonl
  records it; a target always met lets it fall to 0 and stay there."""
  model = registry.ModelConfig(embed_dim=16, hidden_dim=16, latent_dim=4,
                               decoder_dropout=0.0)
  lambdas = {}
  for name, target in (("unreachable", 5.0), ("met", -1.0)):
    config = train.TrainConfig(
        critic="self", model=model, max_steps=40, batch_size=16, log_every=20,
        out_dir=str(tmp_path / name),
        eval=evaluation.EvalConfig(iw_samples=0, max_examples=64,
                                   probe=False),
        objective=objective.ObjectiveConfig(
            critic_weight=1.0, critic_target=target, critic_lambda_step=0.05))
    train.run(config)
    with open(tmp_path / name / "history.jsonl") as f:
      last = [json.loads(line) for line in f][-1]
    lambdas[name] = last["critic_lambda"]
    with open(tmp_path / name / "metrics.json") as f:   # the last step's
      assert json.load(f)["critic_lambda"] == pytest.approx(
          last["critic_lambda"])
    assert last["critic_constraint_active"] == (1.0 if target > 0 else 0.0)
  # log 16 = 2.77 < 5: each of 40 steps adds at least 0.05 * (5 - 2.77).
  assert lambdas["unreachable"] >= 1.0 + 40 * 0.05 * (5.0 - math.log(16))
  assert lambdas["met"] == 0.0     # bound >= -1 always: lambda falls to 0


@pytest.mark.slow
def test_the_train_steps_multiplier_slows_down_with_each_halving():
  """critic_lambda_follows_lr: a TrainStep held at an unreachable target
  (the bound stays below log K < 5 nats) moves lambda's integral by at least
  step * (5 - log K) a step, and after one halving of the learning rate by
  half as much: the rates of change over 5 steps each differ by 2x."""
  dataset = data_lib.load(data_lib.DataConfig(name="synthetic_text"))
  config = train.TrainConfig(
      critic="self", batch_size=16, model=registry.ModelConfig(
          embed_dim=16, hidden_dim=16, latent_dim=4, decoder_dropout=0.0),
      objective=objective.ObjectiveConfig(
          critic_weight=1.0, critic_target=5.0, critic_lambda_step=0.1,
          critic_bound_rate=0.0, critic_lambda_follows_lr=True))
  step = build.build_train_step(config, dataset)
  batch = next(iter(dataset.batches("train", 16, shuffle=False,
                                    drop_remainder=True)))
  step.build(batch)
  moves = []
  for halve in (False, True):
    if halve:
      schedule.halve_learning_rates(step)
    before, shortfall = float(step.multiplier.weight), 0.0
    for _ in range(5):
      shortfall += 5.0 - float(step(batch)["infonce_bound"])
    moves.append((float(step.multiplier.weight) - before) / shortfall)
  assert moves[0] == pytest.approx(0.1, rel=1e-4)
  assert moves[1] == pytest.approx(0.05, rel=1e-4)


@pytest.mark.slow
def test_a_plain_vae_with_a_target_in_its_config_trains(tmp_path):
  """The quickstart's plain half: critic none, the critic's weight and
  target still in the config; no multiplier, no critic term."""
  config = train.TrainConfig(
      critic="none", max_steps=3, batch_size=16, out_dir=str(tmp_path),
      model=registry.ModelConfig(embed_dim=16, hidden_dim=16, latent_dim=4),
      eval=evaluation.EvalConfig(iw_samples=0, max_examples=32, probe=False),
      objective=objective.ObjectiveConfig(critic_weight=3.0,
                                          critic_target=2.0))
  metrics = train.run(config)
  assert metrics["steps"] == 3 and math.isfinite(metrics["elbo"])
  assert "critic_lambda" not in metrics


def test_a_multiplier_may_start_at_zero():
  """lambda 0 with a target: the critic term is on (it rises from 0);
  lambda 0 without one: no critic term."""
  start_at_zero = objective.ObjectiveConfig(critic_weight=0.0,
                                            critic_target=2.0)
  assert objective.dual_config(start_at_zero).initial_weight == 0.0
  assert objective.has_critic_term(start_at_zero, object(), None)
  off = objective.ObjectiveConfig(critic_weight=0.0, critic_target=math.inf)
  assert objective.dual_config(off) is None
  assert not objective.has_critic_term(off, object(), None)
  hinge = objective.ObjectiveConfig(critic_weight=0.0, critic_target=2.0,
                                    critic_constraint="hinge")
  assert not objective.has_critic_term(hinge, object(), None)


def test_the_warm_up_scales_the_multipliers_lambda_too():
  """critic_warmup_steps raises lambda from 0 also when a multiplier gives
  it: lambda(t) = multiplier * min(t / steps, 1)."""
  terms = objective.Terms(
      None, None, None, log_likelihood=tf.constant([-10.0, -12.0]),
      kl_per_dim=tf.constant([[1.0], [1.0]]), kl=tf.constant([1.0, 1.0]),
      critic=objective.Contrast(
          None, None, tf.constant([-1.0, -2.0]), tf.constant(0.5)))
  config = objective.ObjectiveConfig(critic_weight=4.0, critic_target=1.0,
                                     critic_warmup_steps=10,
                                     critic_lambda_kp=0.0)
  weight = objective.CriticWeight(config)     # the multiplier's lambda: 4
  parts = [float(objective.loss(terms, config, step, weight).critic_term)
           for step in (0, 5, 10, 20)]
  np.testing.assert_allclose(parts, [0.0, 2.0 * 1.5, 4.0 * 1.5, 4.0 * 1.5],
                             rtol=1e-6)
  with pytest.raises(ValueError, match="critic_constraint"):
    objective.ObjectiveConfig(critic_constraint="lagrange")
