"""Shared fixtures: where the real data files live."""

import os
import subprocess
import sys

import numpy as np
import pytest

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The experiments (not installed) import as experiments.<module>.
if _REPO_ROOT not in sys.path:
  sys.path.append(_REPO_ROOT)


def _missing(message: str) -> None:
  """Skips a test whose data is absent; fails it instead when CI=true."""
  if os.environ.get("CI") == "true":
    pytest.fail(message)
  pytest.skip(message)


@pytest.fixture(scope="session")
def data_dir() -> str:
  """$TF_CVAE_DATA, else ../shared/data relative to the repository root."""
  path = os.environ.get("TF_CVAE_DATA",
                        os.path.join(_REPO_ROOT, "..", "shared", "data"))
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    _missing(f"no data directory {path} (set TF_CVAE_DATA)")
  return path


@pytest.fixture(scope="session")
def data_file(data_dir):
  """data_file("ptb/ptb.valid.txt") -> its path under data_dir, or skip/fail."""

  def find(relative: str) -> str:
    path = os.path.join(data_dir, relative)
    if not os.path.exists(path):
      _missing(f"no data file {path}")
    return path

  return find


@pytest.fixture(scope="session")
def run_runner():
  """run_runner("train.py", *flags) -> CompletedProcess of runners/<script>."""

  def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, os.path.join(_REPO_ROOT, "runners", script), *args],
        capture_output=True, text=True, cwd=_REPO_ROOT, timeout=900)

  return run


@pytest.fixture(scope="session")
def run_experiment():
  """run_experiment("reproduce.py", *flags) -> CompletedProcess of
  experiments/<script>, from the repository root."""

  def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, os.path.join(_REPO_ROOT, "experiments", script),
         *args], capture_output=True, text=True, cwd=_REPO_ROOT, timeout=900)

  return run


@pytest.fixture(scope="session")
def text_files(tmp_path_factory) -> dict:
  """A small seeded corpus as --dataset=text files: 320 / 64 / 64 sentences
  of 3-11 words over 40 (9 steps an epoch at batch 32); {split}_file keys."""
  root = tmp_path_factory.mktemp("corpus")
  rng = np.random.default_rng(0)
  files = {}
  for split, size in (("train", 320), ("valid", 64), ("test", 64)):
    path = root / f"{split}.txt"
    lines = []
    for _ in range(size):
      start, length = rng.integers(0, 30), rng.integers(3, 12)
      words = (f"w{(start + 3 * i) % 40}" for i in range(length))
      lines.append(" ".join(words))
    path.write_text("\n".join(lines) + "\n")
    files[f"{split}_file"] = str(path)
  return files
