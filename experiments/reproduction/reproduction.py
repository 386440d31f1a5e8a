"""The reproduction as data: setups x methods x seeds x knobs, run once each.

Three parts, each a list of `Run`s (see `plan`):
  table: the paper's methods (experiments.methods) on each setup, seeds;
  sweep: one knob of a method at a time (experiments.families: lambda and
         the baselines' knobs, or the critics' targets in nats), seed 0 by
         default;
  k:     the self critic with K = batch size, and K = batch + a queue.
Every run is one train.run into <out_dir>/<setup>/<name>/seed<k>, where the
name spells the run's config (`run_name`), so a run that two parts share is
trained once, and a finished run (metrics.json) is read, not trained again.
A finished run is also read on the validation split (what the defaults are
chosen by) and, for seed 0 of a table run read with fewer importance
samples, at 20, 100 and 500 samples (how far its count is from converged);
both readings are cached in the run's directory.
"""

import dataclasses
import json
import math
import os
import time

from absl import logging
import keras

from experiments.reproduction import families as families_lib
from tf_cvae import critics
from tf_cvae import data as data_lib
from tf_cvae import errors
from tf_cvae import methods as methods_lib
from tf_cvae import objective as objective_lib
from tf_cvae.models import registry
from tf_cvae.trained import restore
from tf_cvae.training import config as config_lib
from tf_cvae.training import evaluation
from tf_cvae.training import train

PARTS = ("table", "sweep", "k")
CONVERGENCE_FILE = "metrics_iw_convergence.json"
VALID_FILE = "metrics_valid.json"
# The importance samples the IW convergence reading takes as converged.
CONVERGED_SAMPLES = 500


@dataclasses.dataclass(frozen=True)
class Setup:
  """A data set, a model and a budget: everything of a run but the method."""
  dataset: str                  # ptb, or a data registry name
  model: dict                   # registry.ModelConfig fields
  batch_size: int
  max_steps: int | None         # None: train `epochs` under the protocol
  epochs: int
  eval: dict                    # evaluation.EvalConfig fields
  valid_examples: int | None = None
  paper: str | None = None      # the paper's data set to compare with
  extra: tuple = ()             # other TrainConfig fields, as (name, value)
  skip: tuple = ()              # table methods not run here (cost, or
                                # a text-only question)
  seeds: int | None = None      # table seeds at most here (its cost)


@dataclasses.dataclass(frozen=True)
class Scale:
  """Every size of the reproduction at one scale (cpu, paper, smoke)."""
  setups: dict                  # name -> Setup
  table: tuple                  # setups of the table part
  methods: tuple                # table methods (methods.METHODS keys)
  seeds: int
  sweep: tuple                  # setups of the sweep part
  k: tuple                      # setups of the K part
  method_seeds: tuple = ()      # (method, seeds at most), for costly ones
  lambdas: tuple = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0)
  lambda_subset: tuple = (1.0, 3.0, 5.0, 10.0)
  anneal_fractions: tuple = (0.25, 0.5, 1.0)
  betas: tuple = (0.1, 0.2, 0.5, 0.8)
  floors: tuple = (0.05, 0.1, 0.25, 0.5)
  batch_sizes: tuple = (8, 16, 32, 64, 128)
  queue_sizes: tuple = (0, 32, 96, 224, 480)
  k_lambda: float = 3.0
  long_factor: int = 3
  sweep_kind: str = "lambda"    # lambda | target (families.sweep_families)
  targets: tuple = (1.0, 2.0, 3.0)      # nats, the target sweep's values
  target_start: float = 1.0     # lambda where the multiplier starts
  lambda_steps: tuple = (0.003, 0.03)   # the multiplier's other steps
  sweep_seeds: int = 1          # seeds of the sweep part


@dataclasses.dataclass
class Run:
  """One planned train.run: where it belongs in the report, and its config."""
  part: str                     # table | sweep | k
  setup: str                    # a Scale.setups key
  family: str                   # table: the method; sweep / k: Family.label
  knob: float | None            # the family's knob value (None: table)
  seed: int
  config: train.TrainConfig


def base_config(setup: Setup, seed: int, data_dir: str) -> train.TrainConfig:
  """The plain VAE of `setup` (out_dir unset)."""
  data_dir = os.path.abspath(data_dir)
  if setup.dataset == "ptb":
    # Train on 90% of ptb.valid, validate on its other 10%, test on ptb.test.
    ptb = lambda split: os.path.join(data_dir, "ptb", f"ptb.{split}.txt")
    data = data_lib.DataConfig(name="text", train_file=ptb("valid"),
                               valid_file=ptb("valid"), test_file=ptb("test"),
                               valid_from_train=0.1)
  else:
    data = data_lib.DataConfig(name=setup.dataset, data_dir=data_dir)
  return train.TrainConfig(
      data=data, model=registry.ModelConfig(**setup.model),
      eval=evaluation.EvalConfig(seed=seed, **setup.eval),
      batch_size=setup.batch_size, max_steps=setup.max_steps,
      epochs=setup.epochs, seed=seed, valid_examples=setup.valid_examples,
      **dict(setup.extra))


def _multiplier_name(o) -> str:
  """How lambda follows a target, for run_name: "" for a hinge, else
  dual<step>, then max<ceiling> (when finite), p<proportional gain> (when
  not 0: the default's 1 is spelled, so runs from before it was the default
  keep their names) and lr (step follows the learning rate)."""
  if o.critic_constraint == "hinge":
    return ""
  return (f"dual{o.critic_lambda_step:g}"
          + (f"max{o.critic_lambda_max:g}" if math.isfinite(
              o.critic_lambda_max) else "")
          + (f"p{o.critic_lambda_kp:g}" if o.critic_lambda_kp else "")
          + ("lr" if o.critic_lambda_follows_lr else ""))


def run_name(config: train.TrainConfig, base: train.TrainConfig) -> str:
  """A directory name spelling how `config` differs from the plain VAE `base`
  (equal configs, equal names): e.g. self_w3_t1, beta0.5."""
  o, parts = config.objective, []
  if config.aggressive:
    parts.append("aggressive")
  if config.critic != "none" or config.critic_side != "inference":
    side = {"inference": "", "model": "model", "both": "+model"}
    critic = "" if config.critic == "none" else config.critic
    parts += [critic + side[config.critic_side], f"w{o.critic_weight:g}"]
    if o.critic_target != critics.NO_TARGET:   # t2 (hinge), t1dual0.01p1lr
      parts.append(f"t{o.critic_target:g}" + _multiplier_name(o))
    if o.critic_warmup_steps:
      parts.append(f"warm{o.critic_warmup_steps}")
    if config.num_negatives:
      parts.append(f"q{config.num_negatives}")
  if o.kl_weight != 1.0:
    parts.append(f"beta{o.kl_weight:g}")
  if o.kl_anneal_steps:
    parts.append(f"anneal{o.kl_anneal_steps}")
  if o.free_bits:
    parts.append(f"fb{o.free_bits:g}")
  if config.batch_size != base.batch_size:
    parts.append(f"b{config.batch_size}")
  if (config.max_steps, config.epochs) != (base.max_steps, base.epochs):
    parts += [] if parts else ["vae"]
    parts.append(f"steps{config.max_steps}" if config.max_steps
                 else f"epochs{config.epochs}")
  return "_".join(parts) or "vae"


_OBJECTIVE_FIELDS = set(objective_lib.ObjectiveConfig.__dataclass_fields__)


def _run(part: str, setup_name: str, scale: Scale, method: str, seed: int,
         data_dir: str, out_dir: str, changes: dict, family: str,
         knob=None, steps_factor: int = 1) -> Run:
  """The Run of `method` plus `changes` (field -> value, objective fields
  by name) on a setup, its directory named by run_name."""
  plain = base_config(scale.setups[setup_name], seed, data_dir)
  base = dataclasses.replace(
      plain, epochs=plain.epochs * steps_factor,
      max_steps=plain.max_steps and plain.max_steps * steps_factor)
  objective = {k: v for k, v in changes.items() if k in _OBJECTIVE_FIELDS}
  top = {k: v for k, v in changes.items() if k not in _OBJECTIVE_FIELDS}
  config = methods_lib.method_config(base, method,
                                     dict(top, objective=objective))
  config = dataclasses.replace(config, out_dir=os.path.join(
      out_dir, setup_name, run_name(config, plain), f"seed{seed}"))
  return Run(part, setup_name, family, knob, seed, config)


def _family_runs(part, scale, setup_names, families, data_dir, out_dir,
                 seeds: int = 1):
  """Every point of `families` on `setup_names`, seed by seed (all of seed
  0 first)."""
  runs = []
  for seed in range(seeds):
    for name in setup_names:
      for family in families:
        for value in (getattr(scale, family.values) if family.values
                      else [None]):
          changes = dict(family.changes)
          if family.knob:
            changes[family.knob] = value
          runs.append(_run(part, name, scale, family.method, seed, data_dir,
                           out_dir, changes, family.label, value,
                           family.steps_factor))
  return runs


def plan(scale: Scale, parts=PARTS, seeds: int | None = None,
         data_dir: str | None = None, out_dir: str = "runs/reproduce"
         ) -> list[Run]:
  """Every run of `parts`: the table first, seed by seed (a partial table
  already has every method at seed 0); the sweep part at its
  scale.sweep_seeds, the K part at seed 0."""
  data_dir = data_dir or data_lib.default_data_dir()
  runs = []
  if "table" in parts:
    cap = dict(scale.method_seeds)
    for seed in range(scale.seeds if seeds is None else seeds):
      for name in scale.table:
        runs += [_run("table", name, scale, method, seed, data_dir, out_dir,
                      {}, method) for method in scale.methods
                 if method not in scale.setups[name].skip
                 and seed < min(cap.get(method, seed + 1),
                                scale.setups[name].seeds or seed + 1)]
  if "sweep" in parts:
    runs += _family_runs("sweep", scale, scale.sweep,
                         families_lib.sweep_families(scale), data_dir,
                         out_dir, scale.sweep_seeds)
  if "k" in parts:
    runs += _family_runs("k", scale, scale.k, families_lib.k_families(scale), data_dir,
                         out_dir)
  return runs


def read_finished(config: train.TrainConfig) -> dict | None:
  """The record of a finished run directory (its metrics and history), or
  None. Raises errors.InputError when the directory holds another config."""
  path = os.path.join(config.out_dir, "metrics.json")
  if not os.path.exists(path):
    return None
  saved = dataclasses.replace(config_lib.load_config(config.out_dir),
                              out_dir=config.out_dir)
  if not config_lib.same_run(saved, config):
    raise errors.InputError(
        f"{config.out_dir} holds a finished run of another config; delete it "
        "or pass another out_dir")
  with open(path, encoding="utf-8") as f:
    metrics = json.load(f)
  history, history_path = [], os.path.join(config.out_dir, "history.jsonl")
  if os.path.exists(history_path):
    with open(history_path, encoding="utf-8") as f:
      history = [json.loads(line) for line in f if line.strip()]
  return {"metrics": metrics, "history": history}


def execute(runs: list[Run], dry_run: bool = False) -> dict:
  """Trains every run not yet finished; returns out_dir -> record: {"metrics",
  "history", "status": done | skipped | failed | planned (dry_run), "error"}.
  A diverged run (errors.TrainingError) is recorded as failed, the rest go
  on; other errors propagate (the next call goes on from finished runs)."""
  records, total = {}, len({r.config.out_dir for r in runs})
  for run in runs:
    out = run.config.out_dir
    if out in records:
      continue
    record = read_finished(run.config)
    if record is not None or dry_run:
      records[out] = dict(record or {}, status="skipped" if record else
                          "planned")
      if record is not None:   # a dry run reads cached readings only
        records[out].update(readings(run, measure=not dry_run))
      continue
    logging.info("run %d of %d: %s", len(records) + 1, total, out)
    started = time.time()
    try:
      train.run(run.config)
      record = dict(read_finished(run.config), status="done")
      record.update(readings(run))
    except errors.TrainingError as error:
      logging.error("%s failed: %s", out, error)
      record = {"status": "failed", "error": str(error)}
    record["wall_seconds"] = time.time() - started
    records[out] = record
    keras.backend.clear_session()
  return records



def _cached(path: str, measure) -> dict | None:
  """The JSON at `path`, else measure() written there (measure None: None)."""
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  if measure is None:
    return None
  results = measure()
  config_lib.write_json(path, results)
  keras.backend.clear_session()
  return results


def iw_convergence(run, examples: int = 500,
                   samples: int = CONVERGED_SAMPLES,
                   measure_it: bool = True) -> dict | None:
  """{"nll_iw20", "nll_iw100", "nll_iw500" (nats), "num_examples"} of the
  last weights on a fixed subset of `examples` test examples (at most the
  run's own test subset, eval.max_examples)."""
  def measure():
    restored = restore.restore_run(run.config.out_dir, "last")
    dataset, config = restored.dataset, restored.config
    subset = min(examples, config.eval.max_examples or examples)
    results = evaluation.evaluate(
        restored.vae, restored.critic, dataset, dataclasses.replace(
            config.eval, batch_size=config.batch_size, seed=config.seed,
            iw_samples=samples, iw_report=(20, 100), max_examples=subset,
            probe=False))
    return {k: results[k] for k in ("nll_iw20", "nll_iw100", "num_examples")
            } | {f"nll_iw{samples}": results["nll"]}
  return _cached(os.path.join(run.config.out_dir, CONVERGENCE_FILE),
                 measure if measure_it else None)


def validation(run, measure_it: bool = True) -> dict | None:
  """The last weights' metrics on the validation split (the run's evaluation
  settings: IW samples, seed; at most config.valid_examples examples), in
  nats, as evaluation.evaluate returns them."""
  def measure():
    restored = restore.restore_run(run.config.out_dir, "last")
    config = restored.config
    return evaluation.evaluate(
        restored.vae, restored.critic, restored.dataset, dataclasses.replace(
            config.eval, split="valid", batch_size=config.batch_size,
            seed=config.seed, iw_report=(),
            max_examples=config.valid_examples))
  return _cached(os.path.join(run.config.out_dir, VALID_FILE),
                 measure if measure_it else None)


def readings(run, measure: bool = True) -> dict:
  """A finished run's further readings: {"valid": ...} and, for seed 0,
  "iw_convergence" where cached or where the run is a table run read with
  fewer than CONVERGED_SAMPLES importance samples (so every table shows how
  far its count is from converged); with measure False, only those already
  cached. A directory shared by two parts reads the same."""
  out = {"valid": validation(run, measure)}
  if run.seed == 0:
    few_samples = (run.part == "table"
                   and run.config.eval.iw_samples < CONVERGED_SAMPLES)
    out["iw_convergence"] = iw_convergence(
        run, measure_it=measure and few_samples)
  return {k: v for k, v in out.items() if v is not None}
