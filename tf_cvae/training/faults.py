"""Faults a long run must survive: non-finite steps and stop signals.

`BadSteps` counts, on the device, the steps the train step skipped because a
term or a gradient went NaN or inf; read at the loop's checks, it names them
in the log and stops the run after too many in a row. `StopSignals` turns SIGTERM (a preempted Colab or cluster job)
and SIGINT into a request the training loop honours at the next step: save a
checkpoint, then raise errors.Interrupted.
"""

import signal
import threading
import types

from absl import logging
import tensorflow as tf

from tf_cvae import errors
from tf_cvae import train_step as train_step_lib

# The device-side account of the steps since the last check (BadSteps).
_WINDOW = ("count", "mask", "longest", "update", "limit_update", "limit_mask")
_EMPTY_WINDOW = (0, 0, 0, -1, -1, 0)


class BadSteps(tf.Module):
  """The skipped-step counters (checkpointed with the run) and the stop rule.

  `book` counts a step on the device, inside the loop's step function: no
  value comes back to the host. `check` reads what was booked since the
  previous check, logs the skipped steps and raises once max_consecutive
  were skipped in a row; the loop checks before it logs, validates or saves,
  so nothing is saved after the limit was reached.
  """

  def __init__(self, max_consecutive: int, name: str = "bad_steps"):
    super().__init__(name=name)
    self.max_consecutive = max_consecutive
    self.total = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.consecutive = tf.Variable(0, dtype=tf.int64, trainable=False)
    # Emptied by every check, so not checkpointed (a plain holder is not
    # tracked): count, OR of the masks, longest run, last skipped update,
    # and the update (and mask) at which the limit was reached.
    self._since_check = types.SimpleNamespace(window=tf.Variable(
        _EMPTY_WINDOW, dtype=tf.int64, trainable=False))

  def book(self, nonfinite: tf.Tensor, update: tf.Tensor) -> None:
    """Counts one step on the device (call it inside a tf.function).

    Args:
      nonfinite: the step's int32 "nonfinite" bitmask (0: a good step).
      update: int64, the number of the update the step would have made.
    """
    bad = tf.not_equal(nonfinite, 0)
    skipped = tf.cast(bad, tf.int64)
    consecutive = (self.consecutive + 1) * skipped
    self.consecutive.assign(consecutive)
    self.total.assign_add(skipped)
    window = self._since_check.window
    count, mask, longest, last, limit_update, limit_mask = tf.unstack(window)
    mask64 = tf.cast(nonfinite, tf.int64)
    reached = tf.logical_and(consecutive >= self.max_consecutive,
                             limit_update < 0)
    window.assign(tf.stack([
        count + skipped, tf.bitwise.bitwise_or(mask, mask64),
        tf.maximum(longest, consecutive), tf.where(bad, update, last),
        tf.where(reached, update, limit_update),
        tf.where(reached, mask64, limit_mask)]))

  def check(self, last_dir: str | None = None, advice: str = "") -> bool:
    """Reads the steps booked since the last check (one host read), logs
    the skipped ones; raises errors.TrainingError if max_consecutive were
    skipped in a row. Returns whether the last booked step was skipped.

    The error counts as the warning logged with it does (the same read),
    names the latest checkpoint in `last_dir` if there is one (saved after
    a good step) and ends with `advice` (what to change).
    """
    booked = dict(zip(_WINDOW, self._since_check.window.numpy().tolist()))
    self._since_check.window.assign(_EMPTY_WINDOW)
    total, consecutive = int(self.total), int(self.consecutive)
    if booked["count"]:
      names = ", ".join(train_step_lib.nonfinite_names(booked["mask"]))
      where = (f"step {booked['update']} skipped" if booked["count"] == 1
               else f"{booked['count']} steps skipped up to step "
               f"{booked['update']}")
      logging.warning("%s: non-finite %s (%d in a row, %d skipped in all); "
                      "the weights were not updated", where, names,
                      booked["longest"], total)
    if booked["limit_update"] >= 0:
      last = tf.train.latest_checkpoint(last_dir) if last_dir else None
      kept = (f"The last good checkpoint is {last}" if last else
              "No checkpoint was saved before it")
      raise errors.TrainingError(
          f"training diverged: {booked['longest']} steps in a row up to "
          f"step {booked['update']} had a non-finite {names}, so the run "
          f"stopped (--max_bad_steps={self.max_consecutive}). {kept}"
          + (f"; {advice}" if advice else ""))
    return consecutive > 0


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
