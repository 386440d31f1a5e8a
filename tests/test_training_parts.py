"""The training loop's parts, without training: the epoch-end record, the
step timer, and the non-finite steps counted on the device."""

import dataclasses
import math

import pytest
import tensorflow as tf

from tf_cvae import errors
from tf_cvae.training import faults
from tf_cvae.training import history
from tf_cvae.training import schedule
from tf_cvae.training import timing
from tf_cvae.training import train
from tf_cvae.training import validation

VALID = dict(rec=60.0, kl=2.5, mi=0.75, mi_full=0.8, au=3, infonce_bound=0.5)


def _record(valid_loss_shift=0.0, mi=0.75):
  valid = dict(VALID, rec=VALID["rec"] + valid_loss_shift, mi=mi)
  return validation.record(
      valid, epochs_done=3, partial=False, step_in_epoch=4,
      steps_per_epoch=4, epoch_sums=[8.0, 6.0, 2.0, 1.0, 0.4, 12.0, 0.0],
      step=12, learning_rate=0.5, best_step=8, improved=False)


def test_an_improving_epoch_becomes_the_best():
  before = schedule.PlateauState(best_loss=70.0, best_epoch=2, bad_epochs=1)
  record, state = history.epoch_end(
      _record(), before, epoch=3, patience=2, warmup_epochs=0,
      aggressive=False, earlier_mis=[0.1, 0.2])
  assert state == schedule.PlateauState(best_loss=62.5, best_epoch=3,
                                        bad_epochs=0, decays=0)
  assert record["valid_loss"] == 62.5 and record["epoch"] == 3
  assert record["train_loss"] == 2.0 and record["train_rec"] == 1.5
  assert (record["lr_halved"], record["lr_decays"], record["bad_epochs"],
          record["best_epoch"], record["best_valid_loss"]) == (
              False, 0, 0, 3, 62.5)
  assert "aggressive_ends" not in record


def test_patience_epochs_without_improvement_halve_the_rate():
  before = schedule.PlateauState(best_loss=62.0, best_epoch=2, bad_epochs=1)
  record, state = history.epoch_end(
      _record(), before, epoch=3, patience=2, warmup_epochs=0,
      aggressive=False, earlier_mis=[])
  assert record["lr_halved"] and state.decays == 1 and state.bad_epochs == 0
  assert record["best_epoch"] == 2 and record["best_valid_loss"] == 62.0
  # Inside the warm-up the same epoch counts against nothing.
  record, state = history.epoch_end(
      _record(), before, epoch=3, patience=2, warmup_epochs=3,
      aggressive=False, earlier_mis=[])
  assert not record["lr_halved"] and state == before


@pytest.mark.parametrize("earlier, mi, ends", [
    ([], 0.75, False),              # one epoch: nothing to compare with
    ([0.5], 0.75, False),           # MI still rising
    ([0.5, 0.9], 0.75, True),       # no higher than the epoch before
    ([0.75], 0.75, True)])
def test_aggressive_training_ends_once_the_mi_stops_rising(earlier, mi, ends):
  record, _ = history.epoch_end(
      _record(mi=mi), schedule.PlateauState(), epoch=len(earlier) + 1,
      patience=2, warmup_epochs=0, aggressive=True, earlier_mis=earlier)
  assert record["aggressive_ends"] is ends and record["valid_mi"] == mi


def test_a_nan_loss_never_improves():
  before = schedule.PlateauState(best_loss=62.0, best_epoch=1)
  record, state = history.epoch_end(
      _record(valid_loss_shift=math.nan), before, epoch=2, patience=5,
      warmup_epochs=0, aggressive=False, earlier_mis=[])
  assert state.best_epoch == 1 and state.bad_epochs == 1
  assert record["best_valid_loss"] == 62.0


class _Clock:
  """A clock the test moves by hand (seconds)."""

  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_step_timer_skips_the_warm_up_and_the_pauses():
  clock = _Clock()
  timer = timing.StepTimer(warmup_steps=2, clock=clock)
  for seconds in (5.0, 3.0):          # tracing: not timed
    clock.now += seconds
    timer.tick()
  assert timer.seconds_per_step() is None
  for _ in range(4):
    clock.now += 0.5
    timer.tick()
  with timer.pause():                 # a validation
    clock.now += 10.0
  clock.now += 0.5
  timer.tick()
  assert timer.steps == 5
  assert timer.seconds_per_step() == pytest.approx(0.5)
  # The rate since the start (warm-up included), pauses left out.
  assert timer.lap() == pytest.approx(7 / 10.5)
  clock.now += 1.0
  timer.tick(4)
  assert timer.lap() == pytest.approx(4.0)


def test_seconds_times_a_call():
  assert timing.seconds(lambda: None) >= 0.0


def _book(bad_steps, masks, first_update=1):
  """Books steps with these masks; a good step advances the update count."""
  update = first_update
  book = tf.function(bad_steps.book)
  for mask in masks:
    book(tf.constant(mask, tf.int32), tf.constant(update, tf.int64))
    update += 0 if mask else 1


def test_bad_steps_are_counted_on_the_device_and_read_at_checks(caplog):
  bad_steps = faults.BadSteps(max_consecutive=3)
  _book(bad_steps, [0, 1, 0, 2, 4, 0])    # updates 1, 2 (skip), 2, 3, 3, 3
  assert int(bad_steps.total) == 3 and int(bad_steps.consecutive) == 0
  assert not bad_steps.check()
  assert ("3 steps skipped up to step 3: non-finite reconstruction, kl, "
          "critic (2 in a row, 3 skipped in all)") in caplog.text
  caplog.clear()
  _book(bad_steps, [0, 16], first_update=4)
  assert bad_steps.check()   # the last step was skipped
  assert ("step 5 skipped: non-finite gradients (1 in a row, 4 skipped in "
          "all)") in caplog.text
  caplog.clear()
  # Nothing booked since: nothing logged; the last step stays the skipped one.
  assert bad_steps.check() and not caplog.text


def test_too_many_bad_steps_in_a_row_stop_at_the_next_check(tmp_path,
                                                           caplog):
  bad_steps = faults.BadSteps(max_consecutive=3)
  # The 3rd bad step in a row is at update 2; the good steps after it do
  # not hide it.
  _book(bad_steps, [0, 2, 2, 2, 1, 0, 0])
  with pytest.raises(errors.TrainingError) as error:
    bad_steps.check(str(tmp_path / "none"), "lower --learning_rate")
  message = str(error.value)
  # Counted as the warning of the same read counts.
  assert ("4 steps skipped up to step 2: non-finite reconstruction, kl (4 "
          "in a row, 4 skipped in all)") in caplog.text
  assert message == (
      "training diverged: 4 steps in a row up to step 2 had a non-finite "
      "reconstruction, kl, so the run stopped (--max_bad_steps=3). No "
      "checkpoint was saved before it; lower --learning_rate")
  # A checkpoint saved before: named.
  path = tf.train.CheckpointManager(tf.train.Checkpoint(
      v=tf.Variable(1.0)), str(tmp_path / "last"), 2).save(checkpoint_number=1)
  _book(bad_steps, [2, 2, 2])
  with pytest.raises(errors.TrainingError,
                     match=f"The last good checkpoint is {path}$"):
    bad_steps.check(str(tmp_path / "last"))


def test_divergence_advice_suggests_only_what_is_not_set():
  config = train.TrainConfig()
  assert train.divergence_advice(config) == (
      "lower --learning_rate, and train into a new --out_dir")
  unclipped = dataclasses.replace(config, clip_norm=None, critic="self")
  assert train.divergence_advice(unclipped) == (
      "lower --learning_rate or --critic_weight, or set --clip_norm, and "
      "train into a new --out_dir")


def test_only_the_totals_of_bad_steps_are_checkpointed(tmp_path):
  bad_steps = faults.BadSteps(max_consecutive=3)
  _book(bad_steps, [0, 1, 1])
  path = tf.train.Checkpoint(bad_steps=bad_steps).save(str(tmp_path / "c"))
  saved = {name: tf.train.load_variable(path, name)
           for name, _ in tf.train.list_variables(path)
           if name.startswith("bad_steps/")}
  assert saved == {"bad_steps/total/.ATTRIBUTES/VARIABLE_VALUE": 2,
                   "bad_steps/consecutive/.ATTRIBUTES/VARIABLE_VALUE": 2}
