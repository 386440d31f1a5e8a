"""The methods compared by runners/compare.py and the reproduction, by name.

A method is a set of changes to a TrainConfig: its top-level fields and,
under "objective" and "model", fields of its ObjectiveConfig and
ModelConfig. Every method starts from the plain VAE (NEUTRAL), so a method's
run holds that method alone.
"""

import dataclasses

from tf_cvae import critics
from tf_cvae.training import config as config_lib

# method -> TrainConfig / ObjectiveConfig fields it changes.
METHODS = {
    "vae": {},
    "kl_annealing": {"objective": {"kl_anneal_steps": "half"}},
    "beta_0.5": {"objective": {"kl_weight": 0.5}},
    "free_bits_0.25": {"objective": {"free_bits": 0.25}},
    "aggressive": {"aggressive": True},
    "self": {"critic": "self", "objective": {"critic_weight": 3.0}},
    "self_target_2": {"critic": "self", "objective": {
        "critic_weight": 3.0, "critic_target": 2.0,
        "critic_constraint": "hinge"}},
    "self_queue_224": {"critic": "self", "num_negatives": 224,
                       "objective": {"critic_weight": 3.0}},
    "hybrid": {"critic": "hybrid", "objective": {"critic_weight": 10.0}},
    "nn": {"critic": "nn", "objective": {"critic_weight": 10.0}},
    # The critics as a user gets them: lambda and target unset, so the
    # library's defaults (critics.DEFAULTS, by kind of data) fill them in.
    "self_default": {"critic": "self", "objective": {"critic_target": None}},
    "hybrid_default": {"critic": "hybrid",
                       "objective": {"critic_target": None}},
    "nn_default": {"critic": "nn", "objective": {"critic_target": None}},
    # The defaults without the multiplier's proportional damper (plain dual
    # ascent, which cycled on PTB), and with the other damper instead:
    # lambda's step following the learning rate.
    "self_undamped": {"critic": "self", "objective": {
        "critic_target": None, "critic_lambda_kp": 0.0}},
    "hybrid_undamped": {"critic": "hybrid", "objective": {
        "critic_target": None, "critic_lambda_kp": 0.0}},
    "self_lr": {"critic": "self", "objective": {
        "critic_target": None, "critic_lambda_kp": 0.0,
        "critic_lambda_follows_lr": True}},
    "hybrid_lr": {"critic": "hybrid", "objective": {
        "critic_target": None, "critic_lambda_kp": 0.0,
        "critic_lambda_follows_lr": True}},
    "model": {"critic_side": "model", "objective": {"critic_weight": 3.0}},
    # The stronger baselines. BN-VAE (Zhu et al. 2020): the means batch-
    # normalised with a fixed scale, so the mean KL stays above
    # latent * gamma^2 / 2. Cyclical annealing (Fu et al. 2019): 4 cycles,
    # beta rising over the first half of each. Encoder pre-training (Li et
    # al. 2019): an autoencoder for the first quarter of the run, then the
    # decoder reset and the ELBO with free bits.
    "bn_vae": {"model": {"bn_gamma": 0.5}},
    # A critic on top of a baseline: BN-VAE at gamma 0.7 (the setting the
    # matched-MI study recommends for text) with the hybrid critic.
    "bn_vae_hybrid": {"critic": "hybrid", "model": {"bn_gamma": 0.7},
                      "objective": {"critic_target": None}},
    "cyclical": {"objective": {"kl_cycle_steps": "quarter",
                               "kl_cycle_ratio": 0.5}},
    "pretrain_free_bits": {"objective": {"pretrain_steps": "quarter",
                                         "free_bits": 0.25}},
}

# What every method starts from: no critic and no baseline, whatever the
# base config says.
NEUTRAL = {"critic": "none", "critic_side": "inference", "num_negatives": 0,
           "aggressive": False}
# lambda unset: the critic's default unless the method gives one; no target
# unless the method gives one.
NEUTRAL_OBJECTIVE = {"kl_weight": 1.0, "kl_anneal_steps": 0, "free_bits": 0.0,
                     "kl_cycle_steps": 0, "pretrain_steps": 0,
                     "critic_weight": None, "critic_target": critics.NO_TARGET}
NEUTRAL_MODEL = {"bn_gamma": 0.0}

# Step-count fields that may be given as a fraction of the run.
_STEP_FIELDS = ("kl_anneal_steps", "critic_warmup_steps", "kl_cycle_steps",
                "pretrain_steps")

# Values of step-count fields given as a fraction of the run's max_steps.
_FRACTIONS = {"half": 0.5, "quarter": 0.25}


def _steps(value, max_steps: int | None):
  """A step count: an int as is, "half" or a float as a fraction of max_steps
  (1000 steps when the run is sized in epochs)."""
  if isinstance(value, int) and not isinstance(value, bool):
    return value
  fraction = _FRACTIONS.get(value, value)
  return max(1, int(float(fraction) * (max_steps or 1000)))


def method_config(base: config_lib.TrainConfig, method: str,
                  changes: dict | None = None) -> config_lib.TrainConfig:
  """`base` reset to the plain VAE, with the changes of `method`, then
  `changes` (the same form as a METHODS entry) on top.

  Step counts (_STEP_FIELDS) may be given as "half", "quarter" or a float:
  a fraction of base.max_steps.
  """
  if method not in METHODS:
    raise KeyError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
  merged = dict(NEUTRAL, **METHODS[method])
  objective = dict(NEUTRAL_OBJECTIVE, **merged.pop("objective", {}))
  model = dict(NEUTRAL_MODEL, **merged.pop("model", {}))
  changes = dict(changes or {})
  objective.update(changes.pop("objective", {}))
  model.update(changes.pop("model", {}))
  merged.update(changes)
  for key in _STEP_FIELDS:
    if objective.get(key):
      objective[key] = _steps(objective[key], base.max_steps)
  return dataclasses.replace(
      base, objective=dataclasses.replace(base.objective, **objective),
      model=dataclasses.replace(base.model, **model), **merged)
