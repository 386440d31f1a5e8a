"""The swept series of the reproduction: which knob of which method varies.

Two kinds of sweep (a Scale's `sweep_kind`):
  lambda: the critic weight lambda of the self and hybrid critics (fixed, or
          hinged at a target), and the comparable knob of each baseline;
  target: the target in nats of the InfoNCE bound, held by the Lagrange
          multiplier, for the self and hybrid critics: which target each
          critic can hold at the VAE's NLL (the defaults' evidence), and how
          close the achieved bound lands to the target asked for.
and the K part: MI against the number of the critic's candidates.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Family:
  """A swept series: `method` with one knob taking the values of a list."""
  label: str
  method: str                   # a methods.METHODS key
  knob: str                     # a TrainConfig or ObjectiveConfig field
  values: str                   # the Scale attribute holding the values
  changes: tuple = ()           # fixed changes (either), as (name, value)
  steps_factor: int = 1         # longer training: max_steps times this
  defaults: bool = False        # a candidate for the library's defaults



def lambda_families(scale) -> list[Family]:
  """The lambda sweep's series: critics by lambda (fixed, or hinged at a
  target), baselines by their own knob."""
  w, subset, long = "critic_weight", "lambda_subset", scale.long_factor
  target = lambda t: (("critic_target", t), ("critic_constraint", "hinge"))
  return [
      Family("vae", "vae", "", ""),
      Family("self", "self", w, "lambdas", defaults=True),
      Family("self, target 1 nat", "self", w, "lambdas", target(1.0), 1, True),
      Family("self, target 2 nats", "self", w, subset, target(2.0), 1, True),
      Family("hybrid", "hybrid", w, "lambdas", defaults=True),
      Family("hybrid, target 1 nat", "hybrid", w, subset, target(1.0), 1,
             True),
      Family("self, lambda warm-up over half the run", "self", w, subset,
             (("critic_warmup_steps", 0.5),)),
      Family("self, K = batch + 224 (queue)", "self", w, subset,
             (("num_negatives", 224),)),
      Family(f"vae, {long}x steps", "vae", "", "", (), long),
      Family(f"self, {long}x steps", "self", w, subset, (), long),
      Family(f"self, target 1 nat, {long}x steps", "self", w, subset,
             target(1.0), long),
      Family("KL annealing (fraction of the run)", "kl_annealing",
             "kl_anneal_steps", "anneal_fractions"),
      Family("beta-VAE", "beta_0.5", "kl_weight", "betas"),
      Family("free bits (nats per dim)", "free_bits_0.25", "free_bits",
             "floors"),
  ]


def k_families(scale) -> list[Family]:
  """MI against K: the self critic at lambda k_lambda, no target."""
  w = (("critic_weight", scale.k_lambda),)
  return [Family("K = batch size", "self", "batch_size", "batch_sizes", w),
          Family("K = batch + queue", "self", "num_negatives", "queue_sizes",
                 w)]


def target_families(scale) -> list[Family]:
  """The target sweep's series: each critic by its target (nats), lambda
  starting at scale.target_start and moved by the Lagrange multiplier."""
  start = (("critic_weight", scale.target_start),
           ("critic_constraint", "lagrangian"))
  return [
      Family("vae", "vae", "", ""),
      Family("self, target (multiplier)", "self", "critic_target",
             "targets", start, defaults=True),
      Family("hybrid, target (multiplier)", "hybrid", "critic_target",
             "targets", start, defaults=True),
      # How fast lambda moves (lambda per nat of shortfall per step); the
      # step of the families above is the library's.
      Family("hybrid, target 2 nats, multiplier step", "hybrid",
             "critic_lambda_step", "lambda_steps",
             start + (("critic_target", 2.0),)),
  ]


_SWEEPS = {"lambda": lambda_families, "target": target_families}


def sweep_families(scale) -> list[Family]:
  """The series of the scale's sweep part (by scale.sweep_kind)."""
  return _SWEEPS[scale.sweep_kind](scale)
