"""lambda as a Lagrange multiplier: the critic's bound held at a target.

Instead of a fixed weight, the critic term's lambda follows dual ascent on
the constraint "InfoNCE bound >= target" (as GECO does for a reconstruction
constraint):

    bound_avg <- rate * bound_avg + (1 - rate) * bound       (debiased)
    integral  <- min(max_weight, max(0, integral
                     + step_size * lr_scale * (target - bound_avg)))
    lambda     = min(max_weight, max(0, integral
                     + proportional * (target - bound_avg)))

so lambda rises while the bound's moving average is below the target (in
nats) and falls, never below 0, once it is above. The ceiling max_weight is
the anti-windup: a target the critic cannot reach (or reaches only after
the encoder catches up) would otherwise wind lambda up without end, and
the ELBO pays for every unit of it.

With proportional = 0 and lr_scale = 1 this is plain dual ascent (lambda is
the integral). It can cycle: an encoder that collapses needs a larger lambda
to take off again than it needs to stay informative, so an integral that
reacts only to the lagged average overshoots both ways, and the bound swings
between ~0 and twice the target. Two dampers: `proportional` (a PI
controller, as in PID Lagrangian methods) moves lambda at once with the
shortfall, and `follow_learning_rate` scales the integral's step by the
learning rate over its initial value (lr_scale), so lambda slows down as
the encoder it steers does. Both are off in DualConfig; ObjectiveConfig
turns the first on (critic_lambda_kp = 1), which settled the self critic
on PTB where plain dual ascent cycled (RESULTS.md: the self_default,
self_undamped and self_lr rows). The loss then carries
lambda * critic cross-entropy with lambda held constant by the gradient;
the user says how many nats the critic should certify instead of hunting a
lambda on a steep cliff. The state is three variables (lambda is a function
of them), checkpointed with the model, so a resumed run continues exactly.
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
  proportional: float = 0.0     # lambda per nat short, on top of the integral
  follow_learning_rate: bool = False  # integral step x lr / initial lr


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
    # The integral part (lambda itself without a proportional term).
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

  def value(self) -> tf.Tensor:
    """lambda as the loss uses it: the integral plus the proportional term
    on the average's shortfall, within [0, max_weight] (float32 scalar)."""
    if not self.config.proportional:
      return tf.identity(self.weight)
    shortfall = self.config.target - self.bound_average()
    return tf.clip_by_value(self.weight + self.config.proportional * shortfall,
                            0.0, self.config.max_weight)

  def update(self, bound: tf.Tensor, lr_scale=1.0) -> dict:
    """Folds this step's bound (scalar nats) into the average, then takes
    one dual step, its size times `lr_scale` (the learning rate over its
    initial value; used only with follow_learning_rate); returns
    {critic_lambda, critic_bound_average, critic_constraint_active} after
    the update (float32 scalars)."""
    rate = self.config.rate
    bound = tf.cast(bound, tf.float32)
    self.bound_sum.assign(rate * self.bound_sum + (1.0 - rate) * bound)
    self.updates.assign_add(1.0)
    average = self.bound_average()
    step_size = self.config.step_size * (
        tf.cast(lr_scale, tf.float32) if self.config.follow_learning_rate
        else 1.0)
    self.weight.assign(tf.clip_by_value(
        self.weight + step_size * (self.config.target - average), 0.0,
        self.config.max_weight))
    return self.state()

  def state(self) -> dict:
    """{critic_lambda, critic_bound_average, critic_constraint_active}:
    active is 1 while the average lies below the target (lambda at its
    ceiling and still active: a target out of reach)."""
    average = self.bound_average()
    return {"critic_lambda": self.value(),
            "critic_bound_average": average,
            "critic_constraint_active": tf.cast(
                average < self.config.target, tf.float32)}
