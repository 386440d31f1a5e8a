"""A killed export never leaves a half-written export in place of the last one.

A child process (this file as a script) exports a fresh encoder over an
existing export and is SIGKILLed at one of three moments: while
tf.saved_model.save is writing, after it wrote everything to
export_dir + ".tmp", and between the two renames (the old export parked at
export_dir + ".old"). The previous export must still load (after the next
export's recovery in the last case, even when that export fails too).
"""

import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import tensorflow as tf

from tf_cvae.models import registry
from tf_cvae.trained import export

pytestmark = pytest.mark.slow

IMAGES = (np.random.default_rng(0).random((3, 28, 28, 1)) < 0.3).astype(
    np.float32)


def _vae(seed: int):
  """A small untrained MLP VAE whose weights depend on `seed`."""
  tf.keras.utils.set_random_seed(seed)
  vae = registry.build_vae(
      registry.ModelConfig(name="mlp", hidden_dim=8, latent_dim=2),
      types.SimpleNamespace(kind="image", vocab=None))
  vae.encode({"image": tf.zeros((1, 28, 28, 1))})
  return vae


def _means(export_dir: str) -> np.ndarray:
  loaded = tf.saved_model.load(export_dir)   # alive while encode runs
  return loaded.encode(tf.constant(IMAGES))["mean"].numpy()


def _child(export_dir: str, moment: str) -> None:
  """Exports over export_dir, printing `moment` and sleeping when it comes."""
  def announce():
    print(moment, flush=True)
    if moment != "saving":
      time.sleep(600)

  real_save, real_replace = tf.saved_model.save, os.replace

  def save(*args, **kwargs):
    if moment == "saving":
      announce()                 # the parent kills during the real save
    real_save(*args, **kwargs)
    if moment == "saved":
      announce()

  def replace(src, dst):
    real_replace(src, dst)
    if moment == "renamed" and dst.endswith(".old"):
      announce()

  tf.saved_model.save, os.replace = save, replace
  export.export_encoder(_vae(seed=2), export_dir)
  print("finished", flush=True)


def _kill_at(export_dir: str, moment: str) -> None:
  """Runs _child and SIGKILLs it as soon as it prints `moment`."""
  proc = subprocess.Popen([sys.executable, os.path.abspath(__file__),
                           export_dir, moment], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True)
  deadline, line = time.time() + 300, ""
  try:
    while line.strip() != moment:
      ready, _, _ = select.select([proc.stdout], [], [], 1.0)
      if ready:
        line = proc.stdout.readline()
        assert line, "the child exited before the moment came"
      assert time.time() < deadline, f"no {moment!r} from the child"
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()


@pytest.fixture(scope="module", autouse=True)
def _absl_log_level():
  """Restores the absl logger's level, which tf.saved_model.save leaves at
  WARNING (AutoTrackable sets absl's verbosity back to its unparsed-flag
  value), so later tests still see INFO records."""
  logger = logging.getLogger("absl")
  level = logger.level
  yield
  logger.setLevel(level)


@pytest.fixture(scope="module")
def previous(tmp_path_factory):
  """An existing export and its means."""
  export_dir = str(tmp_path_factory.mktemp("atomic") / "export")
  export.export_encoder(_vae(seed=1), export_dir)
  return export_dir, _means(export_dir)


def _fresh_copy(previous, tmp_path) -> str:
  export_dir = str(tmp_path / "export")
  shutil.copytree(previous[0], export_dir)
  return export_dir


@pytest.mark.parametrize("moment", ["saving", "saved"])
def test_kill_while_writing_keeps_the_previous_export(moment, previous,
                                                      tmp_path):
  export_dir = _fresh_copy(previous, tmp_path)
  _kill_at(export_dir, moment)
  # The export in place is the previous one, whole; the new one is at most a
  # leftover beside it, which the next export removes.
  np.testing.assert_array_equal(_means(export_dir), previous[1])
  assert set(os.listdir(tmp_path)) <= {"export", "export.tmp"}
  export.export_encoder(_vae(seed=3), export_dir)
  assert os.listdir(tmp_path) == ["export"]
  assert not np.array_equal(_means(export_dir), previous[1])


def test_kill_between_renames_is_recovered(previous, tmp_path, monkeypatch):
  export_dir = _fresh_copy(previous, tmp_path)
  _kill_at(export_dir, "renamed")
  # Killed two system calls from done: the new export complete in .tmp, the
  # previous one parked in .old, nothing at export_dir.
  assert sorted(os.listdir(tmp_path)) == ["export.old", "export.tmp"]
  np.testing.assert_array_equal(_means(export_dir + ".old"), previous[1])

  def fail(*unused_args, **unused_kwargs):
    raise RuntimeError("the next export fails too")

  monkeypatch.setattr(tf.saved_model, "save", fail)
  with pytest.raises(RuntimeError, match="fails too"):
    export.export_encoder(_vae(seed=3), export_dir)
  assert os.listdir(tmp_path) == ["export"]
  np.testing.assert_array_equal(_means(export_dir), previous[1])


if __name__ == "__main__":
  _child(sys.argv[1], sys.argv[2])
