"""Restoring a trained run from its directory: what evaluation, export and
sampling start from.

  run = restore.restore_run(run_dir)         # "last"; or "best", "auto"
  run.vae, run.critic, run.vocab, run.dataset, run.config, run.checkpoint

The networks are built as `train.run` built them (config.json; a text run's
ids come from run_dir/vocab.txt) and loaded from a checkpoint; optimizer
state is not loaded. The data files are read only when asked for
(`with_data`): export and sampling from the prior need none.
"""

import dataclasses
import os

from absl import logging
import keras
import tensorflow as tf

from tf_cvae import data as data_lib
from tf_cvae import errors
from tf_cvae import train_step as train_step_lib
from tf_cvae.data import vocabulary as vocab_lib
from tf_cvae.training import build
from tf_cvae.training import checkpointing
from tf_cvae.training import config as config_lib

# "last" (the default of every command): what training ended with
# (run_dir/checkpoints), whose test metrics metrics.json reports by default;
# "best": the lowest validation negative ELBO (run_dir/best, written at its first
# validation); "auto": the best once there is one, else the last.
CHECKPOINTS = ("last", "best", "auto")
DEFAULT_CHECKPOINT = "last"
CHECKPOINT_HELP = ("Which weights: last (the default: what training ended "
                   "with, whose test metrics metrics.json reports unless the "
                   "run was trained with --select=best), best (the best "
                   "validation negative ELBO) or auto (the best "
                   "once there is one, else the last).")


@dataclasses.dataclass(frozen=True)
class ModelInputs:
  """What the model and critic builders read of a data set: its kind and
  vocabulary (None for images)."""
  kind: str
  vocab: vocab_lib.Vocabulary | None = None


@dataclasses.dataclass(frozen=True)
class RestoredRun:
  """A run's networks with their restored weights, and what goes with them.

  config: its TrainConfig, out_dir set to the run directory; step_fn: the
  TrainStep holding the networks (fresh optimizers); vocab: the text
  Vocabulary (ids as in training) or None; dataset: the run's data set, or
  None unless restored with_data; which: "best" or "last", the checkpoint
  restored; checkpoint: its path.
  """
  config: config_lib.TrainConfig
  step_fn: train_step_lib.TrainStep
  vocab: vocab_lib.Vocabulary | None
  dataset: data_lib.base.Dataset | None
  which: str
  checkpoint: str

  @property
  def vae(self):
    """The restored models.vae.VAE."""
    return self.step_fn.vae

  @property
  def critic(self):
    """The restored inference critic, or None when the run had none."""
    return self.step_fn.critic

  def checkpoint_record(self) -> dict:
    """Which weights these are, for a command's output: {"checkpoint":
    "last" or "best", "checkpoint_path": the path, "run_dir"}."""
    return {"checkpoint": self.which, "checkpoint_path": self.checkpoint,
            "run_dir": self.config.out_dir}


def checkpoint_path(run_dir: str, which: str = DEFAULT_CHECKPOINT
                    ) -> tuple[str, str]:
  """(which it is, "best" or "last"; its path) of a run's checkpoint.

  Raises errors.InputError naming the folder when it holds no checkpoint.
  """
  if which not in CHECKPOINTS:
    raise errors.InputError(f"checkpoint must be one of "
                            f"{', '.join(CHECKPOINTS)}, got {which!r}")
  for candidate in (("best", "last") if which == "auto" else (which,)):
    folder = os.path.join(run_dir, checkpointing.CHECKPOINT_DIRS[candidate])
    path = tf.train.latest_checkpoint(folder)
    if path is not None:
      return candidate, path
  hint = (" (best/ appears once an epoch has finished; the last checkpoint "
          "is in checkpoints/)" if which == "best" else "")
  raise errors.InputError(f"no checkpoint in {folder}{hint}")


def load_vocab(run_dir: str, kind: str) -> vocab_lib.Vocabulary | None:
  """A text run's Vocabulary, from run_dir/vocab.txt; None for images."""
  if kind != "text":
    return None
  path = os.path.join(run_dir, "vocab.txt")
  if not os.path.exists(path):
    raise errors.InputError(f"{path} does not exist: a text run saves its "
                            f"vocabulary there")
  return vocab_lib.Vocabulary.load(path)


def load_run_data(run_dir: str) -> data_lib.base.Dataset:
  """The run's data set as it trained on it (ids from run_dir/vocab.txt)."""
  config = config_lib.load_config(run_dir)
  return build.load_data(config, run_dir, save_vocab=False)


def restore_run(run_dir: str, which: str = DEFAULT_CHECKPOINT,
                with_data: bool = True) -> RestoredRun:
  """Rebuilds a run from its directory and loads checkpoint `which`.

  Args:
    run_dir: a directory written by `train.run` (config.json, checkpoints/,
      best/, and vocab.txt for text).
    which: one of CHECKPOINTS.
    with_data: also load the run's data set (reads its files).

  Raises:
    errors.InputError (a ValueError) naming the path when run_dir has no
    readable config.json, no vocab.txt (text) or no checkpoint, or when the
    checkpoint does not fit the config.
  """
  config = dataclasses.replace(config_lib.load_config(run_dir),
                               out_dir=run_dir)
  kind = data_lib.kind(config.data.name)
  vocab = load_vocab(run_dir, kind)
  which, path = checkpoint_path(run_dir, which)
  keras.utils.set_random_seed(config.seed)
  dataset = (build.load_data(config, run_dir, save_vocab=False)
             if with_data else None)
  step_fn = build.build_train_step(config, ModelInputs(kind, vocab))
  # Variables have one shape whatever the batch: a one-example batch of the
  # encoder's format builds them.
  step_fn.build(step_fn.vae.encoder.input_format(vocab).example_batch())
  checkpointing.restore_model(step_fn, path)
  logging.info("restored %s from %s", step_fn.vae.name, path)
  return RestoredRun(config, step_fn, vocab, dataset, which, path)
