"""Progress and ETA: the training bar on a terminal and its lines in a
log (a hand-moved clock: exact rates and ETAs), and an evaluation pass that
logs its ETA."""

import dataclasses
import io
import os
import re
import subprocess
import sys

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


def test_a_log_line_clears_the_drawn_bar_first(clock):
  stream = io.StringIO()
  bar = progress.TrainProgress(max_steps=10, epochs=1, steps_per_epoch=10,
                               stream=stream, interactive=True, clock=clock)
  with bar:
    bar.start_epoch(0, 0, 0)
    bar.tick(1, {})
    drawn = len(stream.getvalue())
    absl_logging.warning("a log line")
    cleared = stream.getvalue()[drawn:]
  assert cleared.startswith("\r") and cleared.strip() == "", cleared


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


EVAL = evaluation.EvalConfig(batch_size=32, iw_samples=4, iw_chunk_size=2,
                             iw_report=(), max_examples=96, mi_chunk_size=32)
# 96 examples x (encode and score + 4 importance samples + a code of the MI),
# then the probes encode the 10,000 train images.
EVAL_PASSES = 96 * (1 + 4 + 1) + 10_000


class _Terminal(io.StringIO):
  def isatty(self):
    return True


@pytest.fixture(scope="module")
def tiny_vae():
  dataset = data_lib.load(data_lib.DataConfig(name="synthetic_images"))
  return registry.build_vae(TINY_MLP, dataset), dataset


def test_an_evaluation_has_one_bar_over_all_its_passes(tiny_vae, monkeypatch):
  vae, dataset = tiny_vae
  assert evaluation.work_units(dataset, EVAL) == EVAL_PASSES
  terminal = _Terminal()
  monkeypatch.setattr(sys, "stderr", terminal)
  results = evaluation.evaluate(vae, None, dataset, EVAL)
  assert results["num_examples"] == 96 and "probe_r2" in results
  frames = [f for f in terminal.getvalue().split("\r") if f.strip()]
  done = [(int(m[1]), int(m[2])) for m in (
      re.search(r"\| (\d+)/(\d+) \[", f) for f in frames) if m]
  assert done and {total for _, total in done} == {EVAL_PASSES}
  assert [n for n, _ in done] == sorted(n for n, _ in done)   # never back
  assert frames[0].startswith("evaluating synthetic_images/test:   0%")
  assert re.match(r"evaluating synthetic_images/test: 100%\|#+\| "
                  rf"{EVAL_PASSES}/{EVAL_PASSES} ", frames[-1]), frames[-1]
  assert frames[-1].endswith("\n")
  # A validation inside training draws no bar (training's is drawn).
  terminal.seek(0)
  terminal.truncate()
  evaluation.Evaluator(vae, None)(dataset, EVAL, inside_training=True)
  assert terminal.getvalue() == ""


def test_an_evaluation_in_a_log_has_lines_with_the_eta_of_the_whole(
    tiny_vae, caplog, absl_info):
  vae, dataset = tiny_vae
  config = dataclasses.replace(EVAL, probe=False)
  with caplog.at_level("INFO"):
    evaluation.evaluate(vae, None, dataset, config, progress_seconds=0)
  lines = [m for m in caplog.messages if "ETA" in m]
  total = 96 * 6
  # Each batch: its encode and score, then two chunks of 2 samples; then the
  # MI's blocks of 32 codes. A line at every update but the last.
  expected = []
  for batch in range(3):
    expected += [batch * 160 + 32, batch * 160 + 96, batch * 160 + 160]
  expected += [480 + 32, 480 + 64]
  assert len(lines) == len(expected), lines
  for n, line in zip(expected, lines):
    stage = "IW-NLL of 4 samples" if n <= 480 else "MI over the split"
    assert re.fullmatch(
        rf"evaluating synthetic_images/test: {n}/{total} passes "
        rf"\({100 * n / total:.0f}%\),  *[\d.]+(pass/s|s/pass), "
        rf"ETA \d\d:\d\d, {stage}", line), line


@pytest.mark.parametrize("inside_training, logged_at", [
    (False, [5, 35, 65, 95]), (True, [30, 60, 90])])
def test_an_evaluation_log_starts_after_5_s_then_every_30_s(
    clock, caplog, absl_info, inside_training, logged_at):
  with caplog.at_level("INFO"), progress.EvalProgress(
      "evaluating x", 100, inside_training, clock=clock) as bar:
    for second in range(1, 101):               # a pass a second
      clock.now = second
      bar.update(1)
  lines = [m for m in caplog.messages if "ETA" in m]
  assert lines == [f"evaluating x: {n}/100 passes ({n}%),  1.00pass/s, ETA "
                   f"{(100 - n) // 60:02d}:{(100 - n) % 60:02d}"
                   for n in logged_at]


def test_tqdm_disable_silences_the_evaluation_bar():
  """TQDM_DISABLE=1 (tqdm's own switch, read as tqdm is imported)."""
  script = (
      "import io, sys\n"
      "class T(io.StringIO):\n"
      "  def isatty(self): return True\n"
      "sys.stderr = T()\n"
      "from tf_cvae.training import progress\n"
      "with progress.EvalProgress('evaluating', 10) as bar:\n"
      "  bar.update(10)\n"
      "sys.__stdout__.write(repr(sys.stderr.getvalue()))\n")
  result = subprocess.run([sys.executable, "-c", script], capture_output=True,
                          text=True, timeout=120,
                          env=dict(os.environ, TQDM_DISABLE="1"))
  assert (result.returncode, result.stdout) == (0, "''"), result.stderr
