"""Progress and ETA: the pure rules with numbers, the training line on a
terminal and in a log, and an evaluation pass that logs its ETA."""

import io
import re

from absl import logging as absl_logging
import pytest

from tf_cvae import data as data_lib
from tf_cvae.models import registry
from tf_cvae.training import evaluation
from tf_cvae.training import progress


@pytest.fixture
def absl_info():
  """absl's logger at INFO: once absl's flags are parsed (as other tests of
  the session do) it follows --verbosity, WARNING by default."""
  previous = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.INFO)
  yield
  absl_logging.set_verbosity(previous)

def test_eta_is_the_steps_left_at_the_measured_rate():
  # 100 of 1000 steps done in 10 s: 900 steps left at 0.1 s each.
  assert progress.eta_seconds(900, 10 / 100) == pytest.approx(90.0)
  # Plus the validations still to come at their mean duration.
  assert progress.eta_seconds(500, 0.1, validations_left=3,
                              seconds_per_validation=5.0) == pytest.approx(65)
  assert progress.eta_seconds(10, None) is None       # no rate yet


def test_the_step_cap_overrides_the_epoch_cap():
  # max_steps set: the run ends at step 1000, whatever epochs says.
  capped = progress.RunPlan(max_steps=1000, epochs=50, steps_per_epoch=200)
  assert capped.total_steps == 1000
  assert capped.steps_left(epochs_done=0, step_in_epoch=100, step=100) == 900
  # Epochs alone: 3 epochs of 200, 100 steps into the first.
  epochs = progress.RunPlan(max_steps=None, epochs=3, steps_per_epoch=200)
  assert epochs.total_steps == 600
  assert epochs.steps_left(epochs_done=0, step_in_epoch=100, step=100) == 500
  assert epochs.steps_left(epochs_done=3, step_in_epoch=0, step=600) == 0
  # The epoch ends at steps 200, 400, 600 are validated.
  assert epochs.validations_left(step_in_epoch=100, step=100,
                                 steps_left=500) == 3
  # 900 steps from step 100 end at step 1000, an epoch's end: 5 epoch ends;
  # 901 end inside an epoch, whose final step is validated as well.
  assert capped.validations_left(100, 100, 900) == 5
  assert capped.validations_left(100, 100, 901) == 6
  every = progress.RunPlan(max_steps=1000, epochs=1, steps_per_epoch=200,
                           validate_every=300)
  assert every.validations_left(100, 100, 900) == 5 + 3    # 300, 600, 900


def test_durations_read_as_hours_minutes_seconds():
  assert [progress.format_seconds(s) for s in (42.4, 90, 3725, None)] == [
      "42s", "1m30s", "1h02m05s", "?"]


class _Clock:
  """A clock the test moves by hand (seconds)."""

  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_log_lines_show_step_epoch_rate_eta_and_terms(caplog, absl_info):
  clock = _Clock()
  line = progress.TrainProgress(
      progress.RunPlan(max_steps=None, epochs=2, steps_per_epoch=500),
      interactive=False, warmup_steps=0, clock=clock)
  line.start_epoch(epochs_done=0, step_in_epoch=0, step=0)
  clock.now = 10.0
  line.timer.tick(100)                         # 0.1 s a step
  with caplog.at_level("INFO"):
    line.report(100, dict(loss=1.5, rec=1.0, kl=0.5, mi=0.2,
                          critic_lambda=0.25), steps_per_second=10.0)
  # 900 steps left at 0.1 s; no validation measured yet.
  assert caplog.messages[-1] == (
      "epoch 1 step 100/1000 (10%)  in epoch 1 of 2: 100/500 (20%)  10.0 "
      "steps/s  ETA at most 1m30s  loss 1.500  rec 1.000  kl 0.500  lambda "
      "0.250")
  with line.timer.pause():                     # a 5 s validation
    clock.now = 15.0
  assert line.validated(5.0) == dict(epoch_seconds=10.0,
                                     validation_seconds=5.0)
  # Two epoch ends to come, 5 s each: 90 + 10 s.
  assert line.eta(100) == pytest.approx(100.0)
  assert "ETA at most 1m40s" in line.line(100)


def test_a_terminal_gets_one_line_redrawn_in_place():
  clock, stream = _Clock(), io.StringIO()
  line = progress.TrainProgress(
      progress.RunPlan(max_steps=40, epochs=1, steps_per_epoch=30),
      stream=stream, interactive=True, warmup_steps=0, clock=clock)
  with line:
    line.start_epoch(0, 0, 0)
    for step in range(1, 41):
      clock.now = step * 0.25                  # 4 steps a second
      line.timer.tick()
      line.tick(step)                          # redrawn every 0.5 s at most
      if step == 30:
        line.start_epoch(1, 0, 30)
  drawn = stream.getvalue().split("\r\033[K")[1:]
  assert len(drawn) == 20 and drawn[-1].endswith("\n")
  assert drawn[0] == "epoch 1 step 2/40 (5%)  in epoch 1: 2/30 (7%)  ETA at " \
      "most 10s"
  assert drawn[-1].startswith("epoch 2 step 40/40 (100%)  in epoch 2: 10/30")
  # A log line clears a drawn line first.
  clock.now = 20.0
  line.tick(40)
  assert line.filter(None)
  assert stream.getvalue().endswith("10/30 (33%)  ETA at most 0s\r\033[K")


TINY_MLP = registry.ModelConfig(name="mlp", hidden_dim=16, latent_dim=2)


def test_an_evaluation_logs_examples_rate_and_eta(caplog, absl_info):
  dataset = data_lib.load(data_lib.DataConfig(name="synthetic_images"))
  vae = registry.build_vae(TINY_MLP, dataset)
  config = evaluation.EvalConfig(batch_size=32, iw_samples=2, iw_chunk_size=2,
                                 iw_report=(), max_examples=96,
                                 mi_chunk_size=32, probe=False)
  with caplog.at_level("INFO"):
    results = evaluation.evaluate(vae, None, dataset, config,
                                  progress_seconds=0)
  assert results["num_examples"] == 96
  lines = [m for m in caplog.messages if "ETA" in m]
  examples = r"evaluating synthetic_images/test: {}/96 examples \({}%\), " \
      r"[\d.]+ examples/s, ETA \d+s \(IW-NLL of 2 samples\)"
  codes = r"evaluating synthetic_images/test \(MI over the split\): {}/96 " \
      r"codes \({}%\), [\d.]+ codes/s, ETA \d+s"
  # Every batch but the last, then every MI block but the last.
  patterns = [examples.format(32, 33), examples.format(64, 67),
              codes.format(32, 33), codes.format(64, 67)]
  assert len(lines) == 4, lines
  for pattern, message in zip(patterns, lines):
    assert re.fullmatch(pattern, message), message
