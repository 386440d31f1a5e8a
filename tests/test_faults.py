"""Faults a run survives: NaN steps (skipped, counted, named; a diverged run
stops and keeps its best checkpoint), SIGTERM (checkpoint, then exit), SIGKILL
(the same command resumes and ends where an uninterrupted run ends), and a
writer killed in the middle of a checkpoint (the previous one still loads)."""

import dataclasses
import errno
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import critics
from tf_cvae import data as data_lib
from tf_cvae import errors
from tf_cvae import objective
from tf_cvae import train_step
from tf_cvae.models import registry
from tf_cvae.trained import restore
from tf_cvae.training import build
from tf_cvae.training import evaluation
from tf_cvae.training import train

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = registry.ModelConfig(embed_dim=16, hidden_dim=16, latent_dim=4,
                            decoder_dropout=0.0)


def _poison(monkeypatch, term: str, first_call: int, last_call: int):
  """Makes objective.forward's `term` (a Terms field, "critic.<field>" for
  the critic's) NaN on its calls first..last (counted from 0, the build
  call included); returns the call counter."""
  real_forward = objective.forward
  calls = tf.Variable(-1, dtype=tf.int64, trainable=False)

  def forward(*args, **kwargs):
    terms = real_forward(*args, **kwargs)
    call = calls.assign_add(1)
    bad = tf.logical_and(call >= first_call, call <= last_call)
    *owner, name = term.split(".")
    parent = getattr(terms, owner[0]) if owner else terms
    poisoned = dataclasses.replace(parent, **{name: getattr(parent, name) + (
        tf.where(bad, float("nan"), 0.0))})
    return (dataclasses.replace(terms, **{owner[0]: poisoned}) if owner
            else poisoned)

  monkeypatch.setattr(objective, "forward", forward)
  return calls


def test_a_nan_step_changes_nothing_and_names_its_term(monkeypatch):
  calls = _poison(monkeypatch, "critic.log_softmax_positive", 2, 2)
  dataset = data_lib.load(data_lib.DataConfig(name="synthetic_text"))
  vae = registry.build_vae(TINY, dataset)
  step = train_step.TrainStep(
      vae, critics.build_critic("self", vae, dataset),
      build.make_optimizer(train.TrainConfig(), "text"),
      objective.ObjectiveConfig(critic_weight=1.0), num_negatives=64,
      clip_norm=5.0)
  batch = next(iter(dataset.batches("train", 32, drop_remainder=True)))
  assert int(step(batch)["nonfinite"]) == 0            # calls 0 (build), 1
  before = [v.numpy() for v in step.variables]
  queue_before = step.negatives.rows.numpy()
  out = step(batch)                                     # call 2: poisoned
  # (An added NaN constant leaves the gradients finite.)
  assert train_step.nonfinite_names(int(out["nonfinite"])) == ["critic"]
  assert step.iterations == 1
  for old, variable in zip(before, step.variables):
    np.testing.assert_array_equal(old, variable.numpy())
  np.testing.assert_array_equal(queue_before, step.negatives.rows.numpy())
  assert int(step(batch)["nonfinite"]) == 0 and step.iterations == 2
  assert int(calls) == 3


def _config(files, out_dir, **overrides):
  fields = dict(data=data_lib.DataConfig(name="text", **files), model=TINY,
                eval=evaluation.EvalConfig(iw_samples=4, iw_chunk_size=4),
                epochs=4, out_dir=str(out_dir), log_every=1000,
                checkpoint_every=1000)
  fields.update(overrides)
  return train.TrainConfig(**fields)


@pytest.mark.slow
def test_an_isolated_nan_is_skipped_and_counted(monkeypatch, text_files,
                                                tmp_path, caplog):
  _poison(monkeypatch, "kl", 12, 12)
  config = _config(text_files, tmp_path / "run", epochs=2)
  results = train.run(config)
  assert results["skipped_steps"] == 1
  # Counted on the device, named at the next read (here the epoch's end).
  assert re.search(r"step \d+ skipped: non-finite kl \(1 in a row, 1 "
                   r"skipped in all\)", caplog.text)
  dataset = data_lib.load(config.data)
  batches = sum(len(list(build.epoch_batches(dataset, config, epoch)))
                for epoch in (0, 1))
  assert results["steps"] == batches - 1 and np.isfinite(results["nll"])


@pytest.mark.slow
def test_a_diverged_run_stops_and_keeps_its_best_checkpoint(
    monkeypatch, text_files, tmp_path, caplog):
  # Every forward pass from the 25th call on (validation's count too) is NaN:
  # an earlier epoch's end saved the best checkpoint, then 5 bad steps in a
  # row stop the run. The steps are counted on the device and read at the
  # epoch's end (log_every is 1000): the run stops there, before validating
  # or saving anything.
  _poison(monkeypatch, "log_likelihood", 25, 10**9)
  config = _config(text_files, tmp_path / "run", max_bad_steps=5)
  with pytest.raises(errors.TrainingError) as error:
    train.run(config)
  message = str(error.value)
  skipped = re.search(r"(\d+) steps skipped up to step (\d+): non-finite "
                      r"reconstruction \((\d+) in a row, (\d+) skipped in "
                      r"all\)", caplog.text)
  assert skipped, caplog.text
  count, stopped_at = int(skipped[1]), int(skipped[2])
  assert count >= 5 and skipped[3] == skipped[4] == skipped[1]
  # The limit's step: where the 5th bad step in a row was, as read per step.
  # Counted as the warning before it, naming the last good checkpoint.
  assert (f"training diverged: {count} steps in a row up to step "
          f"{stopped_at} had a non-finite reconstruction") in message
  last_good = tf.train.latest_checkpoint(os.path.join(config.out_dir,
                                                      "checkpoints"))
  assert f"The last good checkpoint is {last_good};" in message
  assert "--clip_norm" not in message        # set already (5 by default)
  assert not os.path.exists(os.path.join(config.out_dir, "metrics.json"))
  assert all(r["step"] < stopped_at for r in _history(config.out_dir))
  last = tf.train.latest_checkpoint(os.path.join(config.out_dir,
                                                 "checkpoints"))
  assert int(last.rsplit("-", 1)[1]) < stopped_at
  step_fn = restore.restore_run(config.out_dir, "best").step_fn
  assert all(np.all(np.isfinite(v.numpy())) for v in step_fn.variables)


RUNNER_FLAGS = ("--dataset=text", "--embed_dim=16", "--hidden_dim=16",
                "--latent_dim=4", "--decoder_dropout=0.2", "--iw_samples=4",
                "--iw_chunk_size=4", "--log_every=1", "--checkpoint_every=5",
                "--epochs=6")


def _flags(text_files, out_dir, *extra):
  files = [f"--{k}={v}" for k, v in text_files.items()]
  return [*files, *RUNNER_FLAGS, f"--out_dir={out_dir}", *extra]


def _runner(text_files, out_dir, *extra):
  """The command of a fresh process (one the test signals)."""
  return [sys.executable, os.path.join(_REPO_ROOT, "runners", "train.py"),
          *_flags(text_files, out_dir, *extra)]


def _start_and_wait(command, log_path, ready) -> subprocess.Popen:
  """Starts a runner; returns once ready(log text) holds (or it ended)."""
  log = open(log_path, "w")
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log,
                             cwd=_REPO_ROOT)
  deadline = time.time() + 300
  while time.time() < deadline and process.poll() is None:
    with open(log_path) as f:
      if ready(f.read()):
        break
    time.sleep(0.05)
  return process


def _history(run_dir):
  """history.jsonl's records without their wall times (epoch_seconds,
  validation_seconds), which differ from run to run."""
  with open(os.path.join(run_dir, "history.jsonl")) as f:
    return [{k: v for k, v in json.loads(line).items()
             if not k.endswith("_seconds")} for line in f]


@pytest.mark.slow
def test_sigterm_then_sigkill_resume_to_the_uninterrupted_result(
    text_files, tmp_path, run_runner, checkpoint_step):
  """A run stopped by SIGTERM saves a checkpoint and exits 128 + 15; the same
  command resumes there; killed by SIGKILL in its 4th epoch, the same
  command resumes from the last checkpoint; the run ends with the history
  and metrics of a run never interrupted."""
  whole = run_runner("train.py", *_flags(text_files, tmp_path / "whole"))
  assert whole.returncode == 0, whole.stderr[-3000:]
  out = tmp_path / "run"
  process = _start_and_wait(_runner(text_files, out), tmp_path / "log1",
                            lambda log: "epoch 2 of 6: " in log)
  process.send_signal(signal.SIGTERM)
  assert process.wait(timeout=120) == 128 + signal.SIGTERM
  log = (tmp_path / "log1").read_text()
  assert "SIGTERM received" in log and "interrupted: stopped by signal" in log
  saved = tf.train.latest_checkpoint(str(out / "checkpoints"))
  stopped_at = checkpoint_step(out / "checkpoints")
  assert stopped_at >= 2 and f"saved {saved}" in log

  process = _start_and_wait(
      _runner(text_files, out), tmp_path / "log2",
      lambda log: "epoch 4 of 6: " in log)  # after epoch 3's checkpoint
  process.kill()
  process.wait(timeout=60)
  assert f"at step {stopped_at}," in (tmp_path / "log2").read_text()
  killed_at = checkpoint_step(out / "checkpoints")
  assert killed_at > stopped_at
  again = run_runner("train.py", *_flags(text_files, out))
  assert again.returncode == 0, again.stderr[-3000:]
  assert f"at step {killed_at}," in again.stderr

  want, got = _history(tmp_path / "whole"), _history(out)
  assert [r["epoch"] for r in got] == [1, 2, 3, 4, 5, 6]
  assert [r["step"] for r in got] == [r["step"] for r in want]
  for a, b in zip(got, want):
    for key in b:
      assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
  with open(tmp_path / "whole" / "metrics.json") as f:
    whole_metrics = json.load(f)
  with open(out / "metrics.json") as f:
    resumed = json.load(f)
  def same(got, want, where=""):
    for key, value in want.items():
      if isinstance(value, dict):       # test_last, test_best
        same(got[key], value, f"{key}/")
      elif isinstance(value, str):
        assert got[key] == value, where + key
      elif "seconds" not in key:        # wall times differ
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (
            where + key)
  same(resumed, whole_metrics)


WRITER = r'''
import sys, tensorflow as tf
step = tf.Variable(1)
big = tf.Variable(tf.fill([64, 1024, 1024], 1.0))   # 256 MB: a slow write
manager = tf.train.CheckpointManager(tf.train.Checkpoint(step=step, big=big),
                                     sys.argv[1], max_to_keep=2)
manager.save(checkpoint_number=1)
print("first saved", flush=True)
step.assign(2); big.assign(tf.fill([64, 1024, 1024], 2.0))
manager.save(checkpoint_number=2)
print("second saved", flush=True)
'''


@pytest.mark.slow
def test_a_writer_killed_mid_checkpoint_leaves_the_previous_one(tmp_path):
  """tf.train.CheckpointManager, as the run uses it, writes into a temporary
  name and renames, and names the latest checkpoint last: kill it while the
  second checkpoint's data is being written, and the first one loads."""
  script = tmp_path / "writer.py"
  script.write_text(WRITER)
  folder = tmp_path / "checkpoints"
  for _ in range(3):        # the kill must land inside the second write
    for path in glob.glob(str(folder / "*")):
      os.remove(path) if os.path.isfile(path) else None
    process = subprocess.Popen([sys.executable, str(script), str(folder)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "first saved"
    while not glob.glob(str(folder / "ckpt-2*")) and process.poll() is None:
      time.sleep(0.001)
    process.kill()
    process.wait()
    if tf.train.latest_checkpoint(str(folder)).endswith("ckpt-1"):
      break
  assert tf.train.latest_checkpoint(str(folder)).endswith("ckpt-1")
  step = tf.Variable(0)
  big = tf.Variable(tf.zeros([64, 1024, 1024]))
  tf.train.Checkpoint(step=step, big=big).restore(
      tf.train.latest_checkpoint(str(folder))).assert_consumed()
  assert int(step) == 1 and float(big[0, 0, 0]) == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("failure", [
    tf.errors.ResourceExhaustedError(None, None, "No space left on device"),
    OSError(errno.ENOSPC, "No space left on device")])
def test_a_full_disk_at_a_checkpoint_is_one_line_and_leaves_no_temp(
    monkeypatch, text_files, tmp_path, failure, caplog):
  config = _config(text_files, tmp_path / "run", epochs=1, max_steps=6,
                   checkpoint_every=2)
  real_save = tf.train.CheckpointManager.save

  def save(manager, checkpoint_number=None, **kwargs):
    if checkpoint_number >= 4:        # the disk fills after ckpt-2
      os.makedirs(os.path.join(manager.directory,
                               f"ckpt-{checkpoint_number}_temp"))
      open(os.path.join(manager.directory, f"ckpt-{checkpoint_number}"
                        "_temp", "part-00000"), "w").close()
      raise failure
    return real_save(manager, checkpoint_number=checkpoint_number, **kwargs)

  monkeypatch.setattr(tf.train.CheckpointManager, "save", save)
  with pytest.raises(errors.TrainingError) as error:
    train.run(config)
  message = str(error.value)
  folder = os.path.join(config.out_dir, "checkpoints")
  found = re.fullmatch(r"no space left to save a checkpoint in (\S+): one "
                       r"needs about (\d+) kB; free that much there and "
                       r"run the same command again \(it resumes from the "
                       r"last checkpoint saved\)", message)
  assert found and found[1] == folder, message
  assert 10 < int(found[2]) < 1000     # some 6,000 float32 parameters
  assert not glob.glob(os.path.join(config.out_dir, "*", "*_temp*"))
  assert tf.train.latest_checkpoint(folder).endswith("ckpt-2")
  # With space again, the same run resumes from the last good checkpoint.
  monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
  caplog.clear()
  caplog.set_level("INFO", logger="absl")
  results = train.run(config)
  assert re.search(r"resumed from \S+ckpt-2 at step 2", caplog.text)
  assert results["steps"] == 6
