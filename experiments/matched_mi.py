"""Every method at matched MI, judged by what no method trains on.

Three stages, each resumable (a finished run or measurement is read, not
done again):
  calibrate: seed 0 of each method at each value of its own knob (critic
             target, annealing length, cycles, free bits, BN scale); the
             validation MI (He et al.'s, at the training batch size) of the
             last weights says where each value lands;
  matched:   for each MI level (1 and 2 nats), the knob that lands there by
             interpolation on the validation MI, trained with every seed
             (aggressive training and the plain VAE have no knob: they land
             where they land);
  measure:   the last weights of every run, on the test split: IW-NLL,
             KL, MI, AU, z reliance, probes of the known latents beside
             their shortcut baselines.
The choice of a knob reads the validation split only. `--dry_run` prints
what is left and how long it should take (from the runs done so far).

  python experiments/matched_mi.py --setup=synthetic_text --dry_run
  python experiments/matched_mi.py --setup=synthetic_text --stage=calibrate
"""

import dataclasses
import functools
import json
import math
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np

from tf_cvae import data as data_lib
from tf_cvae.experiments import methods as methods_lib
from tf_cvae.models import registry
from tf_cvae.trained import restore
from tf_cvae.training import build
from tf_cvae.training import evaluation
from tf_cvae.training import train

STAGES = ("calibrate", "matched", "measure", "report")
LEVELS = (1.0, 2.0)           # nats of validation MI the knobs aim at
TOLERANCE = 0.3               # nats: a level is matched within this


@dataclasses.dataclass(frozen=True)
class Setup:
  """A data set, its networks and budget: a run of the plain VAE."""
  data: data_lib.DataConfig
  model: registry.ModelConfig
  batch_size: int
  epochs: int                   # the run's length (its max_steps)
  seeds: int                    # seeds at each matched point
  measure: evaluation.EvalConfig


SETUPS = {
    # 10,000 sentences of 4-20 words from a 2-d latent; the size at which
    # the plain VAE collapses; 12 epochs (past the curves' knee).
    "synthetic_text": Setup(
        data_lib.DataConfig(name="synthetic_text"),
        registry.ModelConfig(embed_dim=64, hidden_dim=128, latent_dim=16,
                             decoder_dropout=0.0),
        batch_size=32, epochs=12, seeds=5,
        measure=evaluation.EvalConfig(iw_samples=500, iw_chunk_size=100,
                                      iw_report=(20, 100),
                                      max_examples=500)),
    "omniglot": Setup(
        data_lib.DataConfig(name="omniglot"),
        registry.ModelConfig(name="pixelcnn", latent_dim=32,
                             resnet_channels=16, pixelcnn_layers=4,
                             pixelcnn_channels=16),
        batch_size=50, epochs=30, seeds=3,
        measure=evaluation.EvalConfig(iw_samples=500, iw_chunk_size=50,
                                      iw_report=(20, 100),
                                      max_examples=500)),
}

# method -> (registry method, knob as "section.field" or None, values).
# Step-count knobs (annealing, cycle length) are fractions of the run.
KNOBS = {
    "vae": ("vae", None, ()),
    "self": ("self_default", "objective.critic_target", (1.0, 2.0, 3.0)),
    "hybrid": ("hybrid_default", "objective.critic_target", (1.0, 2.0, 3.0)),
    "kl_annealing": ("kl_annealing", "objective.kl_anneal_steps",
                     (0.25, 0.5, 1.0)),
    "cyclical": ("cyclical", "objective.kl_cycle_steps", (0.5, 0.25, 0.125)),
    "free_bits": ("free_bits_0.25", "objective.free_bits",
                  (0.05, 0.1, 0.25)),
    "bn_vae": ("bn_vae", "model.bn_gamma", (0.2, 0.35, 0.5)),
    "pretrain_free_bits": ("pretrain_free_bits", "objective.free_bits",
                           (0.05, 0.1, 0.25)),
    "aggressive": ("aggressive", None, ()),
}


@dataclasses.dataclass(frozen=True)
class Point:
  """One training run: a method, its knob's value (None: no knob), a seed."""
  method: str
  knob: float | None
  seed: int

  @property
  def name(self) -> str:
    knob = "" if self.knob is None else f"_{self.knob:.4g}"
    return f"{self.method}{knob}_seed{self.seed}"


@functools.lru_cache(maxsize=None)
def run_steps(setup_name: str) -> int:
  """The setup's epochs in optimizer steps (every run's max_steps, so that
  fractions of the run are steps; the halving rule may stop it sooner)."""
  setup = SETUPS[setup_name]
  config = train.TrainConfig(data=setup.data, batch_size=setup.batch_size)
  dataset = data_lib.load(setup.data)
  return setup.epochs * build.steps_per_epoch(dataset, config)


def config_of(setup_name: str, point: Point,
              runs_dir: str) -> train.TrainConfig:
  """The TrainConfig of `point` on a setup, trained into runs_dir/name."""
  setup = SETUPS[setup_name]
  base = train.TrainConfig(
      data=setup.data, model=setup.model, batch_size=setup.batch_size,
      epochs=setup.epochs, max_steps=run_steps(setup_name), seed=point.seed,
      # The run's own test reading is skipped: `measure` reads it.
      eval=evaluation.EvalConfig(iw_samples=0, probe=False, seed=point.seed),
      out_dir=os.path.join(runs_dir, point.name))
  method, knob, _ = KNOBS[point.method]
  changes = {}
  if knob is not None:
    section, field = knob.split(".")
    changes[section] = {field: point.knob}
  return methods_lib.method_config(base, method, changes)


class Study:
  """The runs and measurements of one setup, kept as JSON in results_dir."""

  def __init__(self, setup_name: str, runs_dir: str, results_dir: str):
    self.name, self.setup = setup_name, SETUPS[setup_name]
    self.runs_dir = os.path.join(runs_dir, setup_name)
    self.results_dir = os.path.join(results_dir, setup_name)
    os.makedirs(self.results_dir, exist_ok=True)

  def _path(self, point: Point, what: str) -> str:
    return os.path.join(self.results_dir, f"{point.name}.{what}.json")

  def done(self, point: Point, what: str) -> dict | None:
    """The saved `what` ("train" or "test") of a point, or None."""
    path = self._path(point, what)
    if not os.path.exists(path):
      return None
    with open(path, encoding="utf-8") as f:
      return json.load(f)

  def _save(self, point: Point, what: str, payload: dict) -> None:
    path = self._path(point, what)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
      json.dump(payload, f, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)

  def train(self, point: Point) -> dict:
    """Trains a point (resuming its run directory); returns its summary:
    the last validation's MI, KL, AU and negative ELBO, steps, seconds."""
    summary = self.done(point, "train")
    if summary is not None:
      return summary
    config = config_of(self.name, point, self.runs_dir)
    logging.info("training %s/%s", self.name, point.name)
    keras.backend.clear_session()
    results = train.run(config)
    with open(os.path.join(config.out_dir, "history.jsonl"),
              encoding="utf-8") as f:
      last = [json.loads(line) for line in f][-1]
    summary = dict(
        method=point.method, knob=point.knob, seed=point.seed,
        run_dir=config.out_dir, steps=results["steps"],
        train_seconds=results["train_seconds"],
        seconds_per_step=results.get("seconds_per_step"),
        **{k: last[k] for k in last if k.startswith("valid_")})
    self._save(point, "train", summary)
    return summary

  def measure(self, point: Point) -> dict:
    """The test metrics of a trained point's last weights (cached)."""
    metrics = self.done(point, "test")
    if metrics is not None:
      return metrics
    run_dir = self.done(point, "train")["run_dir"]
    keras.backend.clear_session()
    run = restore.restore_run(run_dir, "last", with_data=True)
    config = dataclasses.replace(self.setup.measure, split="test",
                                 seed=point.seed)
    metrics = evaluation.evaluate(run.vae, run.critic, run.dataset, config)
    self._save(point, "test", metrics)
    return metrics

  def calibration_points(self, methods) -> list[Point]:
    points = []
    for method in methods:
      values = KNOBS[method][2] or (None,)
      points += [Point(method, value, 0) for value in values]
    return points

  def choose(self, method: str, level: float) -> float | None:
    """The knob whose seed-0 validation MI lands at `level` (linear in the
    knob between the two calibration values around it), None when no
    calibrated value comes within TOLERANCE of the level."""
    values = KNOBS[method][2]
    readings = []
    for value in values:
      summary = self.done(Point(method, value, 0), "train")
      if summary is None:
        raise ValueError(f"{method} at {value} is not calibrated yet")
      readings.append((value, summary["valid_mi"]))
    for (k0, m0), (k1, m1) in zip(readings, readings[1:]):
      if min(m0, m1) <= level <= max(m0, m1) and m0 != m1:
        return float(k0 + (level - m0) * (k1 - k0) / (m1 - m0))
    nearest = min(readings, key=lambda r: abs(r[1] - level))
    return nearest[0] if abs(nearest[1] - level) <= TOLERANCE else None

  def matched_points(self, methods, levels, seeds) -> list[Point]:
    """Every seed at each level's chosen knob (knob-less methods once)."""
    points = []
    for method in methods:
      if KNOBS[method][1] is None:
        points += [Point(method, None, s) for s in range(seeds)]
        continue
      for level in levels:
        knob = self.choose(method, level)
        if knob is not None:
          knob = float(f"{knob:.3g}")     # a readable, reusable value
          points += [Point(method, knob, s) for s in range(seeds)]
    return list(dict.fromkeys(points))


def _estimate(study: Study, points: list[Point]) -> float:
  """Seconds the points not yet trained should take, by the mean time of
  the same method's finished runs (else every finished run's)."""
  every = [json.load(open(os.path.join(study.results_dir, f)))
           for f in os.listdir(study.results_dir) if f.endswith(".train.json")]
  default = np.mean([s["train_seconds"] for s in every]) if every else 300.0
  total = 0.0
  for point in points:
    if study.done(point, "train"):
      continue
    same = [s["train_seconds"] for s in every if s["method"] == point.method]
    total += float(np.mean(same)) if same else default
  return total


FLAGS = flags.FLAGS
flags.DEFINE_enum("setup", "synthetic_text", list(SETUPS), "The setup.")
flags.DEFINE_enum("stage", "calibrate", list(STAGES), "What to do.")
flags.DEFINE_list("methods", list(KNOBS), "Methods (KNOBS keys).")
flags.DEFINE_integer("seeds", None, "Seeds at each matched point (default: "
                     "the setup's).", lower_bound=1)
flags.DEFINE_string("runs_dir", "runs/matched_mi", "Run directories.")
flags.DEFINE_string("results_dir", "results/matched_mi",
                    "Where each run's summary and test metrics are kept.")
flags.DEFINE_bool("dry_run", False, "Print what is left, and its time.")


def main(argv):
  del argv
  unknown = sorted(set(FLAGS.methods) - set(KNOBS))
  if unknown:
    sys.exit(f"error: --methods: unknown {', '.join(unknown)}; known: "
             f"{', '.join(KNOBS)}")
  study = Study(FLAGS.setup, FLAGS.runs_dir, FLAGS.results_dir)
  seeds = FLAGS.seeds or study.setup.seeds
  if FLAGS.stage == "calibrate":
    points = study.calibration_points(FLAGS.methods)
  else:
    points = study.matched_points(FLAGS.methods, LEVELS, seeds)
  if FLAGS.dry_run:
    left = [p for p in points if not study.done(p, "train")]
    print(f"{FLAGS.setup} {FLAGS.stage}: {len(points) - len(left)} of "
          f"{len(points)} runs done; left: {len(left)}, about "
          f"{_estimate(study, points) / 3600:.1f} h of training")
    for point in left:
      print("  " + point.name)
    return
  started = time.time()
  for point in points:
    if FLAGS.stage in ("calibrate", "matched"):
      study.train(point)
    elif FLAGS.stage == "measure" and study.done(point, "train"):
      study.measure(point)
  logging.info("%s %s done in %.0f s", FLAGS.setup, FLAGS.stage,
               time.time() - started)


if __name__ == "__main__":
  app.run(main)
