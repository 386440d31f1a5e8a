"""Shared fixtures: where the real data files live."""

import os
import subprocess
import sys

import pytest

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
