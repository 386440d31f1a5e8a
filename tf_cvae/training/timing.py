"""Wall-clock time of train steps: the one step timer of the library.

The training loop, the benchmark and the reproduction's calibration all time
steps with `StepTimer`; `round_robin` compares step functions in turn, and
`seconds` times any other call.
"""

import contextlib
import time

import numpy as np
import tensorflow as tf


def seconds(fn) -> float:
  """Seconds (wall clock) that fn() took; its result is dropped."""
  started = time.perf_counter()
  fn()
  return time.perf_counter() - started


class StepTimer:
  """Seconds per step once `warmup_steps` steps are done (tracing and
  compilation happen in the first ones), time spent in `pause()` left out.

  Call `tick(n)` after n steps have finished (a caller that queues work on
  a device ticks after reading a result back). `lap()` gives the steps per
  second since the previous lap, for progress lines.
  """

  def __init__(self, warmup_steps: int = 0, clock=time.perf_counter):
    self._clock, self._warmup_steps = clock, warmup_steps
    self._all_steps, self._timed_from = 0, 0
    self._started = clock() if warmup_steps <= 0 else None
    self._paused = 0.0
    self._lap_time, self._lap_steps, self._lap_paused = clock(), 0, 0.0

  def tick(self, steps: int = 1) -> None:
    """Books `steps` finished steps."""
    self._all_steps += steps
    if self._started is None and self._all_steps >= self._warmup_steps:
      self._started, self._timed_from = self._clock(), self._all_steps
      self._paused = 0.0

  @contextlib.contextmanager
  def pause(self):
    """A block whose time counts in no step (validation, checkpoints)."""
    started = self._clock()
    try:
      yield
    finally:
      paused = self._clock() - started
      self._paused += paused
      self._lap_paused += paused

  def lap(self) -> float:
    """Steps per second since the previous lap (or the start), pauses out."""
    now = self._clock()
    rate = (self._all_steps - self._lap_steps) / max(
        now - self._lap_time - self._lap_paused, 1e-9)
    self._lap_time, self._lap_steps, self._lap_paused = now, self._all_steps, 0.0
    return rate

  @property
  def steps(self) -> int:
    """Steps timed so far (those after the warm-up)."""
    return (0 if self._started is None
            else self._all_steps - self._timed_from)

  def seconds_per_step(self) -> float | None:
    """Mean seconds of a timed step; None before any step was timed."""
    if not self.steps:
      return None
    return (self._clock() - self._started - self._paused) / self.steps


def round_robin(fns: dict, calls: int, repeats: int):
  """Times zero-argument step functions in turn, in one process.

  Returns ({name: [seconds per call in each of `repeats` rounds of `calls`
  calls]}, after 2 warm-up calls each, the CPU cores the process kept busy
  meanwhile). A round ends once every result is on the host; rounds
  alternate the functions (A, B, A, B, ...), so a ratio of two functions'
  times in the same round sees the same load from other processes.
  """
  def timed(fn, calls):
    timer = StepTimer()
    tf.nest.map_structure(np.asarray, [fn() for _ in range(calls)])
    timer.tick(calls)
    return timer.seconds_per_step()
  for fn in fns.values():         # warm-up: tracing and compilation
    timed(fn, 2)
  times = {name: [] for name in fns}
  cpu, wall = time.process_time(), time.perf_counter()
  for _ in range(repeats):
    for name, fn in fns.items():
      times[name].append(timed(fn, calls))
  cores = (time.process_time() - cpu) / (time.perf_counter() - wall)
  return times, cores


def median_and_best(rounds: list) -> tuple[float, float]:
  """(median, best) of round_robin's seconds per call of one function."""
  return float(np.median(rounds)), min(rounds)


def median_ratio(rounds: list, reference_rounds: list) -> float:
  """The median over rounds of one function's time over a reference's in
  the same round (round_robin's lists)."""
  return float(np.median(np.asarray(rounds) / np.asarray(reference_rounds)))
