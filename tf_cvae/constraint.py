"""lambda as a Lagrange multiplier: the critic's bound held at a target.

Instead of a fixed weight, the critic term's lambda follows dual ascent on
the constraint "InfoNCE bound >= target" (as GECO does for a reconstruction
constraint):

    bound_avg <- rate * bound_avg + (1 - rate) * bound       (debiased)
    lambda    <- min(max_weight,
                     max(0, lambda + step_size * (target - bound_avg)))

so lambda rises while the bound's moving average is below the target (in
nats) and falls, never below 0, once it is above. The ceiling max_weight is
the anti-windup: a target the critic cannot reach (or reaches only after
the encoder catches up) would otherwise wind lambda up without end, and
the ELBO pays for every unit of it. The loss then carries
lambda * critic cross-entropy with lambda held constant by the gradient; the
user says how many nats the critic should certify instead of hunting a
lambda on a steep cliff. The state is three variables, checkpointed with
the model, so a resumed run continues exactly.
"""

import dataclasses
import math

import tensorflow as tf

# How a target on the bound is enforced (ObjectiveConfig.critic_constraint).
CONSTRAINTS = ("lagrangian", "hinge")


@dataclasses.dataclass(frozen=True)
class DualConfig:
  """The multiplier's dynamics; step_size is lambda per nat of shortfall
  per step, rate the moving average's decay per step."""
  target: float                 # nats of the InfoNCE bound c + log K
  initial_weight: float         # lambda at step 0
  step_size: float = 0.01
  rate: float = 0.99
  max_weight: float = math.inf  # lambda's ceiling (inf: none)


class CriticMultiplier(tf.Module):
  """lambda and the bound's moving average, updated once a step.

  Variables are float32 scalars created in the surrounding distribution
  strategy's scope; updates assume the bound is already the same on every
  replica (the all-reduced mean), so each replica writes the same value.
  """

  def __init__(self, config: DualConfig, name: str = "critic_multiplier"):
    super().__init__(name=name)
    self.config = config
    aggregation = tf.VariableAggregation.ONLY_FIRST_REPLICA
    self.weight = tf.Variable(float(config.initial_weight), trainable=False,
                              name="weight", aggregation=aggregation)
    self.bound_sum = tf.Variable(0.0, trainable=False, name="bound_sum",
                                 aggregation=aggregation)
    self.updates = tf.Variable(0.0, trainable=False, name="updates",
                               aggregation=aggregation)

  def bound_average(self) -> tf.Tensor:
    """The debiased moving average of the bound (nats; 0 before any step)."""
    rate = self.config.rate
    seen = 1.0 - tf.pow(rate, self.updates)
    return tf.math.divide_no_nan(self.bound_sum, seen)

  def update(self, bound: tf.Tensor) -> dict:
    """Folds this step's bound (scalar nats) into the average, then takes
    one dual step; returns {critic_lambda, critic_bound_average,
    critic_constraint_active} after the update (float32 scalars)."""
    rate = self.config.rate
    bound = tf.cast(bound, tf.float32)
    self.bound_sum.assign(rate * self.bound_sum + (1.0 - rate) * bound)
    self.updates.assign_add(1.0)
    average = self.bound_average()
    shortfall = self.config.target - average
    self.weight.assign(tf.clip_by_value(
        self.weight + self.config.step_size * shortfall, 0.0,
        self.config.max_weight))
    return self.state()

  def state(self) -> dict:
    """{critic_lambda, critic_bound_average, critic_constraint_active}:
    active is 1 while the average lies below the target (lambda at its
    ceiling and still active: a target out of reach)."""
    average = self.bound_average()
    return {"critic_lambda": tf.identity(self.weight),
            "critic_bound_average": average,
            "critic_constraint_active": tf.cast(
                average < self.config.target, tf.float32)}
