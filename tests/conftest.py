"""Shared fixtures: where the real data files live, the runners run from one
TensorFlow start-up, a small text corpus; and the markers given by fixture."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The experiments (not installed) import as experiments.<module>.
if _REPO_ROOT not in sys.path:
  sys.path.append(_REPO_ROOT)


# Fixtures that train, export or install something first: a test that uses
# one is slow. (A command that fails on its flags takes a second through
# run_runner; a test that has one train is marked slow where it is.)
_SLOW_FIXTURES = {"installed", "compared", "grid", "previous",
                  "protocol_run", "plain_and_critic", "resume_runs", "toy_run",
                  "text_run", "image_run", "tiny_runs"}


# The files that take longest (40 s or more of test time each, measured in a
# full run), longest first: `-n auto --dist loadfile` hands whole files to
# the workers in collection order (see pytest_configure), and a long file
# handed out last keeps one worker busy while the other waits.
_LONGEST_FIRST = ("test_train.py", "test_distribute.py", "test_faults.py",
                  "test_notebook.py", "test_multi_worker.py",
                  "test_reproduce.py", "test_cli.py", "test_wheel.py",
                  "test_measurement.py", "test_protocol.py",
                  "test_runners.py", "test_constraint.py", "test_export.py",
                  "test_benchmark.py")


def pytest_configure(config):
  """Keeps the collection order under --dist loadfile: pytest-xdist would
  otherwise hand out the files with the most tests first, which puts the
  few long tests of a file such as test_notebook.py last."""
  if hasattr(config.option, "loadscopereorder"):     # pytest-xdist >= 3.6
    config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
  """Marks by fixture: a test that needs a trained run is slow; one that
  reads $TF_CVAE_DATA (data_dir, data_file) is real_data. Puts the longest
  files first (stable: each file's tests keep their order)."""
  rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
  for item in items:
    fixtures = getattr(item, "fixturenames", ())
    if _SLOW_FIXTURES.intersection(fixtures):
      item.add_marker(pytest.mark.slow)
    if "data_dir" in fixtures or "data_file" in fixtures:
      item.add_marker(pytest.mark.real_data)


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


# A process that has imported TensorFlow once (as the runners do, quietly)
# and the library (which defines no flags and starts no TensorFlow runtime)
# and generated the embedded data sets, and that forks a child per command:
# the child runs the script as the main program with its own argv, cwd,
# stdout and stderr files, as a fresh `python runners/<script>` would, minus
# the start-up of TensorFlow. It imports no command module, so every child
# defines its flags afresh.
_FORK_SERVER = r"""
import importlib, json, os, pkgutil, runpy, sys, time, traceback
import tf_cvae_runners  # TensorFlow, quietly
import tf_cvae
for module in pkgutil.walk_packages(tf_cvae.__path__, "tf_cvae."):
  if module.name != "tf_cvae.torch_reference":   # an extra's (torch) only
    importlib.import_module(module.name)
from tf_cvae import data   # generated once (numpy only): every child has them
for name in ("synthetic_text", "synthetic_images"):
  data.load(data.DataConfig(name=name))
print("ready", flush=True)
for line in sys.stdin:
  job = json.loads(line)
  pid = os.fork()
  if pid == 0:
    code = 1
    try:
      for fd, name in ((1, "stdout"), (2, "stderr")):
        os.dup2(os.open(job[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
      os.chdir(job["cwd"])
      sys.argv, sys.path[0] = job["argv"], os.path.dirname(job["argv"][0])
      sys.stdin = open(os.devnull)
      runpy.run_path(job["argv"][0], run_name="__main__")
      code = 0
    except SystemExit as stop:
      code = stop.code if isinstance(stop.code, int) else (
          0 if stop.code is None else 1)
      if not isinstance(stop.code, (int, type(None))):
        print(stop.code, file=sys.stderr)
    except BaseException:
      traceback.print_exc()
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(code)
  deadline = time.monotonic() + job["timeout"]
  while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
      break
    if time.monotonic() > deadline:
      os.kill(pid, 9)
    time.sleep(0.02)
  print(json.dumps(os.waitstatus_to_exitcode(status)), flush=True)
"""


@pytest.fixture(scope="session")
def run_script(tmp_path_factory):
  """run_script(path, *flags, cwd=None) -> CompletedProcess of the script at
  path (absolute or relative to the repository root) run in cwd, by default
  the repository root: a child of one forked TensorFlow process."""
  server = subprocess.Popen([sys.executable, "-c", _FORK_SERVER],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=_REPO_ROOT)
  assert server.stdout.readline() == "ready\n"
  folder = tmp_path_factory.mktemp("runner_output")
  calls = iter(range(1_000_000))

  def run(path: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    argv = [os.path.join(_REPO_ROOT, path), *args]
    call = next(calls)
    out, err = folder / f"{call}.out", folder / f"{call}.err"
    server.stdin.write(json.dumps(dict(
        argv=argv, cwd=str(cwd or _REPO_ROOT), stdout=str(out), stderr=str(err),
        timeout=900)) + "\n")
    server.stdin.flush()
    code = json.loads(server.stdout.readline())
    return subprocess.CompletedProcess(
        [sys.executable, *argv], code, out.read_text(), err.read_text())

  yield run
  server.stdin.close()
  server.wait(timeout=60)


@pytest.fixture(scope="session")
def run_runner(run_script):
  """run_runner("train.py", *flags, cwd=None) -> CompletedProcess of
  runners/<script>, run from the repository root unless cwd is given."""
  return lambda script, *args, cwd=None: run_script(
      os.path.join("runners", script), *args, cwd=cwd)


@pytest.fixture(scope="session")
def run_experiment(run_script):
  """run_experiment("reproduce.py", *flags) -> CompletedProcess of
  experiments/<script>, from the repository root."""
  return lambda script, *args: run_script(
      os.path.join("experiments", script), *args)


@pytest.fixture(scope="session")
def checkpoint_step():
  """checkpoint_step(folder) -> the step of the folder's latest checkpoint
  (0: none yet)."""
  import tensorflow as tf  # the fixtures above start without it

  def step(folder) -> int:
    path = tf.train.latest_checkpoint(str(folder))
    return int(path.rsplit("-", 1)[1]) if path else 0
  return step


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


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> dict:
  """Two 5-step runs trained once for the tests that restore, sample from or
  export a run: a text LSTM VAE and an MLP VAE on the synthetic data;
  {"text": (config, results), "image": (config, results)}. Tests may write
  into the run folders' subfolders (samples/, export/), not change them."""
  from tf_cvae import data as data_lib
  from tf_cvae.models import registry
  from tf_cvae.training import evaluation
  from tf_cvae.training import train

  root = tmp_path_factory.mktemp("tiny_runs")
  models = {"text": (data_lib.DataConfig(), registry.ModelConfig(
                embed_dim=16, hidden_dim=16, latent_dim=4,
                decoder_dropout=0.0)),
            "image": (data_lib.DataConfig(name="synthetic_images"),
                      registry.ModelConfig(name="mlp", hidden_dim=32,
                                           latent_dim=3))}
  runs = {}
  for name, (data, model) in models.items():
    config = train.TrainConfig(
        data=data, model=model, max_steps=5, log_every=1000,
        checkpoint_every=1000, out_dir=str(root / name / "run"),
        eval=evaluation.EvalConfig(iw_samples=4, iw_chunk_size=4,
                                   max_examples=64, probe=False))
    runs[name] = (config, train.run(config))
  return runs
