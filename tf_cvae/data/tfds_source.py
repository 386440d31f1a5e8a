"""Image sets from tensorflow-datasets: the route taken without local files.

The first load downloads the builder's files into tfds's own data directory
(~/tensorflow_datasets, or $TFDS_DATA_DIR) and prepares them there; later
loads read them from there.
"""

from absl import logging
import numpy as np

from tf_cvae import errors


def tfds_images(name: str, splits: dict[str, str]) -> dict[str, np.ndarray]:
  """split -> uint8 images [N, H, W, 1] of the tfds builder `name`, whose
  splits are named in `splits` (ours -> tfds's; downloads if needed)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  out = {}
  for split, tfds_split in splits.items():
    # Omniglot's RGB channels are equal: keep one (a no-op for MNIST).
    ds = tfds.load(name, split=tfds_split).map(lambda x: x["image"][..., :1])
    out[split] = np.concatenate(list(tfds.as_numpy(ds.batch(4096))))
  return out


def _reason(error: Exception) -> str:
  """An exception as one short line; a missing module says what to install."""
  lines = str(error).strip().splitlines()
  reason = f"{type(error).__name__}: {lines[0] if lines else ''}"
  if isinstance(error, ImportError) and error.name:
    reason += f"; pip install {error.name.split('.')[0]}"
  return reason


def load_images(name: str, splits: dict[str, str], missing: str
                ) -> dict[str, np.ndarray]:
  """tfds_images(name, splits); a failure is an errors.InputError of one
  line: `missing` (why local files were not used), then tfds's reason."""
  try:
    out = tfds_images(name, splits)
  except Exception as e:  # pylint: disable=broad-except
    raise errors.InputError(f"{missing}, and the tfds builder {name!r} failed "
                            f"({_reason(e)})") from e
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
