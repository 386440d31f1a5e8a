"""TrainConfig: everything a run needs, and its round trip through JSON.

Runners build a TrainConfig from flags; `run` writes it to out_dir/config.json
and `load_config` reads it back for evaluation, export and resumption.
"""

import dataclasses
import hashlib
import json
import math
import os

from absl import logging

from tf_cvae import critics
from tf_cvae import data as data_lib
from tf_cvae import errors
from tf_cvae import objective as objective_lib
from tf_cvae.models import registry
from tf_cvae.training import evaluation


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything a run needs; runners build it from flags."""
  data: data_lib.DataConfig = data_lib.DataConfig()
  model: registry.ModelConfig = registry.ModelConfig()
  objective: objective_lib.ObjectiveConfig = objective_lib.ObjectiveConfig()
  eval: evaluation.EvalConfig = evaluation.EvalConfig()
  critic: str = "none"                 # inference critic: none self hybrid nn
  critic_side: str = "inference"       # inference | model | both
  num_negatives: int = 0               # queue of earlier batches' negatives
  aggressive: bool = False             # He et al.'s aggressive encoder updates
  aggressive_max_inner: int = 100      # encoder updates per step at most
  batch_size: int = 32                 # K: the critic's negatives
  epochs: int = 10
  max_steps: int | None = None         # overrides epochs when set
  optimizer: str = "auto"              # sgd | adam; auto: sgd text, adam images
  learning_rate: float | None = None   # None: 1.0 for sgd, 1e-3 for adam
  clip_norm: float | None = 5.0        # the ELBO gradient's global-norm clip
  critic_clip_norm: float | None = None  # the critic part's, apart;
                                         # None: clip_norm; 0: none
  critic_learning_rate: float = 1e-3   # Adam of the critics' own parameters
  seed: int = 0
  out_dir: str = "runs/default"
  jit_compile: str = "auto"            # on | off | auto (see resolve_jit_compile)
  strategy: str = "default"            # replicas.STRATEGIES
  num_cpu_devices: int = 1             # mirrored on a CPU host: its devices
  log_every: int = 100
  checkpoint_every: int = 500
  lr_patience: int = 2                 # epochs not improving; 0: never halve
  lr_warmup_epochs: int = 0            # epochs not counted (He et al.: 15)
  max_lr_decays: int | None = 5        # stop at this halving; None or 0: never
  valid_examples: int | None = None    # cap on the validation split
  validate_every: int = 0              # steps; 0: epoch ends and the last step
  select: str = "last"                 # test metrics reported at top level:
                                       # last (what was trained) | best
  deterministic: bool = False          # enable_op_determinism (GPU: slower)
  max_bad_steps: int = 20              # stop after this many non-finite steps in a row

  def __post_init__(self):
    """Fills in the critic's default lambda and target for the kind of
    data (critics.DEFAULTS) where objective leaves them unset (None), so
    that TrainConfig(critic="self") trains with the self critic's term on.
    Once filled in they are the config's own: a dataclasses.replace that
    changes the critic or the data keeps them unless it sets them to None
    again."""
    objective = self.objective
    if objective.critic_weight is not None and (
        objective.critic_target is not None):
      return
    weight, target = critics.defaults(self.critic, self.critic_side,
                                      data_lib.kind(self.data.name))
    if objective.critic_weight is None:
      objective = dataclasses.replace(objective, critic_weight=weight)
    if objective.critic_target is None:
      objective = dataclasses.replace(objective, critic_target=target)
    object.__setattr__(self, "objective", objective)


# Fields this version removed, with the value runs had (dotted: a section's
# field): a config.json that holds one still loads (the field is ignored,
# with a warning), and run names hash it as before, so a command still
# names (and resumes) the run it named before.
REMOVED_FIELDS = {"critic_optimizer": "adam", "data.long_sentences": "drop",
                  "data.image_size": 28, "data.image_channels": 1,
                  "clip_mode": "separate", "model.init": "he",
                  "model.hybrid_features": "hidden", "select_by": "elbo",
                  "valid_iw_samples": 50, "data.text_batching": "exact"}
# Removed fields that shaped a text run's network, with what a text run
# without the field had when it predates the field (its objective also lacks
# critic_lambda_kp, which came after both): a run with another value than
# REMOVED_FIELDS' cannot be rebuilt here, and is refused (RemovedNetwork).
# The hybrid critic alone reads hybrid_features.
REMOVED_NETWORK_FIELDS = {"model.init": "keras",
                          "model.hybrid_features": "embedding"}
# The last version that builds them.
REMOVED_NETWORK_VERSION = "0.1.0"


def _removed_field(fields: dict, dotted: str):
  """(the dict that holds a REMOVED_FIELDS entry, its name)."""
  *section, name = dotted.split(".")
  return (fields.get(section[0]) if section else fields), name


# Fields that do not change what is trained, so not the run's name: how
# long it trains (a longer run continues the shorter one), how it is
# evaluated and how often it logs and saves (and data.download).
NOT_IN_RUN_NAME = ("out_dir", "epochs", "max_steps", "eval", "log_every",
                   "checkpoint_every")


def default_run_name(config: TrainConfig) -> str:
  """The run directory name of a config given no out_dir: "<dataset>_<model>
  _<critic>_seed<seed>_<hash>", hash = 8 hex digits of the SHA-256 of the
  config's JSON without NOT_IN_RUN_NAME. The same run gives the same name
  whatever its length, so rerunning a command with a larger max_steps or
  epochs continues its run; any other change gives a new one."""
  fields = dataclasses.asdict(config)
  for name in NOT_IN_RUN_NAME:
    fields.pop(name)
  fields["data"].pop("download")      # where the data comes from
  for dotted, value in REMOVED_FIELDS.items():
    holder, name = _removed_field(fields, dotted)
    holder[name] = value
  digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
  model = config.model.name
  if model == "auto" and config.data.name in data_lib.names():
    model = registry.resolve_model_name(config.model,
                                        data_lib.kind(config.data.name))
  return (f"{config.data.name}_{model}_{config.critic}_seed{config.seed}_"
          f"{digest.hexdigest()[:8]}")


def _dataclass_from_dict(cls, values):
  """cls(**values), nested dataclass fields rebuilt from their dicts."""
  if not isinstance(values, dict):
    raise errors.InputError(f"{cls.__name__} must be a JSON object, got "
                            f"{type(values).__name__}")
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - set(fields))
  if unknown:
    raise errors.InputError(
        f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
  kwargs = {}
  for name, value in values.items():
    default = fields[name].default
    if dataclasses.is_dataclass(default):
      value = _dataclass_from_dict(type(default), value)
    kwargs[name] = value
  return cls(**kwargs)


class RemovedNetwork(errors.InputError):
  """A saved run whose network this version no longer builds."""


def _refuse_removed_networks(saved, path: str) -> None:
  """Raises RemovedNetwork when a saved text run was built with a value of a
  REMOVED_NETWORK_FIELDS field other than the one this version builds
  (image models read none of them)."""
  if not isinstance(saved, dict) or not isinstance(saved.get("model", {}),
                                                   dict):
    return
  data = saved.get("data", {})
  name = (data.get("name", data_lib.DataConfig.name) if isinstance(data, dict)
          else None)
  try:
    if data_lib.kind(name) == "image":
      return
  except (errors.InputError, TypeError):
    pass
  objective = saved.get("objective")
  predates = not (isinstance(objective, dict)
                  and "critic_lambda_kp" in objective)
  for dotted, before in REMOVED_NETWORK_FIELDS.items():
    if dotted == "model.hybrid_features" and saved.get("critic") != "hybrid":
      continue
    holder, field = _removed_field(saved, dotted)
    value = (holder or {}).get(field,
                                before if predates else REMOVED_FIELDS[dotted])
    if value != REMOVED_FIELDS[dotted]:
      raise RemovedNetwork(
          f"{path}: this run was trained with {field}={value}, which this "
          f"version no longer builds; use "
          f"tf_cvae<={REMOVED_NETWORK_VERSION}")


def _old_runs_no_target(saved) -> None:
  """Reads a saved objective as it was meant when it was saved: a
  critic_target null (or missing) meant "no target" before the critics had
  defaults (today None is "the default"), a target was a hinge before
  critic_constraint existed (today the default is lagrangian), and lambda
  had no ceiling before critic_lambda_max, its step did not follow the
  learning rate before critic_lambda_follows_lr, and it had no proportional
  term before critic_lambda_kp."""
  objective = saved.get("objective") if isinstance(saved, dict) else None
  if not isinstance(objective, dict):
    return
  objective.setdefault("critic_lambda_max", math.inf)
  objective.setdefault("critic_lambda_follows_lr", False)
  objective.setdefault("critic_lambda_kp", 0.0)
  if objective.get("critic_target") is None:
    objective["critic_target"] = critics.NO_TARGET
  elif objective["critic_target"] != critics.NO_TARGET:
    objective.setdefault("critic_constraint", "hinge")


def _drop_removed_fields(saved, path: str) -> None:
  """Removes REMOVED_FIELDS from a saved config, with one warning naming
  those it held."""
  dropped = []
  for dotted in REMOVED_FIELDS:
    holder, name = _removed_field(saved, dotted) if isinstance(
        saved, dict) else (None, None)
    if isinstance(holder, dict) and name in holder:
      dropped.append(f"{dotted}={holder.pop(name)!r}")
  if dropped:
    logging.warning("%s: ignoring field(s) this version removed: %s", path,
                    ", ".join(dropped))


def load_config(run_dir: str) -> TrainConfig:
  """The TrainConfig of a run directory, read from its config.json.

  The nested sections (data, model, objective, eval) become their dataclasses
  again; fields the file lacks (runs older than the field) take their
  defaults; fields this version removed (REMOVED_FIELDS) are ignored with a
  warning. Raises errors.InputError (a ValueError) naming the file when it
  is missing, is not JSON, holds fields this version does not know, or
  describes a network this version no longer builds (RemovedNetwork).
  """
  path = os.path.join(run_dir, "config.json")
  if not os.path.isfile(path):
    why = ("no such directory" if not os.path.isdir(run_dir)
           else "the directory holds no config.json")
    raise errors.InputError(f"{path} not found ({why}); a run directory is "
                            "the out_dir of a training run")
  try:
    with open(path, encoding="utf-8") as f:
      saved = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
    raise errors.InputError(
        f"{path} is not readable JSON: {error}") from None
  _refuse_removed_networks(saved, path)
  _drop_removed_fields(saved, path)
  _old_runs_no_target(saved)
  try:
    return _dataclass_from_dict(TrainConfig, saved)
  except (TypeError, ValueError) as error:
    raise errors.InputError(f"{path} does not match this version's "
                            f"TrainConfig: {error}") from None


def write_json(path: str, payload: dict) -> None:
  """Writes JSON atomically (write, then rename)."""
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def same_run(a: TrainConfig, b: TrainConfig) -> bool:
  """Whether two configs train the same run: equal, except in the ways a
  target is held when neither has a target (fields that then do nothing)."""
  def plain(config):
    o = config.objective
    if o.critic_target != critics.NO_TARGET:
      return config
    unused = {f: getattr(objective_lib.ObjectiveConfig, f) for f in (
        "critic_constraint", "critic_lambda_step", "critic_bound_rate",
        "critic_lambda_max", "critic_lambda_kp", "critic_lambda_follows_lr")}
    return dataclasses.replace(config,
                               objective=dataclasses.replace(o, **unused))
  return plain(a) == plain(b)


# Config sections that must match to resume from an existing run directory.
RESUME_KEYS = ("data", "model", "critic", "critic_side", "num_negatives",
               "batch_size", "optimizer", "aggressive")
# Nested fields shown by their flag's name where it differs from the field's.
_FLAG_NAMES = {"data.name": "dataset", "data.seed": "data_seed",
               "model.name": "model"}


def _differences(key: str, mine, saved) -> list[str]:
  """"<flag> <mine> vs <saved>" for each field of `key` that differs."""
  if isinstance(mine, dict) and isinstance(saved, dict):
    out = []
    for name in sorted(set(mine) | set(saved)):
      a, b = mine.get(name), saved.get(name)
      if key == "data" and name == "download":   # not the data itself
        continue
      if key == "data" and name in data_lib.PATH_FIELDS:  # as absolute paths
        a, b = (os.path.abspath(v) if isinstance(v, str) else v
                for v in (a, b))
      if a != b:
        flag = _FLAG_NAMES.get(f"{key}.{name}", name)
        out.append(f"{flag} {a} vs {b}")
    return out
  return [] if mine == saved else [f"{key} {mine} vs {saved}"]


class RunMismatch(errors.InputError):
  """The run directory holds another run (runners name --out_dir)."""


def check_resumable(out_dir: str, config_dict: dict) -> None:
  """Refuses to resume a run directory whose run differs in RESUME_KEYS:
  RunMismatch (an errors.InputError) naming every field that differs with
  both values, this
  config's first ("latent_dim 16 vs 8"), and its config.json (also when that
  file cannot be read as a config of this version). Data paths compare as
  absolute paths."""
  path = os.path.join(out_dir, "config.json")
  if not os.path.exists(path):
    return
  saved = dataclasses.asdict(load_config(out_dir))
  sections, diffs = [], []
  for key in RESUME_KEYS:
    found = _differences(key, config_dict.get(key), saved.get(key))
    if found:
      sections.append(key)
      diffs += found
  if diffs:
    raise RunMismatch(
        f"{out_dir} holds a run with a different {', '.join(sections)}: "
        f"{', '.join(diffs)} (this command vs {path}); pass a new --out_dir "
        f"or delete the old run")
