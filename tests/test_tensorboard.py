"""What a run writes for the researcher who watches it: TensorBoard's
extras, each epoch's wall time in history.jsonl, the checkpoint that
metrics.json measured, and the progress lines of the log."""

import collections
import glob
import json
import logging as std_logging
import os
import re

from absl import logging
import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import data as data_lib
from tf_cvae import objective
from tf_cvae.models import registry
from tf_cvae.training import evaluation
from tf_cvae.training import train

TINY_TEXT = registry.ModelConfig(embed_dim=16, hidden_dim=16, latent_dim=4,
                                 decoder_dropout=0.0)


class _Lines(std_logging.Handler):
  """Keeps the messages of the absl logger."""

  def __init__(self):
    super().__init__()
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


def _train(config) -> dict:
  """The run's out_dir, metrics, history (records), events ({tag: {step:
  (plugin, value)}}) and messages (of the log)."""
  lines, verbosity = _Lines(), logging.get_verbosity()
  logging.set_verbosity(logging.INFO)
  std_logging.getLogger("absl").addHandler(lines)
  try:
    metrics = train.run(config)
  finally:
    std_logging.getLogger("absl").removeHandler(lines)
    logging.set_verbosity(verbosity)
  with open(os.path.join(config.out_dir, "history.jsonl")) as f:
    history = [json.loads(line) for line in f]
  events = collections.defaultdict(dict)
  for path in glob.glob(os.path.join(config.out_dir, "tensorboard", "*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        events[value.tag][event.step] = (
            value.metadata.plugin_data.plugin_name,
            tf.make_ndarray(value.tensor))
  return dict(out_dir=config.out_dir, metrics=metrics, history=history,
              events=events, messages=lines.messages)


@pytest.fixture(scope="module")
def text_run(text_files, tmp_path_factory):
  """2 epochs of exact-length batches, a self
  critic with a hinge at 1 nat, beta annealed over 10 steps; logs every 3
  steps; reports the best checkpoint."""
  return _train(train.TrainConfig(
      data=data_lib.DataConfig(name="text", **text_files), model=TINY_TEXT,
      critic="self", objective=objective.ObjectiveConfig(
          critic_weight=3.0, critic_target=1.0, critic_constraint="hinge",
          kl_anneal_steps=10, kl_anneal_start=0.1),
      eval=evaluation.EvalConfig(iw_samples=4, iw_chunk_size=4),
      epochs=2, log_every=3, checkpoint_every=1000, select="best",
      out_dir=str(tmp_path_factory.mktemp("runs") / "text")))


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
  """30 steps of an MLP on synthetic images, ending inside the first epoch."""
  return _train(train.TrainConfig(
      data=data_lib.DataConfig(name="synthetic_images"),
      model=registry.ModelConfig(name="mlp", hidden_dim=16, latent_dim=2),
      eval=evaluation.EvalConfig(iw_samples=2, iw_chunk_size=2,
                                 max_examples=64, probe=False),
      max_steps=30, valid_examples=64, log_every=10, checkpoint_every=1000,
      out_dir=str(tmp_path_factory.mktemp("runs") / "images")))


def _scalars(events, tag) -> dict:
  """{step: float} of a scalar tag."""
  assert all(p == "scalars" for p, _ in events[tag].values()), tag
  return {step: float(v) for step, (_, v) in events[tag].items()}


def test_train_scalars_hold_the_weights_the_step_used(text_run):
  events = text_run["events"]
  log_steps = list(range(3, text_run["metrics"]["steps"] + 1, 3))
  for tag in ("loss", "rec", "kl", "mi", "infonce_bound", "elbo_grad_norm",
              "critic_grad_norm", "critic_term", "critic_lambda",
              "critic_constraint_active", "beta", "learning_rate",
              "skipped_steps"):
    assert sorted(_scalars(events, f"train/{tag}")) == log_steps, tag
  train = {tag[len("train/"):]: _scalars(events, tag) for tag in events
           if tag.startswith("train/")}
  for step in log_steps:
    # beta of update `step` (counted from 1): 0.1 -> 1 over 10 updates.
    beta = 0.1 + 0.9 * min((step - 1) / 10, 1.0)
    assert train["beta"][step] == pytest.approx(beta, rel=1e-6)
    assert train["critic_lambda"][step] == 3.0
    assert train["skipped_steps"][step] == 0
    assert train["elbo_grad_norm"][step] > 0
    # The loss is the beta-weighted ELBO plus the critic term, which the
    # hinge switches off once the bound reaches its target of 1 nat.
    active = train["infonce_bound"][step] < 1.0
    assert train["critic_constraint_active"][step] == float(active)
    assert train["critic_term"][step] == pytest.approx(
        train["loss"][step] - train["rec"][step]
        - beta * train["kl"][step], rel=1e-4, abs=1e-4)
    assert (train["critic_term"][step] > 0) == active


def test_history_and_tensorboard_hold_each_epochs_wall_time(text_run):
  metrics, history, events = (text_run[k] for k in ("metrics", "history",
                                                     "events"))
  assert [r["epoch"] for r in history] == [1, 2]
  epoch_seconds = _scalars(events, "time/epoch_seconds")
  validation_seconds = _scalars(events, "time/validation_seconds")
  for record in history:
    assert record["epoch_seconds"] > 0 and record["validation_seconds"] > 0
    assert epoch_seconds[record["step"]] == pytest.approx(
        record["epoch_seconds"], rel=1e-6)
    assert validation_seconds[record["step"]] == pytest.approx(
        record["validation_seconds"], rel=1e-6)
  assert sum(r["epoch_seconds"] + r["validation_seconds"]
             for r in history) < metrics["train_seconds"]


def test_metrics_name_the_checkpoint_they_measured(text_run, image_run):
  metrics, history, events = (text_run[k] for k in ("metrics", "history",
                                                     "events"))
  best = min(history, key=lambda r: r["valid_loss"])["step"]
  assert metrics["evaluated_checkpoint"] == "best"
  assert metrics["evaluated_checkpoint_step"] == best == metrics["best_step"]
  assert metrics["evaluated_checkpoint_path"] == f"best/ckpt-{best}"
  image_metrics = image_run["metrics"]
  assert image_metrics["evaluated_checkpoint"] == "last"
  assert image_metrics["evaluated_checkpoint_path"] == "checkpoints/ckpt-30"
  assert image_metrics["evaluated_checkpoint_step"] == 30
  for run in (text_run, image_run):       # as written, and there to load
    with open(os.path.join(run["out_dir"], "metrics.json")) as f:
      written = json.load(f)
    assert written["evaluated_checkpoint_path"] == run["metrics"][
        "evaluated_checkpoint_path"]
    assert os.path.exists(os.path.join(
        run["out_dir"], written["evaluated_checkpoint_path"] + ".index"))
  # The test metrics are in TensorBoard as well, at the last step.
  for key in ("nll", "kl", "mi", "au", "infonce_bound"):
    assert _scalars(events, f"test/{key}") == {
        metrics["steps"]: pytest.approx(metrics[key], rel=1e-6)}, key


def test_text_runs_show_reconstructions_and_samples(text_run):
  events = text_run["events"]
  for step in [r["step"] for r in text_run["history"]]:  # the epoch ends
    plugin, pairs = events["decoded/reconstructions"][step]
    assert plugin == "text" and pairs.shape == (8, 2)  # input, decoding
    plugin, samples = events["decoded/samples"][step]
    assert plugin == "text" and samples.shape == (8,)
  assert all(s for s in pairs[:, 0])                   # inputs not empty


def test_image_runs_show_a_picture_of_reconstructions_and_samples(image_run):
  events = image_run["events"]
  # The run ended inside an epoch: the pictures are of its last step.
  for tag, height in (("decoded/reconstructions", 62),
                      ("decoded/samples", 32)):
    assert list(events[tag]) == [30], tag
    plugin, blob = events[tag][30]
    assert plugin == "images" and blob[:2].tolist() == [b"242",
                                                        str(height).encode()]
    picture = tf.io.decode_png(blob[2]).numpy()
    # 8 columns of 28-pixel tiles; inputs over their reconstructions.
    assert picture.shape == (height, 242, 1) and picture.dtype == np.uint8


def test_the_log_shows_progress_with_an_eta(text_run):
  lines = [m for m in text_run["messages"] if "ETA" in m]
  steps = text_run["metrics"]["steps"]
  # The bar counts both epochs' steps: the run trains them all.
  logged = [int(re.match(rf"epoch \d of 2: (\d+)/{steps} ", m)[1])
            for m in lines]
  # Every log_every (3) steps and the last step; on a slow machine also
  # every 30 s in between.
  assert set(range(3, steps + 1, 3)) <= set(logged) and logged[-1] == steps
  assert logged == sorted(logged)
  # (Until the 20th step the rate includes tracing: the ETA is far above.)
  first = lines[logged.index(3)]
  assert re.fullmatch(
      rf"epoch 1 of 2: 3/{steps} steps \(\d+%\), +[\d.]+(step/s|s/step), "
      r"ETA [\d:]+, "
      r"loss=[\d.]+, rec=[\d.]+, kl=[\d.e-]+, bound=-?[\d.e-]+, lambda=3",
      first), first
  first_epoch = text_run["history"][0]["step"]
  for step, line in zip(logged, lines):
    assert line.startswith(f"epoch {1 if step <= first_epoch else 2} of 2: ")
