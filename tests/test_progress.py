"""Progress and ETA: the training bar on a terminal and its lines in a
log (a hand-moved clock: exact rates and ETAs), and an evaluation pass that
logs its ETA."""

import io
import re

from absl import logging as absl_logging
import pytest
import tqdm

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

class _Clock:
  """A clock the test moves by hand (seconds): the progress's and tqdm's."""

  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


@pytest.fixture
def clock(monkeypatch):
  clock = _Clock()
  monkeypatch.setattr(tqdm.std, "time", clock)
  return clock


def test_the_step_cap_overrides_the_epoch_cap():
  assert progress.total_steps(max_steps=1000, epochs=50,
                              steps_per_epoch=200) == 1000
  assert progress.total_steps(max_steps=None, epochs=3,
                              steps_per_epoch=200) == 600


def test_a_terminal_gets_a_bar_whose_values_refresh_with_it(clock):
  stream = io.StringIO()
  bar = progress.TrainProgress(max_steps=40, epochs=1, steps_per_epoch=30,
                               stream=stream, interactive=True,
                               warmup_steps=0, clock=clock)
  with bar:
    bar.start_epoch(0, 0, 0)
    for step in range(1, 41):
      clock.now = step * 0.25                  # 4 steps a second
      bar.timer.tick()
      # The multiplier comes from report (warmed up), not from the outputs.
      bar.tick(step, dict(loss=step / 10, kl=0.5, mi=1.0, critic_lambda=9.0))
      if step == 30:
        bar.start_epoch(1, 0, 30)
  frames = stream.getvalue().split("\r")[1:]
  # Redrawn every 0.5 s at most (2 steps), and at the end.
  assert 15 <= len(frames) <= 21 and frames[-1].endswith("\n")
  found = re.fullmatch(
      r"epoch 1: +(\d+)%\|[#\d ]+\| (\d+)/40 \[00:0\d<00:(\d\d), +4\.00step/s, "
      r"loss=([\d.]+), kl=0\.5\]", frames[3])
  assert found, frames[3]
  percent, step, eta, loss = (int(found[1]), int(found[2]), int(found[3]),
                              float(found[4]))
  assert percent == 100 * step // 40
  assert eta == pytest.approx((40 - step) / 4, abs=1)   # steps left / rate
  assert loss == pytest.approx(step / 10)      # this step's, not a log step's
  assert re.fullmatch(r"epoch 2: 100%\|#+\| 40/40 \[00:10<00:00, +4\.00"
                      r"step/s, loss=4, kl=0\.5\] *\n", frames[-1]), frames[-1]
  # A log line clears the bar first.
  assert bar.filter(None) is True


def test_a_log_gets_lines_at_log_steps_every_30_s_and_at_the_end(
    clock, caplog, absl_info):
  bar = progress.TrainProgress(max_steps=None, epochs=2, steps_per_epoch=500,
                               interactive=False, warmup_steps=0, clock=clock)
  with caplog.at_level("INFO"), bar:
    bar.start_epoch(epochs_done=0, step_in_epoch=0, step=0)
    for step in range(1, 106):
      clock.now = step * 0.5                   # 2 steps a second
      bar.tick(step, dict(loss=step / 100, kl=0.5))
      if step == 100:                          # a log_every step
        bar.report(100, dict(loss=1.5, rec=1.0, kl=0.5, mi=0.2,
                             critic_lambda=0.25))
  lines = [m for m in caplog.messages if "ETA" in m]
  # 30 s (step 60), the log step, then the last step (a run shorter than
  # log_every logs that one too).
  assert [int(re.match(r"epoch 1 of 2: (\d+)/1000 ", m)[1]) for m in lines] == [
      60, 100, 105]
  assert lines[0] == ("epoch 1 of 2: 60/1000 steps (6%),  2.00step/s, "
                      "ETA 07:50, loss=0.6, kl=0.5")      # 940 steps at 2/s
  assert lines[1] == ("epoch 1 of 2: 100/1000 steps (10%),  2.00step/s, "
                      "ETA 07:30, loss=1.5, kl=0.5, rec=1, lambda=0.25")
  assert lines[2].startswith("epoch 1 of 2: 105/1000 steps (10%),  2.00step/s")
  assert lines[2].endswith("loss=1.05, kl=0.5, rec=1, lambda=0.25")


def test_validations_are_left_out_of_the_epoch_seconds(clock):
  bar = progress.TrainProgress(max_steps=None, epochs=2, steps_per_epoch=500,
                               interactive=False, warmup_steps=0, clock=clock)
  bar.start_epoch(0, 0, 0)
  clock.now = 15.0                             # 10 s training, 5 s validating
  assert bar.validated(5.0) == dict(epoch_seconds=10.0,
                                    validation_seconds=5.0)


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
      r" *[\d.]+(example/s|s/example), ETA \d\d:\d\d, IW-NLL of 2 samples"
  codes = r"evaluating synthetic_images/test \(MI over the split\): {}/96 " \
      r"codes \({}%\),  *[\d.]+(code/s|s/code), ETA \d\d:\d\d"
  # Every batch but the last, then every MI block but the last.
  patterns = [examples.format(32, 33), examples.format(64, 67),
              codes.format(32, 33), codes.format(64, 67)]
  assert len(lines) == 4, lines
  for pattern, message in zip(patterns, lines):
    assert re.fullmatch(pattern, message), message
