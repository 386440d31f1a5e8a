"""The training objective: negative ELBO plus the weighted critic cross-entropy.

    loss = mean_i [ -log p(x_i|z_i) + beta(t) * KL(q(z|x_i) || p(z)) ]
           - lambda(t) * mean_j c_j                 (c_j <= 0: InfoNCE)

All terms are in nats. The baselines are settings of the same objective:
KL annealing (beta warms up linearly), cyclical KL annealing (beta rises from
0 to its weight over the first part of each cycle, Fu et al. 2019), beta-VAE
(a fixed beta), free bits (a per-dimension floor on the batch-mean KL),
encoder pre-training (beta = 0 until pretrain_steps, after which the training
loop resets the decoder, Li et al. 2019). BN-VAE is a model setting
(ModelConfig.bn_gamma). `forward` returns the per-example terms (`Terms`);
`loss` makes the explicit reductions and returns a `Loss`.
"""

import dataclasses
import math

import tensorflow as tf

from tf_cvae import critics
from tf_cvae import replicas
from tf_cvae.models import latent

# lambda, the critic term's weight, is one object (CriticWeight): the fixed
# lambda warmed up from 0, or a Lagrange multiplier holding the InfoNCE bound
# at a target by dual ascent (docs/design.md: why, and its dampers):
#     bound_avg <- rate * bound_avg + (1 - rate) * bound      (debiased)
#     integral  <- clip(integral + step * lr_scale * (target - bound_avg),
#                       0, max_weight)
#     lambda     = clip(integral + proportional * (target - bound_avg),
#                       0, max_weight)

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

  def update(self, bound: tf.Tensor, lr_scale=1.0, saturated=False) -> dict:
    """Folds this step's bound (scalar nats) into the average, then takes
    one dual step, its size times `lr_scale` (the learning rate over its
    initial value; used only with follow_learning_rate), never upward while
    `saturated` (the critic's gradient clip binds: anti-windup); returns
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
    change = step_size * (self.config.target - average)
    change = tf.where(tf.cast(saturated, tf.bool), tf.minimum(change, 0.0),
                      change)
    self.weight.assign(tf.clip_by_value(self.weight + change, 0.0,
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


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
  """Weights and schedules of the loss terms (steps count optimizer updates)."""
  kl_weight: float = 1.0                 # beta after warm-up; 1 is the ELBO
  kl_anneal_steps: int = 0               # linear warm-up of beta; 0: none
  kl_anneal_start: float = 0.1           # beta at step 0 of the warm-up
  kl_cycle_steps: int = 0                # cyclical annealing: steps a cycle;
                                         # 0: none
  kl_cycle_ratio: float = 0.5            # the part of a cycle beta rises in
  pretrain_steps: int = 0                # beta = 0 before this step (then
                                         # the loop resets the decoder)
  free_bits: float = 0.0                 # nats per latent dim; 0: none
  critic_weight: float | None = None     # lambda of the paper; None: unset
                                         # (TrainConfig: the critic's default)
  critic_warmup_steps: int = 0           # linear warm-up of lambda from 0
  critic_target: float | None = None     # nats the bound is held at; None
                                         # or inf: no target (TrainConfig:
                                         # None takes the critic's default)
  critic_constraint: str = "lagrangian"  # how a target holds: lagrangian
                                         # (lambda by dual ascent, from
                                         # critic_weight) | hinge (no loss
                                         # once the bound reaches it)
  critic_lambda_step: float = 0.01       # lagrangian: lambda per nat short
                                         # of the target, per step
  critic_bound_rate: float = 0.99        # lagrangian: decay of the bound's
                                         # moving average, per step
  critic_lambda_max: float = math.inf    # lagrangian: lambda's ceiling
  critic_lambda_kp: float = 1.0          # lagrangian: lambda per nat short,
                                         # added at once (a PI controller;
                                         # 0: plain dual ascent)
  critic_lambda_follows_lr: bool = False  # lagrangian: lambda's step halves
                                         # with the learning rate

  def __post_init__(self):
    if self.kl_cycle_steps and self.kl_anneal_steps:
      raise ValueError("kl_cycle_steps and kl_anneal_steps are two schedules "
                       "of beta: set one of them")
    if not 0.0 < self.kl_cycle_ratio <= 1.0:
      raise ValueError(f"kl_cycle_ratio must lie in (0, 1], got "
                       f"{self.kl_cycle_ratio}")
    if self.critic_constraint not in CONSTRAINTS:
      raise ValueError(f"critic_constraint must be one of "
                       f"{', '.join(CONSTRAINTS)}, got "
                       f"{self.critic_constraint!r}")


def linear_warmup(step, start: float, end: float, steps: int) -> tf.Tensor:
  """start -> end linearly over `steps` steps, then end (a float32 scalar)."""
  if steps <= 0:
    return tf.constant(end, tf.float32)
  fraction = tf.minimum(tf.cast(step, tf.float32) / float(steps), 1.0)
  return start + (end - start) * fraction


def draw_model_samples(vae, batch: dict, seed: tf.Tensor):
  """(z [K, latent] ~ p(z), x ~ p(x|z) as a batch dict) for the model critic.

  No gradient flows through the draw: call it outside the gradient tape and
  pass the result to `forward`, which relaxes x with a gradient path.
  """
  num = tf.shape(next(iter(batch.values())))[0]
  fold_in = tf.random.experimental.stateless_fold_in
  z_prior = vae.prior().sample(num, seed=fold_in(seed, 1))
  return z_prior, vae.decoder.model_sample(batch, z_prior, fold_in(seed, 2))


class _Nested:
  """Lets tf.nest (tf.function outputs, strategy.run) see the fields."""

  def __tf_flatten__(self):
    names = tuple(field.name for field in dataclasses.fields(self))
    return names, tuple(getattr(self, name) for name in names)

  @classmethod
  def __tf_unflatten__(cls, names, values):
    return cls(**dict(zip(names, values)))


@dataclasses.dataclass(frozen=True)
class Contrast(_Nested):
  """One critic's InfoNCE on a batch: z [K_local] of this replica against
  the candidates (the global batch's K x-side rows, then the queue's Q)."""
  x_side: tf.Tensor                # [K, ...] the gathered x-side rows
  logits: tf.Tensor                # [K + Q, K_local] scores f(x_i, z_j)
  log_softmax_positive: tf.Tensor  # [K_local] c_j <= 0, nats
  bound: tf.Tensor                 # scalar nats, mean c + log(K + Q) over
                                   # the global batch (InfoNCE)


@dataclasses.dataclass(frozen=True)
class Terms(_Nested):
  """`forward`'s terms of a batch of K rows (nats, per example)."""
  mu: tf.Tensor                    # [K, latent] posterior means
  logvar: tf.Tensor                # [K, latent] posterior log-variances
  z: tf.Tensor                     # [K, latent] z ~ q(z|x)
  log_likelihood: tf.Tensor        # [K] log p(x|z)
  kl_per_dim: tf.Tensor            # [K, latent] KL(q(z_d|x) || p(z_d))
  kl: tf.Tensor                    # [K] KL(q(z|x) || p(z)), summed over d
  critic: Contrast | None = None   # the inference critic's, or None
  model_critic: Contrast | None = None  # on z ~ p(z), x ~ p(x|z), or None

  @property
  def contrasts(self) -> list[Contrast]:
    """The critics' terms present, the inference critic's first."""
    return [c for c in (self.critic, self.model_critic) if c is not None]

  @property
  def bound(self) -> tf.Tensor | None:
    """The InfoNCE bound lambda's target holds (scalar nats): the inference
    critic's, else the model critic's; None without critics."""
    contrasts = self.contrasts
    return contrasts[0].bound if contrasts else None


def forward(vae, critic, batch: dict, seed: tf.Tensor, training: bool,
            model_critic=None, negatives=None, model_samples=None) -> Terms:
  """Runs encoder, decoder and critics once on a batch.

  Args:
    vae: a models.vae.VAE.
    critic: an inference critic (critics.Critic) or None.
    batch: {"tokens": [K, T]} or {"image": [K, 28, 28, 1]}.
    seed: int32 [2], the stateless seed of the samples.
    training: enables dropout.
    model_critic: a critics.Critic trained on the model's own pairs
      z ~ p(z), x ~ p(x|z) (relaxed so gradients reach the decoder), or None.
    model_samples: draw_model_samples(...) for the model critic.
    negatives: a critics.NegativeQueue whose rows (x_side of earlier
      batches) join the batch's own as negatives, or None.
  """
  mu, logvar = vae.encode(batch, training=training)
  z = _sample_posterior(mu, logvar, seed)
  kl_per_dim = latent.kl_to_prior_per_dim(mu, logvar)
  log_likelihood = vae.log_likelihood(batch, z, training=training)
  kl = tf.reduce_sum(kl_per_dim, axis=-1)
  contrast = model_contrast = None
  if critic is not None:
    x_side = critic.x_side(batch, mu, logvar, training=training)
    contrast = _contrast(critic, x_side, z, negatives)
  if model_critic is not None:
    z_prior, x_sample = model_samples
    # No dropout: the relaxed probabilities are those x was drawn from.
    x_model = vae.decoder.relax(x_sample, z_prior, training=False)
    model_contrast = _contrast(model_critic, model_critic.x_side(
        x_model, None, None, training=training), z_prior)
  return Terms(mu, logvar, z, log_likelihood, kl_per_dim, kl, contrast,
               model_contrast)


def _sample_posterior(mu, logvar, seed):
  """z ~ q(z|x) [K, latent]; under a strategy, the draw of the global batch.

  Each replica draws the whole batch's noise from the shared seed and keeps
  its rows, so R replicas sample what one device would (replicas.py).
  """
  if replicas.num_replicas() == 1:
    return latent.posterior(mu, logvar).sample(seed=seed)
  z_global = latent.posterior(replicas.gather(mu),
                              replicas.gather(logvar)).sample(seed=seed)
  return replicas.local_rows(z_global, tf.shape(mu)[0])


def _contrast(critic, x_side, z, negatives=None) -> Contrast:
  """A critic's InfoNCE terms for z [K_local, latent] against every x: the
  x-side rows of the global batch (gathered from all replicas, so K is the
  global batch) plus the queue's."""
  x_side_all = replicas.gather(x_side)
  if negatives is not None:
    logits, num_candidates = negatives.score(critic, x_side_all, z)
  else:
    logits, num_candidates = critic.score(x_side_all, z), None
  log_softmax_positive, bound = critics.infonce(
      logits, num_candidates, positive_offset=replicas.position(tf.shape(z)[0]))
  return Contrast(x_side_all, logits, log_softmax_positive,
                  replicas.mean(bound))


def negative_elbo(log_likelihood: tf.Tensor, kl: tf.Tensor,
                  kl_weight: float | tf.Tensor = 1.0) -> tf.Tensor:
  """-log p(x|z) + kl_weight * KL per example, [batch] nats."""
  return -log_likelihood + kl_weight * kl


def free_bits_kl(kl_per_dim: tf.Tensor, floor: float) -> tf.Tensor:
  """sum_d max(mean_batch KL_d, floor): scalar nats (Kingma et al. 2016).

  A dimension whose batch-mean KL is under the floor gets no gradient from
  the KL term, so the encoder may use it freely up to `floor` nats.
  """
  batch_mean = replicas.mean(tf.reduce_mean(kl_per_dim, axis=0))
  return tf.reduce_sum(tf.maximum(batch_mean, floor))


def critic_loss(log_softmax_positive: tf.Tensor, infonce_bound: tf.Tensor,
                critic_target: float | None = None) -> tf.Tensor:
  """The critic's cross-entropy, -mean_j c_j (scalar nats, >= 0).

  With `critic_target`, the loss (and its gradient) is zero once the InfoNCE
  bound has reached the target: a hinge, the critic's analogue of free bits.
  """
  loss = -tf.reduce_mean(log_softmax_positive)
  if critic_target is None or math.isinf(critic_target):
    return loss
  active = tf.cast(infonce_bound < critic_target, loss.dtype)
  return tf.stop_gradient(active) * loss


def _critic_weight(config: ObjectiveConfig) -> float:
  """lambda, refusing an unset one (a bare ObjectiveConfig has no critic to
  take a default from: TrainConfig fills it in)."""
  if config.critic_weight is None:
    raise ValueError("ObjectiveConfig.critic_weight is unset: give a number, "
                     "or build the config through TrainConfig, which fills "
                     "in the critic's default")
  return config.critic_weight


def kl_weight(config: ObjectiveConfig, step) -> tf.Tensor:
  """beta at optimizer step `step` (float32 scalar): 0 while pre-training,
  else cyclical (kl_cycle_steps), warmed up (kl_anneal_steps) or fixed."""
  step = tf.cast(step, tf.float32)
  if config.kl_cycle_steps:
    rise = config.kl_cycle_ratio * config.kl_cycle_steps
    in_cycle = tf.math.floormod(step, float(config.kl_cycle_steps))
    beta = config.kl_weight * tf.minimum(in_cycle / rise, 1.0)
  else:
    beta = linear_warmup(step, config.kl_anneal_start, config.kl_weight,
                         config.kl_anneal_steps)
  if config.pretrain_steps:
    beta = tf.where(step < float(config.pretrain_steps), 0.0, beta)
  return beta


def has_critic_term(config: ObjectiveConfig, critic, model_critic) -> bool:
  """Whether the loss has a critic part (a weight and a critic to weigh).
  Raises ValueError for a critic with an unset weight."""
  if critic is None and model_critic is None:
    return False
  return bool(_critic_weight(config)) or dual_config(config) is not None


def dual_config(config: ObjectiveConfig) -> DualConfig | None:
  """The multiplier's settings when lambda follows a target by dual ascent
  (a finite target, critic_constraint "lagrangian", a critic weight to start
  from, 0 included), else None: lambda is the fixed (warmed-up)
  critic_weight."""
  target = config.critic_target
  if (target is None or math.isinf(target) or config.critic_weight is None
      or config.critic_constraint != "lagrangian"):
    return None
  return DualConfig(target, config.critic_weight,
                               config.critic_lambda_step,
                               config.critic_bound_rate,
                               config.critic_lambda_max,
                               config.critic_lambda_kp,
                               config.critic_lambda_follows_lr)


class CriticWeight:
  """lambda at an optimizer step, resolved in one place from an
  ObjectiveConfig whose critic_weight is set (TrainConfig fills it from the
  critic's defaults): with a lagrangian target, the multiplier's lambda
  (`multiplier`, its variables created in the current strategy's scope);
  else the fixed critic_weight, a hinge target applied by `loss`. Either is
  warmed up from 0 over critic_warmup_steps."""

  def __init__(self, config: ObjectiveConfig):
    self.config = config
    dual = dual_config(config)
    self.multiplier = CriticMultiplier(dual) if dual else None
    target = config.critic_target
    self.hinge = (None if self.multiplier is not None or target is None
                  or math.isinf(target) else target)

  def __call__(self, step) -> tf.Tensor:
    """lambda at `step` (float32 scalar, no gradient)."""
    base = (self.multiplier.value() if self.multiplier is not None
            else tf.constant(_critic_weight(self.config), tf.float32))
    return tf.stop_gradient(base) * linear_warmup(
        step, 0.0, 1.0, self.config.critic_warmup_steps)


@dataclasses.dataclass(frozen=True)
class Loss:
  """A batch's loss in parts, scalar nats each: `elbo` the mean negative
  ELBO (beta-weighted, free bits applied), `critic` the critics' summed
  cross-entropy (hinged when a hinge target is set; 0 without critics),
  `critic_weight` lambda (no gradient). The minimised loss is `total`."""
  elbo: tf.Tensor
  critic: tf.Tensor
  critic_weight: tf.Tensor

  @property
  def critic_term(self) -> tf.Tensor:
    """lambda times the critics' cross-entropy (scalar nats)."""
    return self.critic_weight * self.critic

  @property
  def total(self) -> tf.Tensor:
    return self.elbo + self.critic_term


def loss(terms: Terms, config: ObjectiveConfig, step=0,
         critic_weight: CriticWeight | None = None) -> Loss:
  """The loss of `forward`'s terms at optimizer step `step`.

  `critic_weight` gives lambda (TrainStep passes its own, which holds the
  multiplier); None builds one from `config`, which a lagrangian target
  refuses (its lambda lives in the multiplier's state). TrainStep clips the
  critic part's gradient after lambda (and holds the multiplier's lambda
  while that clip binds).
  """
  contrasts = terms.contrasts
  if contrasts and critic_weight is None:
    if dual_config(config):
      raise ValueError("a lagrangian target needs the multiplier's lambda: "
                       "pass critic_weight (TrainStep does)")
    critic_weight = CriticWeight(config)
  beta = kl_weight(config, step)
  if config.free_bits > 0:
    elbo_part = (-tf.reduce_mean(terms.log_likelihood)
                 + beta * free_bits_kl(terms.kl_per_dim, config.free_bits))
  else:
    elbo_part = tf.reduce_mean(negative_elbo(terms.log_likelihood, terms.kl,
                                             beta))
  critic_part = tf.zeros([], elbo_part.dtype)
  weight = tf.zeros([], elbo_part.dtype)
  if contrasts:
    weight = tf.cast(critic_weight(step), elbo_part.dtype)
    for contrast in contrasts:
      critic_part += critic_loss(contrast.log_softmax_positive,
                                 contrast.bound, critic_weight.hinge)
  return Loss(elbo_part, critic_part, weight)
