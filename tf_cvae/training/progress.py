"""Progress a researcher can watch: where a run is, how fast, how long to go.

Training (`TrainProgress`) shows the step and epoch, the steps per second,
an ETA and the current loss terms: on an interactive terminal (stderr a tty)
as one line that updates in place, elsewhere (log files, notebooks) as an
absl log line every log_every steps. Its ETA is an upper bound: the
learning-rate halving rule (max_lr_decays) may end a run before its step or
epoch cap. A long evaluation pass (`PassProgress`) logs how much of it is
done, its rate and its ETA every so many seconds.
"""

import dataclasses
import logging as std_logging
import sys
import time

from absl import logging

from tf_cvae.training import timing


def format_seconds(seconds: float | None) -> str:
  """A duration for people: "1h02m05s", "4m05s", "42s"; "?" for None."""
  if seconds is None:
    return "?"
  minutes, secs = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  if hours:
    return f"{hours}h{minutes:02d}m{secs:02d}s"
  return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def eta_seconds(units_left: int, seconds_per_unit: float | None,
                validations_left: int = 0,
                seconds_per_validation: float = 0.0) -> float | None:
  """Seconds until `units_left` steps (or examples) are done at
  `seconds_per_unit`, plus `validations_left` passes of
  `seconds_per_validation` each; None while the rate is unknown.

  100 of 1000 steps done in 10 s: eta_seconds(900, 10 / 100) == 90.
  """
  if seconds_per_unit is None:
    return None
  return units_left * seconds_per_unit + (validations_left *
                                          seconds_per_validation)


@dataclasses.dataclass(frozen=True)
class RunPlan:
  """What ends a run: the step cap (max_steps, which overrides epochs when
  set) or `epochs` epochs of `steps_per_epoch` updates; `validate_every`
  (steps, 0: none) adds validations inside epochs."""
  max_steps: int | None
  epochs: int
  steps_per_epoch: int
  validate_every: int = 0

  @property
  def total_steps(self) -> int:
    """Updates in the whole run (at most: the halving rule may stop it)."""
    if self.max_steps is not None:
      return self.max_steps
    return self.epochs * self.steps_per_epoch

  def steps_left(self, epochs_done: int, step_in_epoch: int,
                 step: int) -> int:
    """Updates left to the cap that ends the run, after `step` updates of
    which `step_in_epoch` belong to epoch `epochs_done` + 1."""
    if self.max_steps is not None:
      return max(self.max_steps - step, 0)
    return max((self.epochs - epochs_done) * self.steps_per_epoch
               - step_in_epoch, 0)

  def validations_left(self, step_in_epoch: int, step: int,
                       steps_left: int) -> int:
    """Validation passes in the next `steps_left` updates: the epoch ends,
    every validate_every steps, and the final step when it falls inside an
    epoch (one at an epoch end and a validate_every step counts twice)."""
    reach = step_in_epoch + steps_left
    count = reach // self.steps_per_epoch + (1 if reach % self.steps_per_epoch
                                             else 0)
    if self.validate_every:
      count += ((step + steps_left) // self.validate_every
                - step // self.validate_every)
    return count


# The step outputs a progress line shows, and their short names.
SHOWN_TERMS = {"loss": "loss", "rec": "rec", "kl": "kl",
               "infonce_bound": "bound", "model_infonce_bound": "model_bound",
               "critic_lambda": "lambda"}


class TrainProgress:
  """The progress line of a training run (see the module's docstring).

  The loop ticks `timer` (a timing.StepTimer whose steady rate, from the
  21st update on, drives the ETA) and calls `start_epoch` as an epoch
  begins or resumes, `tick` after every update (it only redraws a terminal
  line, at most every `refresh_seconds`, and reads nothing from the
  device), `report` at log_every steps with the step's outputs, and
  `validated` after each validation. Enter it around the loop: on a
  terminal, other log lines then clear the progress line before they print.
  """

  def __init__(self, plan: RunPlan, stream=None,
               interactive: bool | None = None, refresh_seconds: float = 0.5,
               warmup_steps: int = 20, clock=time.perf_counter):
    """stream: where a terminal line goes (stderr), interactive: whether to
    draw one (default: whether stream is a tty); warmup_steps: updates the
    timer leaves out (tracing, compilation); clock: seconds (a float)."""
    self.plan, self._clock = plan, clock
    self.timer = timing.StepTimer(warmup_steps, clock)
    self.stream = stream or sys.stderr
    self.interactive = (self.stream.isatty() if interactive is None
                        else interactive)
    self.refresh_seconds = refresh_seconds
    self.terms, self.steps_per_second = {}, None
    self._validation_seconds = []
    self._epoch = (0, 0, 0)           # epochs done, step in epoch, step
    self._epoch_started = self._clock()
    self._epoch_validating = 0.0
    self._drawn_at, self._line_shown = 0.0, False

  def start_epoch(self, epochs_done: int, step_in_epoch: int,
                  step: int) -> None:
    """An epoch begins (or resumes at `step_in_epoch`) after `step` updates."""
    self._epoch = (epochs_done, step_in_epoch, step)
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

  def tick(self, step: int) -> None:
    """After update `step`: redraws the terminal line now and then."""
    if (self.interactive and self._clock() - self._drawn_at
        >= self.refresh_seconds):
      self._draw(self.line(step))

  def report(self, step: int, outputs: dict,
             steps_per_second: float) -> None:
    """At a log step: the outputs' SHOWN_TERMS (floats) become the line's
    terms; logged, or drawn on a terminal."""
    self.terms = {SHOWN_TERMS[k]: float(v) for k, v in outputs.items()
                  if k in SHOWN_TERMS}
    self.steps_per_second = steps_per_second
    if self.interactive:
      self._draw(self.line(step))
    else:
      logging.info("%s", self.line(step))

  def eta(self, step: int) -> float | None:
    """Seconds until the run's cap at the steady rate, validations
    included (their mean so far); None before a rate is known."""
    epochs_done, in_epoch = self.position(step)
    left = self.plan.steps_left(epochs_done, in_epoch, step)
    per_step = self.timer.seconds_per_step()
    if per_step is None and self.steps_per_second:
      per_step = 1.0 / self.steps_per_second
    validations = self._validation_seconds
    return eta_seconds(left, per_step,
                       self.plan.validations_left(in_epoch, step, left),
                       sum(validations) / len(validations)
                       if validations else 0.0)

  def position(self, step: int) -> tuple[int, int]:
    """(epochs done, updates into the current epoch) after update `step`."""
    epochs_done, in_epoch, start = self._epoch
    return epochs_done, min(in_epoch + step - start,
                            self.plan.steps_per_epoch)

  def line(self, step: int) -> str:
    """The progress line after update `step`, e.g. "epoch 2 step 12/54
    (22%)  in epoch 2 of 6: 3/9 (33%)  14.2 steps/s  ETA at most 1m05s
    loss 98.123  rec 90.100  kl 8.023" (epoch counted from 1)."""
    plan = self.plan
    epochs_done, in_epoch = self.position(step)
    epoch, total = epochs_done + 1, plan.total_steps
    cap = f" of {plan.epochs}" if plan.max_steps is None else ""
    rate = ("" if self.steps_per_second is None
            else f"  {self.steps_per_second:.1f} steps/s")
    terms = "".join(f"  {k} {v:.3f}" for k, v in self.terms.items())
    return (f"epoch {epoch} step {step}/{total} "
            f"({100 * step / max(total, 1):.0f}%)  in epoch {epoch}{cap}: "
            f"{in_epoch}/{plan.steps_per_epoch} "
            f"({100 * in_epoch / plan.steps_per_epoch:.0f}%){rate}  "
            f"ETA at most {format_seconds(self.eta(step))}{terms}")

  def _draw(self, line: str) -> None:
    self.stream.write("\r\033[K" + line)
    self.stream.flush()
    self._drawn_at, self._line_shown = self._clock(), True

  def filter(self, record) -> bool:
    """A log filter: clears a drawn progress line before a log line."""
    del record
    if self._line_shown:
      self.stream.write("\r\033[K")
      self._line_shown = False
    return True

  def _handlers(self) -> set:
    """The log handlers that may print while the line is drawn: absl's and
    those of the root and absl loggers."""
    return ({logging.get_absl_handler()}
            | set(std_logging.getLogger().handlers)
            | set(std_logging.getLogger("absl").handlers))

  def __enter__(self):
    if self.interactive:
      self._filtered = self._handlers()
      for handler in self._filtered:
        handler.addFilter(self)
    return self

  def __exit__(self, *exc_info):
    if self.interactive:
      for handler in self._filtered:
        handler.removeFilter(self)
      if self._line_shown:
        self.stream.write("\n")
        self._line_shown = False
    return False


class PassProgress:
  """Log lines of a long pass (evaluation): units done of `total`, the
  rate and an ETA, at most every `period_seconds` (0: every update) and
  never for the last unit (the pass logs its own end)."""

  def __init__(self, what: str, total: int, unit: str = "examples",
               period_seconds: float = 30.0):
    self.what, self.total, self.unit = what, total, unit
    self.period_seconds = period_seconds
    self.started = self.last = time.perf_counter()

  def update(self, done: int, detail: str = "") -> None:
    """`done` units of `total` are done; `detail` ends the line."""
    now = time.perf_counter()
    if now - self.last < self.period_seconds or done >= self.total:
      return
    self.last = now
    per_unit = (now - self.started) / max(done, 1)
    logging.info("%s: %d/%d %s (%.0f%%), %.1f %s/s, ETA %s%s", self.what,
                 done, self.total, self.unit, 100 * done / self.total,
                 1.0 / max(per_unit, 1e-9), self.unit,
                 format_seconds(eta_seconds(self.total - done, per_unit)),
                 f" ({detail})" if detail else "")
