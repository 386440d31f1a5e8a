"""What a training run's checkpoint holds, and its two folders.

`LoopState` is the training loop's own state (position in the data, this
epoch's sums, best validation, aggressive switch, learning-rate schedule,
skipped steps, training seconds over every resumed segment), booked on the
device step by step. `Checkpoints` puts it with the networks and optimizers
(training_checkpoint) and saves and restores it: out_dir/checkpoints keeps
the last two, out_dir/best the best.
"""

import errno
import glob
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from tf_cvae import errors
from tf_cvae import train_step as train_step_lib
from tf_cvae.training import faults
from tf_cvae.training import schedule
from tf_cvae.training import validation


def model_parts(step_fn: train_step_lib.TrainStep) -> dict:
  """The networks a checkpoint holds under these names (evaluation's share)."""
  parts = dict(vae=step_fn.vae, critic=step_fn.critic,
               model_critic=step_fn.model_critic)
  return {name: part for name, part in parts.items() if part is not None}


def restore_model(step_fn: train_step_lib.TrainStep, path: str) -> None:
  """Loads the networks (not the optimizers) of checkpoint `path`."""
  try:
    status = tf.train.Checkpoint(**model_parts(step_fn)).restore(path)
    status.expect_partial().assert_existing_objects_matched()
  except (AssertionError, ValueError) as error:
    raise errors.InputError(f"checkpoint {path} does not fit the model of "
                            f"its config.json: {error}") from None


CHECKPOINT_DIRS = {"best": "best", "last": "checkpoints"}


def training_checkpoint(step_fn: train_step_lib.TrainStep, out_dir: str,
                        **state):
  """(checkpoint, last manager, best manager) of a training run.

  The checkpoint holds the networks, the optimizers, the negative queue, the
  critic's Lagrange multiplier, the dropout random state and the `state`
  variables (the loop's counters and
  schedules), so a resumed run goes on exactly where it stopped.
  """
  tracked = dict(model_parts(step_fn), negatives=step_fn.negatives,
                 encoder_optimizer=step_fn.encoder_optimizer,
                 critic_optimizer=step_fn.critic_optimizer,
                 critic_multiplier=step_fn.multiplier)
  # Keras keeps dropout's random state in seed-generator variables that
  # tf.train.Checkpoint does not reach through the layers: a resumed run
  # would replay the first steps' dropout masks without them.
  rng_states = [v.value for part in model_parts(step_fn).values()
                for v in part.variables if "seed_generator" in v.path]
  checkpoint = tf.train.Checkpoint(
      optimizer=step_fn.optimizer, dropout_rng=rng_states, **state,
      **{k: v for k, v in tracked.items() if v is not None})
  managers = [tf.train.CheckpointManager(
      checkpoint, os.path.join(out_dir, CHECKPOINT_DIRS[which]),
      max_to_keep=keep) for which, keep in (("last", 2), ("best", 1))]
  return checkpoint, *managers


class LoopState(tf.Module):
  """The loop's counters and schedules, all tf.Variables (checkpointed)."""

  def __init__(self, step_fn: train_step_lib.TrainStep, aggressive: bool,
               max_bad_steps: int, pretrain_steps: int = 0):
    super().__init__(name="loop_state")
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    # This epoch's sums of the step outputs validation.EPOCH_MEANS names.
    self.epoch_sums = tf.Variable(tf.zeros([len(validation.EPOCH_MEANS)],
                                           tf.float64), trainable=False)
    self.best_validation = validation.BestVariables()
    self.aggressive = tf.Variable(aggressive, trainable=False)
    self.schedule = schedule.PlateauVariables()
    self.bad_steps = faults.BadSteps(max_bad_steps)
    self.decoder_reset = (schedule.DecoderReset(step_fn, pretrain_steps)
                          if pretrain_steps else None)
    self._iterations = step_fn.optimizer.iterations
    # Wall seconds of training up to the last save, this segment included.
    self.train_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False)
    self._clock = (time.time(), 0.0)

  def start_clock(self) -> None:
    """Times a segment from now, after the seconds of the restored ones."""
    self._clock = (time.time(), float(self.train_seconds.numpy()))

  def tick(self) -> float:
    """Training seconds so far, every segment (stored for the next save)."""
    started, before = self._clock
    self.train_seconds.assign(before + time.time() - started)
    return float(self.train_seconds.numpy())

  def checkpointed(self) -> dict:
    """The variables by their names in the checkpoint."""
    variables = dict(epoch=self.epoch, step_in_epoch=self.step_in_epoch,
                     epoch_sums=self.epoch_sums,
                     best_validation=self.best_validation,
                     aggressive=self.aggressive, lr_schedule=self.schedule,
                     bad_steps=self.bad_steps,
                     train_seconds=self.train_seconds)
    if self.decoder_reset is not None:
      variables["decoder_reset"] = self.decoder_reset
    return variables

  def book(self, outputs: dict) -> None:
    """Counts a train step's outputs (scalar tensors) on the device, inside
    the step's tf.function after its update (TrainStep.book_with): its place
    in the epoch, the epoch's sums (a finite step's only), the skipped
    steps. Nothing is read back to the host."""
    nonfinite = outputs["nonfinite"]
    iterations = tf.cast(tf.convert_to_tensor(self._iterations), tf.int64)
    self.step_in_epoch.assign_add(1)
    sums = tf.stack([tf.cast(outputs.get(k, 0.0), tf.float64)
                     for k in validation.EPOCH_MEANS])
    self.epoch_sums.assign_add(tf.where(tf.equal(nonfinite, 0), sums,
                                        tf.zeros_like(sums)))
    # A skipped step left iterations as they were: it would have made the next.
    self.bad_steps.book(nonfinite, iterations + 1)

  def restart_epoch(self) -> None:
    """Empties the position in the epoch and its sums (at an epoch's end)."""
    self.step_in_epoch.assign(0)
    self.epoch_sums.assign(tf.zeros_like(self.epoch_sums))


class Checkpoints:
  """The run's checkpoint: `last` (out_dir/checkpoints, 2 kept) and `best`
  (out_dir/best, 1 kept) managers of the same tf.train.Checkpoint."""

  def __init__(self, step_fn: train_step_lib.TrainStep, out_dir: str,
               state: LoopState):
    self._state = state
    parts = state.checkpointed()
    self.checkpoint, self.last, self.best = training_checkpoint(
        step_fn, out_dir, **parts)
    # What a checkpoint from before train_seconds was kept holds.
    del parts["train_seconds"]
    self._without_seconds = training_checkpoint(step_fn, out_dir, **parts)[0]

  def best_path(self, step: int) -> str:
    """The best checkpoint saved at update `step`."""
    return os.path.join(self.best.directory, f"ckpt-{step}")

  def save_last(self, step: int) -> str:
    """Saves into checkpoints/ as ckpt-<step>; returns its path."""
    return self._save(self.last, step)

  def save_best(self, step: int) -> str:
    """Saves into best/ as ckpt-<step> (the previous best goes)."""
    return self._save(self.best, step)

  def _save(self, manager: tf.train.CheckpointManager, step: int) -> str:
    """manager.save as ckpt-<step>. A full disk leaves nothing half-written
    (the ckpt-<step>_temp folder and files no checkpoint list names are
    removed) and raises errors.TrainingError: one line naming the folder
    and the space a checkpoint needs."""
    self._state.tick()
    try:
      return manager.save(checkpoint_number=step)
    except (tf.errors.ResourceExhaustedError, OSError) as error:
      if isinstance(error, OSError) and error.errno != errno.ENOSPC:
        raise
      _remove_partial(manager, step)
      raise errors.TrainingError(
          f"no space left to save a checkpoint in {manager.directory}: one "
          f"needs about {_size(checkpoint_megabytes(self.checkpoint))}; free "
          "that much there and run the same command again (it resumes from "
          "the last checkpoint saved)") from None

  def restore_last(self) -> bool:
    """Restores the last checkpoint whole; False if there is none."""
    path = self.last.latest_checkpoint
    if not path:
      return False
    names = {name for name, _ in tf.train.list_variables(path)}
    checkpoint = (self.checkpoint if any(
        n.startswith("train_seconds/") for n in names)
                  else self._without_seconds)
    try:
      checkpoint.restore(path).assert_existing_objects_matched()
    except AssertionError as error:
      raise errors.InputError(
          f"{path} lacks parts of this version's training state (written by "
          f"an older tf_cvae?); pass a new --out_dir: {error}") from None
    self._state.start_clock()       # after the restored seconds
    return True


def _remove_partial(manager: tf.train.CheckpointManager, step: int) -> None:
  """Removes what a failed save of ckpt-<step> left in manager.directory:
  its _temp folder, and its files unless a kept checkpoint has that name."""
  prefix = os.path.join(manager.directory, f"ckpt-{step}")
  for path in glob.glob(glob.escape(prefix) + "_temp*"):
    shutil.rmtree(path, ignore_errors=True)
  if prefix not in manager.checkpoints:
    for path in glob.glob(glob.escape(prefix) + ".*"):
      os.remove(path)


def checkpoint_megabytes(checkpoint: tf.train.Checkpoint) -> float:
  """What the variables (TensorFlow's and Keras's) a checkpoint holds weigh,
  in MB (10^6 bytes)."""
  total = 0
  for item in tf.train.TrackableView(checkpoint).descendants():
    if isinstance(item, (tf.Variable, keras.Variable)):
      total += (int(np.prod(item.shape, dtype=np.int64))
                * tf.as_dtype(item.dtype).size)
  return total / 1e6


def _size(megabytes: float) -> str:
  """"12.3 MB", or "45 kB" under 1 MB."""
  return (f"{megabytes:.1f} MB" if megabytes >= 1 else
          f"{max(megabytes * 1000, 1):.0f} kB")
