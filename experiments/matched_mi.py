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
             their shortcut baselines; --split=valid and --split=test_best
             (the best checkpoint) read the matched points only.
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

import tf_cvae_runners  # noqa: F401, I001  first: TensorFlow starts quietly
from tf_cvae_runners import launch

from absl import flags
from absl import logging
import keras
import numpy as np

from tf_cvae import data as data_lib
from tf_cvae import errors
from tf_cvae import methods as methods_lib
from tf_cvae.models import registry
from tf_cvae.trained import restore
from tf_cvae.training import build
from tf_cvae.training import config as config_lib
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
  # The report's probe columns, (metrics key, header, digits), the first
  # plotted; and the shortcut baselines beside them, (key, what, digits).
  probes: tuple
  shortcuts: tuple


TEXT_PROBES = (("probe_r2_z", "probe R² z", 2),
               ("probe_r2", "probe R² means", 2),
               ("probe_r2_z_beyond_length", "R² z beyond length", 2))
TEXT_SHORTCUTS = (("probe_r2_length", "probe R² of the length alone", 2),
                  ("length_only_mi", "MI of a code holding only the length",
                   2))
LABEL_PROBES = (("probe_acc_z_alphabet", "alphabet acc. z", 3),
                ("probe_acc_alphabet", "alphabet acc. means", 3),
                ("probe_acc_z_character", "character acc. z", 3))
LABEL_SHORTCUTS = (
    ("probe_acc_alphabet_majority", "alphabet accuracy of the majority class",
     3),
    ("probe_acc_alphabet_chance", "alphabet chance (1 / alphabets)", 3),
    ("probe_acc_character_majority",
     "character accuracy of the majority class", 3),
    ("probe_acc_character_chance", "character chance (1 / characters)", 3))


SETUPS = {
    # 10,000 sentences of 4-20 words from a 2-d latent; the size at which
    # the plain VAE collapses; 12 epochs (past the curves' knee).
    "synthetic_text": Setup(
        data_lib.DataConfig(name="synthetic_text"),
        registry.ModelConfig(embed_dim=64, hidden_dim=128, latent_dim=16,
                             decoder_dropout=0.0),
        batch_size=32, epochs=12, seeds=5,
        measure=evaluation.EvalConfig(iw_samples=500, iw_chunk_size=100,
                                      iw_report=(20, 100), max_examples=500,
                                      text_batching="exact"),
        probes=TEXT_PROBES, shortcuts=TEXT_SHORTCUTS),
    # Omniglot as the data folder holds it (the local archive "background
    # small 1": 2,176 / 272 / 272 images of 5 alphabets, 136 characters), a
    # small PixelCNN decoder; 30 epochs.
    "omniglot": Setup(
        data_lib.DataConfig(name="omniglot"),
        registry.ModelConfig(name="pixelcnn", latent_dim=32,
                             resnet_channels=16, pixelcnn_layers=4,
                             pixelcnn_channels=16),
        batch_size=50, epochs=30, seeds=3,
        measure=evaluation.EvalConfig(iw_samples=500, iw_chunk_size=50,
                                      iw_report=(20, 100),
                                      max_examples=500),
        probes=LABEL_PROBES, shortcuts=LABEL_SHORTCUTS),
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
                  (0.05, 0.1, 0.25, 0.5)),
    "bn_vae": ("bn_vae", "model.bn_gamma", (0.2, 0.35, 0.5, 0.7, 1.0)),
    "bn_vae_hybrid": ("bn_vae_hybrid", "objective.critic_target", (2.0, 3.0)),
    "pretrain_free_bits": ("pretrain_free_bits", "objective.free_bits",
                           (0.05, 0.1, 0.25, 0.5)),
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

  def done(self, point: Point, what: str) -> dict | None:
    """The saved `what` ("train" or "test") of a point, or None."""
    return self.done_named(point.name, what)

  def done_named(self, name: str, what: str) -> dict | None:
    path = os.path.join(self.results_dir, f"{name}.{what}.json")
    if not os.path.exists(path):
      return None
    with open(path, encoding="utf-8") as f:
      return json.load(f)

  def _save(self, point: Point, what: str, payload: dict) -> None:
    config_lib.write_json(
        os.path.join(self.results_dir, f"{point.name}.{what}.json"), payload)

  def train(self, point: Point) -> dict:
    """Trains a point (resuming its run directory); returns its summary:
    the last validation's MI, KL, AU and negative ELBO, steps, seconds."""
    summary = self.done(point, "train")
    if summary is not None:
      return summary
    config = config_of(self.name, point, self.runs_dir)
    logging.info("training %s/%s", self.name, point.name)
    keras.backend.clear_session()
    try:
      results = train.run(config)
    except errors.TrainingError as error:     # recorded, not retried
      logging.warning("%s/%s: %s", self.name, point.name, error)
      summary = dict(method=point.method, knob=point.knob, seed=point.seed,
                     run_dir=config.out_dir, failed=str(error))
      self._save(point, "train", summary)
      return summary
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

  def measure(self, point: Point, split: str = "test") -> dict:
    """The metrics of a trained point's last weights on `split` ("test", or
    "valid": what a choice between methods may read), or of its best
    checkpoint (lowest validation negative ELBO) on test ("test_best");
    cached."""
    metrics = self.done(point, split)
    if metrics is not None:
      return metrics
    run_dir = self.done(point, "train")["run_dir"]
    keras.backend.clear_session()
    run = restore.restore_run(run_dir, "best" if split == "test_best"
                              else "last", with_data=True)
    config = dataclasses.replace(self.setup.measure,
                                 split=split.removesuffix("_best"),
                                 seed=point.seed)
    metrics = evaluation.evaluate(run.vae, run.critic, run.dataset, config)
    self._save(point, split, metrics)
    return metrics

  def calibration_points(self, methods) -> list[Point]:
    points = []
    for method in methods:
      values = KNOBS[method][2] or (None,)
      points += [Point(method, value, 0) for value in values]
    return points

  def choose(self, method: str, level: float) -> float | None:
    """The knob whose seed-0 validation MI lands at `level`: a calibrated
    value within TOLERANCE of it, else linear in the knob between the two
    calibrated values around it, else None (the method cannot reach it)."""
    values = KNOBS[method][2]
    readings = []
    for value in values:
      summary = self.done(Point(method, value, 0), "train")
      if summary is None:
        raise ValueError(f"{method} at {value} is not calibrated yet")
      if "failed" not in summary:
        readings.append((value, summary["valid_mi"]))
    if not readings:                  # every calibration run failed
      return None
    # A calibrated value already within the tolerance is matched: its seed
    # 0 is reused (interpolating would cost a run and land no closer).
    nearest = min(readings, key=lambda r: abs(r[1] - level))
    if abs(nearest[1] - level) <= TOLERANCE:
      return nearest[0]
    for (k0, m0), (k1, m1) in zip(readings, readings[1:]):
      if min(m0, m1) <= level <= max(m0, m1) and m0 != m1:
        return float(k0 + (level - m0) * (k1 - k0) / (m1 - m0))
    return None

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

  def measured_points(self, methods, levels, seeds, split) -> list[Point]:
    """What the measure stage reads on `split`: on test the calibration
    (the figure's lines) then the matched points; on valid and test_best
    the matched points alone (the level tables; the calibration's
    validation reading is taken when it trains)."""
    points = self.calibration_points(methods) if split == "test" else []
    try:
      points += self.matched_points(methods, levels, seeds)
    except ValueError:
      pass                          # not calibrated yet: nothing matched
    return list(dict.fromkeys(points))


def _mean_se(values) -> tuple[float, float]:
  """(mean, standard error over seeds; nan with one value) of the finite
  values."""
  values = np.asarray([v for v in values if v is not None and np.isfinite(v)])
  if not len(values):
    return math.nan, math.nan
  se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else (
      math.nan)
  return float(values.mean()), float(se)


def _cell(mean: float, se: float, digits: int = 2) -> str:
  if math.isnan(mean):
    return "-"
  if math.isnan(se):
    return f"{mean:.{digits}f}"
  return f"{mean:.{digits}f} ± {se:.{digits}f}"


# The report's test columns before the setup's probes: (key, header, digits).
COLUMNS = (("nll", "IW-NLL (500)", 2), ("mi", "MI", 2), ("kl", "KL", 2),
           ("au", "AU", 1), ("z_reliance", "z reliance", 2))


def calibration_table(study: Study, methods) -> str:
  """Markdown: each calibrated point's validation readings (seed 0)."""
  lines = ["| method | knob | valid MI | valid KL | valid AU | valid -ELBO "
           "| steps | train s |", "|---|---|---|---|---|---|---|---|"]
  for point in study.calibration_points(methods):
    s = study.done(point, "train")
    if s is None:
      continue
    knob = "" if point.knob is None else f"{point.knob:g}"
    if "failed" in s:
      lines.append(f"| {point.method} | {knob} | failed: "
                   f"{s['failed'].split(';')[0]} |||||||")
      continue
    lines.append(
        f"| {point.method} | {knob} | {s['valid_mi']:.2f} | "
        f"{s['valid_kl']:.2f} | {s['valid_au']:.0f} | "
        f"{s['valid_rec'] + s['valid_kl']:.2f} | {s['steps']} | "
        f"{s['train_seconds']:.0f} |")
  return "\n".join(lines)


def calibration_test_table(study: Study, methods) -> str:
  """Markdown: seed 0 of each calibrated knob on the test split, beside its
  validation MI (one seed: the shape of each method's curve, no interval)."""
  vae = study.done(Point("vae", None, 0), "test")
  probes = study.setup.probes
  header = ["method", "knob", "valid MI", "test MI", "IW-NLL (500)",
            "vs VAE"] + [h for _, h, _ in probes] + ["z reliance", "AU"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for point in study.calibration_points(methods):
    train_summary, test = study.done(point, "train"), study.done(point, "test")
    if not train_summary or not test or "failed" in train_summary:
      continue
    knob = "" if point.knob is None else f"{point.knob:g}"
    delta = (f"{100 * (test['nll'] / vae['nll'] - 1):+.2f}%" if vae
             else "-")
    cell = lambda key, digits=2: ("-" if test.get(key) is None
                                  else f"{test[key]:.{digits}f}")
    cells = [point.method, knob, f"{train_summary['valid_mi']:.2f}",
             cell("mi"), cell("nll"), delta]
    cells += [cell(key, digits) for key, _, digits in probes]
    cells += [cell("z_reliance"), f"{test['au']:.0f}"]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def level_table(study: Study, methods, level: float | None,
                seeds: int, split: str = "test") -> str:
  """Markdown: `split` metrics (mean ± s.e. over seeds) of every method at a
  level's chosen knob (knob-less methods as they land), with the NLL
  against the VAE's, paired by seed, and the training time against it."""
  vae = {p.seed: (study.done(p, split), study.done(p, "train"))
         for p in (Point("vae", None, s) for s in range(seeds))}
  columns = COLUMNS + study.setup.probes
  header = ["method", "knob", "seeds", "ΔNLL vs VAE (%)"] + [
      c[1] for c in columns] + ["time vs VAE"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for method in methods:
    knob = None
    if KNOBS[method][1] is not None:
      try:
        knob = study.choose(method, level)
      except ValueError:
        lines.append(f"| {method} | not calibrated yet | "
                     + "| " * (len(header) - 2))
        continue
      if knob is None:
        lines.append(f"| {method} | no calibrated value reaches {level:g} "
                     "nats | "
                     + "| " * (len(header) - 2))
        continue
      knob = float(f"{knob:.3g}")
    rows = [(p.seed, study.done(p, split), study.done(p, "train"))
            for p in (Point(method, knob, s) for s in range(seeds))]
    rows = [r for r in rows if r[1] is not None]
    if not rows:
      lines.append(f"| {method} | {'' if knob is None else f'{knob:g}'} | "
                   "0 measured | " + "| " * (len(header) - 3))
      continue
    delta = [100 * (t["nll"] / vae[s][0]["nll"] - 1) for s, t, _ in rows
             if vae.get(s, (None,))[0] is not None]
    time_ratio = [tr["train_seconds"] / vae[s][1]["train_seconds"]
                  for s, _, tr in rows if vae.get(s, (None,))[0] is not None]
    cells = [method, "" if knob is None else f"{knob:g}", str(len(rows)),
             _cell(*_mean_se(delta))]
    cells += [_cell(*_mean_se([t.get(key) for _, t, _ in rows]), digits)
              for key, _, digits in columns]
    cells.append(_cell(*_mean_se(time_ratio)) + "x")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def baselines_line(study: Study, seeds: int) -> str:
  """The shortcut baselines and the noise floor, from the VAE's test runs."""
  tests = [study.done(Point("vae", None, s), "test") for s in range(seeds)]
  tests = [t for t in tests if t]
  if not tests:
    return ""
  parts = []
  for key, what, digits in study.setup.shortcuts + (
      ("mi_noise_hi", "MI noise floor (97.5%)", 2),
      ("log_k", "size-weighted log K of the test batches", 2)):
    mean, se = _mean_se([t.get(key) for t in tests])
    if not math.isnan(mean):
      parts.append(f"{what}: {_cell(mean, se, digits)}")
  return "Beside every row: " + "; ".join(parts) + "."


def curves(study: Study, methods) -> dict:
  """{method: [(knob, {seed: test metrics}), ...]} of every measured run,
  calibration and matched alike, knobs in increasing order."""
  found = {}
  for name in sorted(os.listdir(study.results_dir)):
    if not name.endswith(".test.json"):
      continue
    with open(os.path.join(study.results_dir, name), encoding="utf-8") as f:
      test = json.load(f)
    summary = study.done_named(name[:-len(".test.json")], "train")
    if not summary or summary["method"] not in methods:
      continue
    found.setdefault(summary["method"], {}).setdefault(
        summary["knob"], {})[summary["seed"]] = test
  return {m: sorted(k.items(), key=lambda kv: -1 if kv[0] is None else kv[0])
          for m, k in found.items()}


def figure(study: Study, methods, path: str) -> None:
  """PNG: the NLL against the VAE's and the setup's first probe (on z
  samples), each against the test MI; a point per knob (mean ± s.e. over
  its seeds), a line per method; 1% NLL and the probe's shortcut baselines
  (the VAE runs' readings) beside them."""
  import matplotlib  # noqa: I001  an extra (tf_cvae[plots]); report only
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt
  data = curves(study, methods)
  probe_key, probe_header, _ = study.setup.probes[0]
  vae = dict(data.get("vae", [(None, {})])[0][1])
  vae_nll = np.mean([t["nll"] for t in vae.values()]) if vae else math.nan
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  for method, knobs in data.items():
    xs, nll, probe = [], [], []
    for _, seeds in knobs:
      tests = list(seeds.items())
      xs.append(_mean_se([t["mi"] for _, t in tests]))
      nll.append(_mean_se([100 * (t["nll"] / vae[s]["nll"] - 1) if s in vae
                           else 100 * (t["nll"] / vae_nll - 1)
                           for s, t in tests]))
      probe.append(_mean_se([t.get(probe_key) for _, t in tests]))
    for ax, ys in ((axes[0], nll), (axes[1], probe)):
      ax.errorbar([x[0] for x in xs], [y[0] for y in ys],
                  xerr=[0 if math.isnan(x[1]) else x[1] for x in xs],
                  yerr=[0 if math.isnan(y[1]) else y[1] for y in ys],
                  marker="o", capsize=2, label=method)
  axes[0].axhline(1.0, color="grey", ls=":", lw=1)
  axes[0].set(xlabel="test MI (nats)", ylabel="IW-NLL vs the VAE (%)",
              title="cost")
  family = probe_key.replace("_z", "", 1)    # the probe's own baselines
  shortcuts = [s for s in study.setup.shortcuts if s[0].startswith(family)]
  for (key, what, _), style in zip(shortcuts, ("--", ":")):
    level = _mean_se([t.get(key) for t in vae.values()])[0]
    if not math.isnan(level):
      axes[1].axhline(level, color="grey", ls=style, lw=1, label=what)
  axes[1].set(xlabel="test MI (nats)", ylabel=probe_header,
              title="information a linear probe finds")
  axes[1].legend(fontsize=8, ncol=2)
  fig.suptitle(f"{study.name}: mean ± s.e. over seeds, test split")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def report(study: Study, methods, levels, seeds: int) -> str:
  """The setup's Markdown report: calibration, then a table per level."""
  out = [f"## {study.name}: every method at matched MI", "",
         "![NLL and probe against MI](matched_mi.png)", "",
         "Calibration (seed 0, validation split, last weights):", "",
         calibration_table(study, methods), "",
         "The same runs on the test split (seed 0, last weights; at most "
         "500 test examples, 500 importance samples"
         + ("; in exact-length batches"
            if study.setup.measure.text_batching == "exact" else "")
         + "; the probes fit on the training codes):",
         "",
         calibration_test_table(study, methods), ""]
  for level in levels:
    out += [f"### MI at about {level:g} nats (knobs chosen on validation; "
            f"test split, last weights, mean ± s.e. over seeds)", "",
            level_table(study, methods, level, seeds), ""]
    if any(f.endswith(".valid.json") for f in os.listdir(study.results_dir)):
      valid = level_table(study, methods, level, seeds, "valid")
      out += ["The same points on the validation split (at most 500 "
              "examples, the reading a choice between methods may use):",
              "", valid, ""]
    if any(f.endswith(".test_best.json")
           for f in os.listdir(study.results_dir)):
      best = level_table(study, methods, level, seeds, "test_best")
      out += ["The same points' best checkpoints (lowest validation "
              "negative ELBO) on the test split, against the VAE's best:", "",
              best, ""]
  out += [baselines_line(study, seeds), ""]
  return "\n".join(out)


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
flags.DEFINE_enum("split", "test", ["test", "valid", "test_best"],
                  "What the measure stage reads: the last weights on test "
                  "or valid, or the best checkpoint on test.")
flags.DEFINE_bool("dry_run", False, "Print what is left, and its time.")


def main(argv):
  del argv
  unknown = sorted(set(FLAGS.methods) - set(KNOBS))
  if unknown:
    sys.exit(f"error: --methods: unknown {', '.join(unknown)}; known: "
             f"{', '.join(KNOBS)}")
  study = Study(FLAGS.setup, FLAGS.runs_dir, FLAGS.results_dir)
  seeds = FLAGS.seeds or study.setup.seeds
  if FLAGS.stage in ("calibrate", "report"):
    points = study.calibration_points(FLAGS.methods)
  elif FLAGS.stage == "matched":
    points = study.matched_points(FLAGS.methods, LEVELS, seeds)
  else:
    points = study.measured_points(FLAGS.methods, LEVELS, seeds, FLAGS.split)
  if FLAGS.dry_run:
    left = [p for p in points if not study.done(p, "train")]
    print(f"{FLAGS.setup} {FLAGS.stage}: {len(points) - len(left)} of "
          f"{len(points)} runs done; left: {len(left)}, about "
          f"{_estimate(study, points) / 3600:.1f} h of training")
    for point in left:
      print("  " + point.name)
    return
  if FLAGS.stage == "report":
    text = report(study, FLAGS.methods, LEVELS, seeds)
    path = os.path.join(study.results_dir, "REPORT.md")
    with open(path, "w", encoding="utf-8") as f:
      f.write(text)
    figure(study, FLAGS.methods, os.path.join(study.results_dir,
                                              "matched_mi.png"))
    print(text)
    return
  started = time.time()
  for point in points:
    if FLAGS.stage in ("calibrate", "matched"):
      study.train(point)
    elif FLAGS.stage == "measure" and "failed" not in (
        study.done(point, "train") or {"failed": 1}):
      study.measure(point, FLAGS.split)
  logging.info("%s %s done in %.0f s", FLAGS.setup, FLAGS.stage,
               time.time() - started)


if __name__ == "__main__":
  launch.run(main)          # --help exits 0; a bad flag is one error line
