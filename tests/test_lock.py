"""One process per run directory: a flock on out_dir/LOCK, held by a real
second process, free again once that process is killed."""

import json
import os
import socket
import subprocess
import sys

import pytest

from tf_cvae import data as data_lib
from tf_cvae import errors
from tf_cvae.training import lock
from tf_cvae.training import train

# A process that holds the lock of argv[1], says so, and sleeps.
_HOLDER = """
import sys, time
from tf_cvae.training import lock
lock.RunLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
  """A second process holding tmp_path/run's lock (killed at the end)."""
  run_dir = str(tmp_path / "run")
  process = subprocess.Popen([sys.executable, "-c", _HOLDER, run_dir],
                             stdout=subprocess.PIPE, text=True)
  try:
    assert process.stdout.readline() == "held\n"
    yield run_dir, process.pid
  finally:
    process.kill()
    process.wait()


def _lock_file(run_dir) -> dict:
  with open(os.path.join(run_dir, "LOCK")) as f:
    return json.load(f)


def test_a_second_process_on_a_locked_run_dir_fails_naming_the_holder(holder):
  run_dir, pid = holder
  held = _lock_file(run_dir)
  assert held["pid"] == pid and held["host"] == socket.gethostname()
  with pytest.raises(lock.RunDirectoryLocked) as error:
    lock.RunLock(run_dir).acquire()
  message = str(error.value)
  print(message)
  assert message == (
      f"{run_dir} is in use by pid {pid} on {socket.gethostname()} since "
      f"{held['started']}; one process per run directory: wait for it, stop "
      f"it, or pass another --out_dir")
  # train.run refuses before it reads or writes anything; runners map the
  # error (an InputError) to one line and exit status 2.
  with pytest.raises(errors.InputError, match=f"in use by pid {pid} "):
    train.run(train.TrainConfig(out_dir=run_dir))
  assert os.listdir(run_dir) == ["LOCK"] and _lock_file(run_dir) == held


def test_a_killed_holder_leaves_a_free_run_dir(tmp_path):
  """SIGKILL gives the holder no chance to clean up: its LOCK file stays,
  naming it, but the kernel dropped its flock, so the next run takes it."""
  run_dir = str(tmp_path / "run")
  process = subprocess.Popen([sys.executable, "-c", _HOLDER, run_dir],
                             stdout=subprocess.PIPE, text=True)
  assert process.stdout.readline() == "held\n"
  process.kill()
  assert process.wait() == -9
  assert _lock_file(run_dir)["pid"] == process.pid       # left behind
  with lock.RunLock(run_dir):
    assert _lock_file(run_dir)["pid"] == os.getpid()
  assert os.listdir(run_dir) == []                        # released


def test_only_the_flock_counts_not_what_the_file_says(tmp_path):
  """A LOCK file nobody holds a flock on (another host's pid, or garbage)
  is taken; a second holder within this process nests instead."""
  run_dir = tmp_path / "run"
  run_dir.mkdir()
  for text in (json.dumps(dict(pid=4242, host="other-host",
                               started="2024-05-01T10:00:00+00:00")),
               "not json"):
    (run_dir / "LOCK").write_text(text)
    with lock.RunLock(str(run_dir)):
      held = _lock_file(run_dir)
      assert (held["pid"], held["host"]) == (os.getpid(),
                                             socket.gethostname())
    assert not (run_dir / "LOCK").exists()


def test_the_lock_goes_on_an_exception_and_can_be_taken_again(tmp_path):
  run_dir = tmp_path / "run"
  with pytest.raises(ZeroDivisionError):
    with lock.RunLock(str(run_dir)):
      assert (run_dir / "LOCK").exists()
      _ = 1 / 0
  assert not (run_dir / "LOCK").exists()
  # train.run holds it while it works and lets go when it fails.
  with pytest.raises(errors.InputError, match="needs train_file, valid_file, test_file"):
    train.run(train.TrainConfig(data=data_lib.DataConfig(name="text"),
                                out_dir=str(run_dir)))
  assert not (run_dir / "LOCK").exists()
  # Within one process it nests (a command line holds it around train.run);
  # the outermost holder removes it.
  with lock.RunLock(str(run_dir)):
    held = _lock_file(run_dir)
    assert held["pid"] == os.getpid()
    with lock.RunLock(str(run_dir)):
      assert _lock_file(run_dir) == held
    assert _lock_file(run_dir) == held
  assert not (run_dir / "LOCK").exists()


def test_the_train_command_on_a_locked_run_dir_writes_nothing(holder,
                                                              run_runner):
  """tf-cvae-train on a held directory: one line naming --out_dir and the
  holder, exit 2, and neither flags.cfg nor provenance.json written."""
  run_dir, pid = holder
  result = run_runner("train.py", f"--out_dir={run_dir}", "--max_steps=1")
  assert result.returncode == 2, result.stderr[-2000:]
  assert f"error: --out_dir: {run_dir} is in use by pid {pid} " in (
      result.stderr)
  assert os.listdir(run_dir) == ["LOCK"]
