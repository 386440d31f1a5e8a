"""What a training command writes into its run directory before training:
flags.cfg (its training flags as a flagfile that rebuilds the same config)
and provenance.json (command, versions, devices, host, git revision, start);
and the command line that resumes the run."""

import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import socket
import subprocess

from tf_cvae_runners import launch
from tf_cvae_runners import train_flags

from absl import flags
from absl import logging
import keras
import tensorflow as tf
import tensorflow_probability as tfp

import tf_cvae
from tf_cvae import data as data_lib
from tf_cvae.training import build
from tf_cvae.training import config as config_lib
from tf_cvae.training import train

FLAGS = flags.FLAGS
FLAGFILE = "flags.cfg"
PROVENANCE = "provenance.json"


def train_flagfile(**values) -> str:
  """The training flags' values as flagfile text, one --name=value a line
  (flags left unset are left out); `values` (flag name -> value) replace
  the flags' own. tf-cvae-train --flagfile=<it> builds the same config."""
  lines = []
  for flag in FLAGS.get_flags_for_module(train_flags.__name__):
    if flag.name in values:
      lines.append(f"--{flag.name}={values[flag.name]}")
    elif flag.value is not None:
      lines.append(flag.serialize())
  return "\n".join(sorted(lines)) + "\n"


def run_flagfile(config: config_lib.TrainConfig, **values) -> str:
  """train_flagfile of the run `config` describes: its out_dir and data
  files and folder as absolute paths, so that --flagfile=RUN/flags.cfg
  continues the run from any folder; `values` as train_flagfile's."""
  data = config.data
  paths = {name: getattr(data, name) for name in data_lib.PATH_FIELDS
           if getattr(data, name)}
  return train_flagfile(**dict(paths, out_dir=os.path.abspath(config.out_dir),
                               **values))


def resume_command(argv: list[str], out_dir: str) -> str:
  """The shell command that resumes the run: argv as typed, with
  --out_dir=<absolute out_dir> added unless a --out_dir flag was read."""
  if not FLAGS.out_dir:
    argv = list(argv) + [f"--out_dir={os.path.abspath(out_dir)}"]
  return launch.command_line(argv)


def _git_state() -> dict | None:
  """{"revision", "dirty"} of the git checkout tf_cvae's code lives in (its
  top folder holding the tf_cvae package), else None."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(tf_cvae.__file__)))

  def git(*args) -> str:
    done = subprocess.run(["git", "-C", root, *args], capture_output=True,
                          text=True, timeout=30, check=True)
    return done.stdout.strip()

  try:
    if os.path.realpath(git("rev-parse", "--show-toplevel")) != (
        os.path.realpath(root)):
      return None
    return {"revision": git("rev-parse", "HEAD"), "dirty": bool(
        git("status", "--porcelain", "--untracked-files=no"))}
  except (OSError, subprocess.SubprocessError):
    return None


def _version(distribution: str) -> str | None:
  """An installed distribution's version, or None."""
  try:
    return importlib.metadata.version(distribution)
  except importlib.metadata.PackageNotFoundError:
    return None


def provenance(argv: list[str]) -> dict:
  """Where and how this run started: the command line, Python / tf_cvae /
  TensorFlow / TFP / Keras versions, visible devices, hostname, git state
  (None outside a git checkout) and start time (UTC, ISO 8601)."""
  return {
      "command": launch.command_line(argv), "argv": list(argv),
      "versions": {"python": platform.python_version(),
                   "tf_cvae": _version("tf_cvae"), "tensorflow": tf.__version__,
                   "tensorflow_probability": tfp.__version__,
                   "keras": keras.__version__},
      "devices": [d.name for d in tf.config.list_physical_devices()],
      "hostname": socket.gethostname(), "git": _git_state(),
      "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds")}


def write_run_files(config: config_lib.TrainConfig, argv: list[str],
                    flagfile_text: str) -> None:
  """Writes config.out_dir/flags.cfg and provenance.json (an earlier start's
  record kept under "earlier_starts"), after refusing, like training does, a
  directory that holds a different run (errors.InputError)."""
  config_lib.check_resumable(config.out_dir, dataclasses.asdict(config))
  os.makedirs(config.out_dir, exist_ok=True)
  with open(os.path.join(config.out_dir, FLAGFILE), "w",
            encoding="utf-8") as f:
    f.write(flagfile_text)
  record = provenance(argv)
  path = os.path.join(config.out_dir, PROVENANCE)
  try:
    with open(path, encoding="utf-8") as f:
      earlier = json.load(f)
    record["earlier_starts"] = earlier.pop("earlier_starts", []) + [earlier]
  except (OSError, ValueError, AttributeError):   # none yet, or unreadable
    pass
  config_lib.write_json(path, record)


def train_with_provenance(config: config_lib.TrainConfig, argv: list[str],
                          flagfile_text: str) -> dict:
  """train.run(config) under the run directory's lock, with flags.cfg and
  provenance.json written and the run directory (and the command resuming
  it) logged once train.run found the directory resumable and the data
  loaded. A refused run (lock held, another run there, missing data) logs
  nothing first, and a run directory this call created for a run that never
  started is removed again."""
  created = not os.path.exists(config.out_dir)
  started = []

  def start(run_config):
    write_run_files(run_config, argv, flagfile_text)
    logging.info("run directory %s; resume with: %s", config.out_dir,
                 resume_command(argv, config.out_dir))
    started.append(True)

  try:
    with build.run_lock(config):
      return train.run(config, on_start=start)
  finally:
    if created and not started:
      shutil.rmtree(config.out_dir, ignore_errors=True)
