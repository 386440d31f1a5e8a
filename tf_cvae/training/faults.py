"""Faults a long run must survive: non-finite steps and stop signals.

`BadSteps` counts the steps the train step skipped because a term or a
gradient went NaN or inf, names them in the log, and stops the run after too
many in a row. `StopSignals` turns SIGTERM (a preempted Colab or cluster job)
and SIGINT into a request the training loop honours at the next step: save a
checkpoint, then raise errors.Interrupted.
"""

import signal
import threading

from absl import logging
import tensorflow as tf

from tf_cvae import errors
from tf_cvae import train_step as train_step_lib


class BadSteps(tf.Module):
  """The skipped-step counters (checkpointed with the run) and the stop rule."""

  def __init__(self, max_consecutive: int, name: str = "bad_steps"):
    super().__init__(name=name)
    self.max_consecutive = max_consecutive
    self.total = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.consecutive = tf.Variable(0, dtype=tf.int64, trainable=False)

  def record(self, nonfinite: int, step: int, best_dir: str) -> None:
    """Books one step; raises errors.TrainingError after max_consecutive
    non-finite steps in a row.

    Args:
      nonfinite: the step's "nonfinite" bitmask (0: a good step).
      step: the number of the update the step would have made.
      best_dir: where the best checkpoint lies (named in the error).
    """
    if not nonfinite:
      if int(self.consecutive):
        self.consecutive.assign(0)
      return
    self.total.assign_add(1)
    self.consecutive.assign_add(1)
    names = ", ".join(train_step_lib.nonfinite_names(nonfinite))
    logging.warning("step %d skipped: non-finite %s (%d in a row, %d skipped "
                    "in all); the weights were not updated", step, names,
                    int(self.consecutive), int(self.total))
    if int(self.consecutive) >= self.max_consecutive:
      raise errors.TrainingError(
          f"training diverged: {int(self.consecutive)} steps in a row up to "
          f"step {step} had a non-finite {names}, so the run stopped "
          f"(--max_bad_steps={self.max_consecutive}). The best checkpoint is "
          f"kept in {best_dir}; lower --learning_rate or --critic_weight, or "
          f"set --clip_norm, and train into a new --out_dir")


class StopSignals:
  """While entered, SIGTERM and SIGINT set `requested` (the signal number)
  instead of ending the process; a second SIGINT interrupts at once.

  Outside the main thread (where Python allows no handlers) it does nothing.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.requested = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.requested == signal.SIGINT and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.requested = signum
    logging.warning("%s received: saving a checkpoint after this step",
                    signal.Signals(signum).name)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for signum in self.SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous.clear()
    return False
