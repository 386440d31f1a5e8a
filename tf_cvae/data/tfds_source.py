"""Image sets from tensorflow-datasets: the route taken without local files.

The first load downloads the builder's files into tfds's own data directory
(~/tensorflow_datasets, or $TFDS_DATA_DIR) and prepares them there; later
loads read them from there. Without a network the load fails at once (a
probe of tfds's download host, PROBE, PROBE_SECONDS at most) instead of
retrying, and with download=False tfds reads only what it prepared before;
a failed load leaves no partial download behind.
"""

import glob
import os
import shutil
import socket
import threading

from absl import logging
import numpy as np

from tf_cvae import errors

PROBE = ("storage.googleapis.com", 443)   # tfds's first download source
PROBE_SECONDS = 3.0


def _tfds_dir() -> str:
  """tfds's data directory (where it downloads and prepares)."""
  from tensorflow_datasets.core import constants  # pylint: disable=g-import-not-at-top
  return os.path.expanduser(constants.DATA_DIR)


def network_reachable(address=PROBE, seconds: float = PROBE_SECONDS) -> bool:
  """Whether a TCP connection to `address` opens within `seconds` (name
  lookup included: the probe runs in a thread it waits that long for)."""
  opened = []

  def connect():
    try:
      socket.create_connection(address, timeout=seconds).close()
      opened.append(True)
    except OSError:
      pass

  thread = threading.Thread(target=connect, daemon=True)
  thread.start()
  thread.join(seconds)
  return bool(opened)


def remove_partial_downloads(data_dir: str) -> None:
  """Removes the *.tmp* files and folders and incomplete.* preparations a
  failed tfds download or preparation leaves under data_dir."""
  for pattern in (("downloads", "*.tmp*"), ("downloads", "extracted", "*.tmp*"),
                  ("*", "*", "incomplete.*"), ("*", "incomplete.*")):
    for path in glob.glob(os.path.join(glob.escape(data_dir), *pattern)):
      if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
      else:
        os.remove(path)


def tfds_images(name: str, splits: dict[str, str], download: bool = True
                ) -> dict[str, np.ndarray]:
  """split -> uint8 images [N, H, W, 1] of the tfds builder `name`, whose
  splits are named in `splits` (ours -> tfds's); downloads if needed and
  `download`. Raises ConnectionError at once when it would download with
  no network."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  def images(split, may_download):
    # Omniglot's RGB channels are equal: keep one (a no-op for MNIST).
    ds = tfds.load(name, split=split, download=may_download).map(
        lambda x: x["image"][..., :1])
    return np.concatenate(list(tfds.as_numpy(ds.batch(4096))))

  out = {}
  for split, tfds_split in splits.items():
    verbosity = logging.get_verbosity()
    # tfds warns of the folders it looks in when nothing is prepared yet.
    logging.set_verbosity(logging.ERROR)
    try:
      out[split] = images(tfds_split, False)     # prepared before
    except AssertionError:                       # tfds: "could not find data"
      logging.set_verbosity(verbosity)
      if not download:
        raise
      if not network_reachable():
        raise ConnectionError(f"no network ({PROBE[0]} unreachable), so it "
                              "cannot download") from None
      out[split] = images(tfds_split, True)
    finally:
      logging.set_verbosity(verbosity)
  return out


def _reason(error: Exception) -> str:
  """An exception as one short line; a missing module says what to install."""
  lines = str(error).strip().splitlines()
  reason = f"{type(error).__name__}: {lines[0] if lines else ''}"
  if isinstance(error, ImportError) and error.name:
    reason += f"; pip install {error.name.split('.')[0]}"
  return reason


def load_images(name: str, splits: dict[str, str], missing: str,
                download: bool = True) -> dict[str, np.ndarray]:
  """tfds_images(name, splits, download); a failure is an errors.InputError
  of one line: `missing` (why local files were not used, where to put
  them), then tfds's reason; its partial downloads are removed."""
  try:
    out = tfds_images(name, splits, download)
  except Exception as e:  # pylint: disable=broad-except
    remove_partial_downloads(_tfds_dir())
    how = "" if download else " with --download=false"
    raise errors.InputError(f"{missing}, and the tfds builder {name!r} failed"
                            f"{how} ({_reason(e)})") from e
  logging.info("%s: loaded from tfds (%s)", name, ", ".join(
      f"{k} {len(v)}" for k, v in out.items()))
  return out


def check_binary(name: str, splits: dict[str, np.ndarray]) -> None:
  """An errors.InputError when a split of integer images [N, H, W, 1] holds
  values other than 0 and 1 (a statically binarized set must)."""
  for split, images in splits.items():
    low, high = images.min(), images.max()
    if low < 0 or high > 1:
      raise errors.InputError(
          f"tfds {name}: split {split!r} holds pixel values from {low} to "
          f"{high}, not 0 and 1 alone: not a binarized set")
