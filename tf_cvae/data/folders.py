"""Where a named data set's local files are: data_dir may be the data root
(holding <name>/) or the data set's own folder.

    --data_dir=/data                   reads /data/binarized_mnist/*.amat
    --data_dir=/data/binarized_mnist   reads the same files

<data_dir>/<name>/ is looked in first.
"""

import os

from tf_cvae import errors


def candidates(data_dir: str, folder: str) -> tuple[str, str]:
  """The two places a data set's files may be: <data_dir>/<folder>, data_dir."""
  return os.path.join(data_dir, folder), data_dir


def dataset_folder(data_dir: str, folder: str,
                   file_names: list[str]) -> str | None:
  """The first of candidates(data_dir, folder) that holds any of
  `file_names`; None when neither does."""
  for place in candidates(data_dir, folder):
    if any(os.path.exists(os.path.join(place, f)) for f in file_names):
      return place
  return None


def not_found(data_dir: str, folder: str, expected: str) -> str:
  """One line: `expected` (e.g. "files ptb.{train,valid,test}.txt") is in
  neither candidate folder."""
  inside, itself = candidates(data_dir, folder)
  return (f"no {expected} in {inside} nor in {itself} (the data folder: "
          "--data_dir, else $TF_CVAE_DATA)")


def require_folder(data_dir: str, folder: str, file_names: list[str],
                   expected: str, hint: str) -> str:
  """dataset_folder(...), else an InputError of one line naming both
  folders, the `expected` files and where they come from (`hint`)."""
  place = dataset_folder(data_dir, folder, file_names)
  if place is None:
    raise errors.InputError(f"{not_found(data_dir, folder, expected)}: {hint}")
  return place
