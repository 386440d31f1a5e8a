"""A run's checkpoints and TensorBoard summaries, without training a run:
what a checkpoint holds and gives back, how many are kept, what a full disk
leaves, and the scalars a step writes."""

import errno
import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import data as data_lib
from tf_cvae import errors
from tf_cvae import objective
from tf_cvae.models import registry
from tf_cvae.training import build
from tf_cvae.training import checkpointing
from tf_cvae.training import summaries
from tf_cvae.training import train

TINY = registry.ModelConfig(embed_dim=8, hidden_dim=8, latent_dim=2,
                            decoder_dropout=0.3)


@pytest.fixture(scope="module")
def text():
  return data_lib.load(data_lib.DataConfig(name="synthetic_text"))


def _step(text, critic="self", **objective_fields):
  config = train.TrainConfig(
      model=TINY, critic=critic,
      objective=objective.ObjectiveConfig(critic_weight=1.0,
                                          **objective_fields))
  step = build.build_train_step(config, text)
  batch = next(iter(text.batches("train", 8, drop_remainder=True)))
  step.build(batch)
  return step, batch


def _parts(step, out_dir):
  state = checkpointing.LoopState(step, aggressive=False, max_bad_steps=3)
  return state, checkpointing.Checkpoints(step, str(out_dir), state)


def test_the_last_checkpoint_gives_back_networks_optimizer_and_loop_state(
    text, tmp_path):
  step, batch = _step(text)
  state, checkpoints = _parts(step, tmp_path)
  assert not checkpoints.restore_last()          # nothing saved yet
  for _ in range(2):
    state.book(step(batch))
  state.epoch.assign(3)
  saved = [v.numpy().copy() for v in step.variables]
  path = checkpoints.save_last(2)
  assert path == os.path.join(tmp_path, "checkpoints", "ckpt-2")
  step(batch)                                    # moves weights and slots
  state.epoch.assign(5)
  state.restart_epoch()
  assert checkpoints.restore_last()
  assert int(step.optimizer.iterations) == 2
  assert int(state.epoch) == 3 and int(state.step_in_epoch) == 2
  assert float(state.epoch_sums[0]) != 0.0
  for before, after in zip(saved, step.variables):
    np.testing.assert_array_equal(before, after.numpy())


def test_training_seconds_add_up_over_resumed_segments(text, tmp_path,
                                                       monkeypatch):
  """train_seconds is saved with each checkpoint: a run resumed from it
  counts the seconds before the save, not only its own segment."""
  now = [1000.0]
  monkeypatch.setattr(checkpointing.time, "time", lambda: now[0])
  step, _ = _step(text, critic="none")
  state, checkpoints = _parts(step, tmp_path)
  state.start_clock()
  now[0] += 30.0
  checkpoints.save_last(1)                    # 30 s into the first segment
  now[0] += 500.0                             # lost: after the last save
  state, checkpoints = _parts(step, tmp_path)
  assert checkpoints.restore_last()
  now[0] += 7.0                               # the restart itself
  state.start_clock()
  now[0] += 20.0
  assert state.tick() == pytest.approx(50.0)


def test_a_checkpoint_saved_without_training_seconds_resumes(text, tmp_path):
  step, batch = _step(text, critic="none")
  state, checkpoints = _parts(step, tmp_path)
  state.book(step(batch))
  parts = state.checkpointed()
  del parts["train_seconds"]                  # what an earlier version saved
  _, manager, _ = checkpointing.training_checkpoint(step, str(tmp_path),
                                                      **parts)
  manager.save(checkpoint_number=1)
  state, checkpoints = _parts(step, tmp_path)
  assert checkpoints.restore_last()
  assert int(state.step_in_epoch) == 1 and float(state.train_seconds) == 0.0


def test_two_last_checkpoints_and_one_best_are_kept(text, tmp_path):
  step, _ = _step(text, critic="none")
  _, checkpoints = _parts(step, tmp_path)
  for at in (1, 2, 3):
    checkpoints.save_last(at)
  checkpoints.save_best(1)
  checkpoints.save_best(3)
  assert checkpoints.last.checkpoints == [
      os.path.join(tmp_path, "checkpoints", f"ckpt-{at}") for at in (2, 3)]
  assert checkpoints.best.checkpoints == [checkpoints.best_path(3)]


def test_restoring_the_networks_of_another_model_names_the_checkpoint(
    text, tmp_path):
  step, _ = _step(text, critic="none")
  _, checkpoints = _parts(step, tmp_path)
  path = checkpoints.save_last(1)
  other = train.TrainConfig(model=registry.ModelConfig(
      embed_dim=8, hidden_dim=12, latent_dim=2))
  wider = build.build_train_step(other, text)
  wider.build(next(iter(text.batches("train", 8, drop_remainder=True))))
  with pytest.raises(errors.InputError, match="does not fit the model"):
    checkpointing.restore_model(wider, path)
  checkpointing.restore_model(step, path)        # its own model restores


def test_a_full_disk_leaves_no_partial_checkpoint_and_names_the_space(
    text, tmp_path, monkeypatch):
  step, _ = _step(text, critic="none")
  _, checkpoints = _parts(step, tmp_path)
  kept = checkpoints.save_last(1)
  folder = os.path.join(tmp_path, "checkpoints")

  def full_disk(checkpoint_number):
    os.makedirs(os.path.join(folder, f"ckpt-{checkpoint_number}_temp"))
    with open(os.path.join(folder, f"ckpt-{checkpoint_number}.index"),
              "w") as f:
      f.write("half")
    raise OSError(errno.ENOSPC, "No space left on device")
  monkeypatch.setattr(checkpoints.last, "save", full_disk)
  with pytest.raises(errors.TrainingError) as error:
    checkpoints.save_last(2)
  megabytes = checkpointing.checkpoint_megabytes(checkpoints.checkpoint)
  parameters = sum(int(np.prod(v.shape)) for v in step.vae.variables)
  assert megabytes >= parameters * 4 / 1e6       # float32 weights at least
  assert f"in {folder}" in str(error.value) and "kB" in str(error.value)
  assert sorted(os.path.basename(p) for p in glob.glob(folder + "/ckpt-2*")
                ) == []
  assert tf.train.latest_checkpoint(folder) == kept


def _scalars(log_dir) -> dict:
  values = {}
  for path in glob.glob(os.path.join(log_dir, "events.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        values[(value.tag, event.step)] = float(
            tf.make_ndarray(value.tensor))
  return values


def test_scalars_are_written_by_name_and_step_and_others_skipped(tmp_path):
  writer = tf.summary.create_file_writer(str(tmp_path))
  summaries.write_scalars(writer, "train", dict(
      loss=2.5, kl=np.float32(0.25), mi=tf.constant(1.5), name="skipped"), 7)
  writer.flush()
  assert _scalars(tmp_path) == {("train/loss", 7): 2.5,
                                ("train/kl", 7): 0.25, ("train/mi", 7): 1.5}


def test_step_scalars_add_the_schedule_and_drop_what_does_not_act(text):
  step, batch = _step(text, critic="none", kl_anneal_steps=10)
  outputs = step(batch)
  values = summaries.step_scalars(outputs, step, step=6, skipped_steps=1)
  assert "nonfinite" not in values and "critic_lambda" not in values
  # The update before step 6 took beta from 0.1 up 5 of 10 steps to 1.
  assert float(values["beta"]) == pytest.approx(0.1 + 0.9 * 5 / 10)
  assert values["skipped_steps"] == 1
  assert float(values["learning_rate"]) == pytest.approx(1.0)
  hinged, _ = _step(text, critic_target=50.0, critic_constraint="hinge")
  values = summaries.step_scalars(hinged(batch), hinged, 1, 0)
  assert values["critic_constraint_active"] == 1.0    # bound < log 8 < 50
