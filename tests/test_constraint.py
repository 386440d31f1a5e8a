"""lambda as a Lagrange multiplier (tf_cvae.constraint): closed forms."""

import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import constraint


def _run(multiplier, bounds):
  return [{k: float(v) for k, v in multiplier.update(b).items()}
          for b in bounds]


def test_a_bound_below_target_raises_lambda_linearly():
  """A constant bound b: the debiased average is b from the first step, so
  lambda_n = lambda_0 + n * step_size * (target - b)."""
  config = constraint.DualConfig(target=2.0, initial_weight=1.0,
                                 step_size=0.05, rate=0.9)
  states = _run(constraint.CriticMultiplier(config), [0.5] * 20)
  for n, state in enumerate(states, start=1):
    assert state["critic_bound_average"] == pytest.approx(0.5, abs=1e-5)
    assert state["critic_lambda"] == pytest.approx(1.0 + n * 0.05 * 1.5,
                                                   rel=1e-5)
    assert state["critic_constraint_active"] == 1.0


def test_a_bound_above_target_lowers_lambda_to_zero_and_not_below():
  config = constraint.DualConfig(target=1.0, initial_weight=0.3,
                                 step_size=0.1, rate=0.5)
  states = _run(constraint.CriticMultiplier(config), [2.0] * 6)
  lambdas = [s["critic_lambda"] for s in states]
  np.testing.assert_allclose(lambdas[:3], [0.2, 0.1, 0.0], atol=1e-6)
  assert lambdas[3:] == [0.0, 0.0, 0.0]
  assert states[-1]["critic_constraint_active"] == 0.0


def test_the_average_follows_a_step_in_the_bound_at_its_rate():
  """After 10 steps at 0 and k at 1 the average is (1 - rate^k), debiased by
  the weight of all 10 + k steps, 1 - rate^(10 + k)."""
  rate = 0.8
  multiplier = constraint.CriticMultiplier(constraint.DualConfig(
      target=5.0, initial_weight=0.0, rate=rate))
  states = _run(multiplier, [0.0] * 10 + [1.0] * 5)
  for k, state in enumerate(states[10:], start=1):
    expected = (1 - rate ** k) / (1 - rate ** (10 + k))
    assert state["critic_bound_average"] == pytest.approx(expected, rel=1e-4)


def test_a_restored_multiplier_continues_exactly(tmp_path):
  config = constraint.DualConfig(target=2.0, initial_weight=1.0,
                                 step_size=0.02, rate=0.95)
  bounds = np.linspace(0.0, 3.0, 12)
  whole = _run(constraint.CriticMultiplier(config), bounds)
  first = constraint.CriticMultiplier(config)
  _run(first, bounds[:5])
  path = tf.train.Checkpoint(multiplier=first).save(str(tmp_path / "ckpt"))
  second = constraint.CriticMultiplier(config)
  tf.train.Checkpoint(multiplier=second).restore(path).assert_consumed()
  for resumed, uninterrupted in zip(_run(second, bounds[5:]), whole[5:]):
    assert resumed == pytest.approx(uninterrupted, rel=1e-6)
