"""Progress a researcher can watch: where a run is, how fast, how long to go.

Training (`TrainProgress`) keeps a tqdm bar of the run's steps: the epoch,
steps done of the cap, steps per second, the ETA and the current loss
terms. On a terminal (stderr a tty) it is drawn in place, its values read
again every `refresh_seconds`; elsewhere (log files, notebooks) the same
numbers are an absl log line every log_every steps, every `log_seconds` in
between and at the end, so a short run shows progress too. The ETA is
tqdm's (steps left at the recent rate, validations not counted): the
learning-rate halving rule (max_lr_decays) may end a run earlier. A long
evaluation (`EvalProgress`) has one bar over all its passes, with the ETA
of the whole.
"""

import logging as std_logging
import os
import sys
import time

from absl import logging
import tqdm

from tf_cvae.training import timing

# The step outputs the bar shows, and their short names.
SHOWN_TERMS = {"loss": "loss", "rec": "rec", "kl": "kl",
               "infonce_bound": "bound", "model_infonce_bound": "model_bound",
               "critic_lambda": "lambda"}
# A log line: tqdm's numbers without the bar.
LOG_FORMAT = ("{desc}{n_fmt}/{total_fmt} {unit}s ({percentage:.0f}%), "
              "{rate_fmt}, ETA {remaining}{postfix}")


def total_steps(max_steps: int | None, epochs: int,
                steps_per_epoch: int) -> int:
  """Updates in the whole run: max_steps when set, else epochs x
  steps_per_epoch (at most: the halving rule may stop it earlier)."""
  return max_steps if max_steps is not None else epochs * steps_per_epoch


class _Bar:
  """What both bars share: entered, log lines clear the drawn bar first;
  left, the bar and its sink (where a bar that is not drawn goes) close."""

  def __enter__(self):
    if self.interactive:
      self._clearer.attach()
    return self

  def _close(self) -> None:
    if self.interactive:
      self._clearer.detach()
    if self.bar is not None:
      self.bar.close()
    if self._sink:
      self._sink.close()


class TrainProgress(_Bar):
  """The progress bar of a training run (see the module's docstring).

  The loop ticks `timer` (a timing.StepTimer whose steady rate, from the
  21st update on, is the run's seconds per step), calls `start_epoch` as an
  epoch begins or resumes, `tick` after every update with the step's
  outputs (read from the device only when the bar shows them), `report` at
  log_every steps and `validated` after each validation. Enter it around
  the loop: on a terminal, log lines clear the bar before they print.
  """

  def __init__(self, max_steps: int | None, epochs: int, steps_per_epoch: int,
               stream=None, interactive: bool | None = None,
               refresh_seconds: float = 0.5, log_seconds: float = 30.0,
               warmup_steps: int = 20, clock=time.perf_counter):
    """stream: where the bar goes (stderr); interactive: whether to draw it
    (default: whether stream is a tty); warmup_steps: updates the timer
    leaves out (tracing, compilation); clock: seconds (a float)."""
    self.total = total_steps(max_steps, epochs, steps_per_epoch)
    self.epochs = None if max_steps is not None else epochs
    self.steps_per_epoch, self._clock = steps_per_epoch, clock
    self.timer = timing.StepTimer(warmup_steps, clock)
    self.stream = stream or sys.stderr
    self.interactive = (self.stream.isatty() if interactive is None
                        else interactive)
    self.refresh_seconds, self.log_seconds = refresh_seconds, log_seconds
    self._sink = None if self.interactive else open(os.devnull, "w")
    self.bar = None                  # from the first epoch's start on
    self._validation_seconds = []
    self._epoch_started, self._epoch_validating = clock(), 0.0
    self._read_at = self._logged_at = clock()
    self._logged_step, self._terms, self._outputs = None, {}, {}
    self._clearer = _BarClearer(self)

  def start_epoch(self, epochs_done: int, step_in_epoch: int,
                  step: int) -> None:
    """An epoch begins (or resumes at `step_in_epoch`) after `step` updates."""
    del step_in_epoch
    cap = f" of {self.epochs}" if self.epochs else ""
    desc = f"epoch {epochs_done + 1}{cap}"
    if self.bar is None:             # a resumed run's rate: from here on
      self.bar = tqdm.tqdm(
          desc=desc, total=self.total, initial=step, unit="step",
          smoothing=0.1, mininterval=self.refresh_seconds,
          file=self.stream if self.interactive else self._sink,
          dynamic_ncols=True)
    self.bar.set_description(desc, refresh=False)
    self.bar.update(step - self.bar.n)
    self._epoch_started, self._epoch_validating = self._clock(), 0.0

  def validated(self, seconds: float) -> dict:
    """A validation pass took `seconds`; returns its history.jsonl fields:
    epoch_seconds (wall seconds of training in the current epoch in this
    process: updates, logs, checkpoints; validations left out) and
    validation_seconds."""
    self._validation_seconds.append(seconds)
    self._epoch_validating += seconds
    return dict(epoch_seconds=self._clock() - self._epoch_started
                - self._epoch_validating, validation_seconds=seconds)

  def tick(self, step: int, outputs: dict | None = None) -> None:
    """After update `step` with these outputs (kept, not read): moves the
    bar; reads the outputs' terms as it redraws (on a terminal, at most
    every refresh_seconds) or logs (elsewhere, every log_seconds)."""
    self._outputs = self._outputs if outputs is None else outputs
    now = self._clock()
    if self.interactive and now - self._read_at >= self.refresh_seconds:
      self._read()
    self.bar.update(step - self.bar.n)
    if not self.interactive and now - self._logged_at >= self.log_seconds:
      self._read()
      self._log()

  def report(self, step: int, outputs: dict) -> None:
    """At a log step: shows the outputs' SHOWN_TERMS (floats); drawn on a
    terminal, logged elsewhere."""
    self.bar.update(step - self.bar.n)
    self._show(outputs)
    self._read_at = self._clock()
    if self.interactive:
      self.bar.refresh()
    else:
      self._log()

  def line(self) -> str:
    """The numbers of the bar as one line, e.g. "epoch 2 of 6: 12/54 steps
    (22%), 14.20step/s, ETA 00:03, loss=98.1, rec=90.1, kl=8.02"."""
    return self.bar.format_meter(**dict(self.bar.format_dict,
                                        bar_format=LOG_FORMAT))

  def _read(self) -> None:
    """Shows the last outputs' terms but the multiplier's, which report
    shows as used (warmed up)."""
    self._show({k: v for k, v in self._outputs.items()
                if k != "critic_lambda"})
    self._read_at = self._clock()

  def _show(self, outputs: dict) -> None:
    self._terms.update({SHOWN_TERMS[k]: float(v) for k, v in outputs.items()
                        if k in SHOWN_TERMS})
    self.bar.set_postfix(self._terms, refresh=False)

  def _log(self) -> None:
    logging.info("%s", self.line())
    self._logged_at, self._logged_step = self._clock(), self.bar.n

  def __exit__(self, *exc_info):
    if (not self.interactive and self.bar is not None
        and self._logged_step != self.bar.n):
      self._read()                     # the last step, unless just logged
      self._log()
    self._close()
    if self._sink:
      self._sink.close()
    return False


class EvalProgress(_Bar):
  """One bar over every pass of an evaluation, with the ETA of the whole.

  Its unit is a pass: one example through the model once (the encode and
  score of a test example, one of its importance samples, one code of the
  split's MI, one train example encoded for the probes), so `total` is known
  before the first batch. On a terminal (stderr a tty) it is a tqdm bar drawn
  from the start; elsewhere, or `inside_training` (the training bar is
  drawn), a log line every `log_seconds`, the first after
  `first_log_seconds` (past the tracing of the first batches, whose rate
  would make the ETA minutes too long) unless inside_training, never for
  the last unit (the evaluation logs its own end). TQDM_DISABLE=1 (tqdm's own switch) silences both. Enter it
  around the evaluation: log lines clear the drawn bar first.
  """

  def __init__(self, what: str, total: int, inside_training: bool = False,
               log_seconds: float = 30.0, first_log_seconds: float = 5.0,
               clock=time.perf_counter):
    self.stream = sys.stderr
    self.interactive = self.stream.isatty() and not inside_training
    self._sink = None if self.interactive else open(os.devnull, "w")
    self.bar = tqdm.tqdm(desc=what + ": ", total=total, unit="pass",
                         smoothing=0,
                         file=self.stream if self.interactive else self._sink,
                         dynamic_ncols=True)
    self.log_seconds, self._clock = log_seconds, clock
    # As if a line was logged so that the next comes when the first is due.
    first = log_seconds if inside_training else min(first_log_seconds,
                                                    log_seconds)
    self._logged_at = clock() - (log_seconds - first)
    self._clearer = _BarClearer(self)

  def stage(self, name: str) -> None:
    """The pass under way (the bar's postfix), e.g. "MI over the split"."""
    self.bar.set_postfix_str(name, refresh=self.interactive)

  def update(self, units: int) -> None:
    """`units` more passes are done."""
    self.bar.update(units)
    if self.interactive or self.bar.disable or self.bar.n >= self.bar.total:
      return
    now = self._clock()
    if now - self._logged_at >= self.log_seconds:
      self._logged_at = now
      logging.info("%s", self.bar.format_meter(**dict(
          self.bar.format_dict,
          bar_format=LOG_FORMAT.replace("{unit}s", "passes"))))

  def __exit__(self, *exc_info):
    self._close()
    return False


class _BarClearer:
  """A log filter that clears `owner.bar` (once drawn) before a log line
  prints, on the handlers that may print while it is drawn: absl's and
  those of the root and absl loggers."""

  def __init__(self, owner):
    self.owner, self._handlers = owner, set()

  def filter(self, record) -> bool:
    del record
    if self.owner.bar is not None:
      self.owner.bar.clear()
    return True

  def attach(self) -> None:
    self._handlers = ({logging.get_absl_handler()}
                      | set(std_logging.getLogger().handlers)
                      | set(std_logging.getLogger("absl").handlers))
    for handler in self._handlers:
      handler.addFilter(self)

  def detach(self) -> None:
    for handler in self._handlers:
      handler.removeFilter(self)
