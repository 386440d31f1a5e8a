"""Flags shared by the commands, and their translation into library configs.

Only tf_cvae_runners (runners/) imports absl.flags; the library takes the dataclasses built
here.
"""

import dataclasses
import logging as std_logging
import os
import sys

from tf_cvae_runners import train_flags

from absl import flags
from absl import logging

from tf_cvae import data as data_lib
from tf_cvae import errors
from tf_cvae import objective
from tf_cvae.models import registry
from tf_cvae.training import config as config_lib
from tf_cvae.training import evaluation
from tf_cvae.training import lock
from tf_cvae.training import train

FLAGS = flags.FLAGS


class _QuietLibraries:
  """A log filter: drops INFO lines that TensorFlow and Keras log themselves."""
  _NOISY = frozenset({"tensorflow", "keras", "tensorflow_datasets",
                      "tensorflow_probability"})

  def filter(self, record) -> bool:
    return (record.levelno >= logging.converter.STANDARD_WARNING
            or not self._NOISY.intersection(record.pathname.split(os.sep)))


def setup_logging() -> None:
  """Our progress lines at INFO; other libraries' INFO chatter dropped
  unless --verbose."""
  logging.set_verbosity(logging.INFO)
  if not FLAGS.get_flag_value("verbose", False):
    logging.get_absl_handler().addFilter(_QuietLibraries())
    # TensorFlow's own handler ("INFO:tensorflow:Assets written to ...").
    std_logging.getLogger("tensorflow").setLevel(std_logging.WARNING)


define_train_flags = train_flags.define_train_flags


def train_config_from_flags(**overrides) -> train.TrainConfig:
  """The TrainConfig the flags describe; keyword overrides replace fields.
  The critic's weight and target, unless given, are the critic's defaults
  (TrainConfig fills them in); --deterministic is applied by train.run.
  Without --out_dir (or an out_dir override) the run directory is
  runs/<config.default_run_name>, the same for the same flags. Data files
  and folders become absolute paths (data_lib.absolute_paths)."""
  f = FLAGS
  fields = dict(
      data=data_lib.absolute_paths(data_lib.DataConfig(
          name=f.dataset, data_dir=f.data_dir, train_file=f.train_file,
          valid_file=f.valid_file, test_file=f.test_file,
          max_vocab=f.max_vocab, min_count=f.min_count,
          max_length=f.max_length,
          vocab_file=f.vocab_file, seed=f.data_seed,
          valid_from_train=f.valid_from_train, download=f.download,
          held_out=f.held_out, binarize=f.binarize, threshold=f.threshold)),
      model=registry.ModelConfig(
          name=f.model, embed_dim=f.embed_dim, hidden_dim=f.hidden_dim,
          latent_dim=f.latent_dim, decoder_dropout=f.decoder_dropout,
          resnet_channels=f.resnet_channels,
          pixelcnn_layers=f.pixelcnn_layers,
          pixelcnn_channels=f.pixelcnn_channels, lstm_impl=f.lstm_impl,
          bn_gamma=f.bn_gamma),
      objective=objective.ObjectiveConfig(
          kl_weight=f.kl_weight, kl_anneal_steps=f.kl_anneal_steps,
          kl_anneal_start=f.kl_anneal_start, free_bits=f.free_bits,
          kl_cycle_steps=f.kl_cycle_steps, kl_cycle_ratio=f.kl_cycle_ratio,
          pretrain_steps=f.pretrain_steps,
          critic_warmup_steps=f.critic_warmup_steps,
          critic_weight=f.critic_weight, critic_target=f.critic_target,
          critic_constraint=f.critic_constraint,
          critic_lambda_step=f.critic_lambda_step,
          critic_lambda_max=f.critic_lambda_max,
          critic_lambda_kp=f.critic_lambda_kp,
          critic_lambda_follows_lr=f.critic_lambda_follows_lr),
      eval=evaluation.EvalConfig(
          iw_samples=f.iw_samples, iw_chunk_size=f.iw_chunk_size,
          max_examples=f.eval_examples, seed=f.seed,
          iw_report=train_flags.counts(f.iw_report) or ()),
      critic=f.critic, critic_side=f.critic_side,
      num_negatives=f.num_negatives, aggressive=f.aggressive,
      aggressive_max_inner=f.aggressive_max_inner, batch_size=f.batch_size, epochs=f.epochs,
      max_steps=f.max_steps, optimizer=f.optimizer,
      learning_rate=f.learning_rate, clip_norm=f.clip_norm or None,
      critic_clip_norm=f.critic_clip_norm,
      seed=f.seed, out_dir=f.out_dir or "", jit_compile=f.jit_compile,
      strategy=f.strategy, num_cpu_devices=f.num_cpu_devices,
      max_bad_steps=f.max_bad_steps, deterministic=f.deterministic,
      log_every=f.log_every, checkpoint_every=f.checkpoint_every,
      lr_patience=f.lr_patience, lr_warmup_epochs=f.lr_warmup_epochs,
      max_lr_decays=f.max_lr_decays or None, valid_examples=f.valid_examples,
      validate_every=f.validate_every, select=f.select)
  fields.update(overrides)
  config = train.TrainConfig(**fields)
  if not config.out_dir:
    config = dataclasses.replace(config, out_dir=os.path.join(
        "runs", config_lib.default_run_name(config)))
  return config


def run_or_explain(fn, *args, context: str | None = None):
  """Calls fn(*args); a bad input becomes one error line and exit status 2.

  The line starts with `context` (default: the --dataset flag).
  """
  try:
    return fn(*args)
  except (lock.RunDirectoryLocked, config_lib.RunMismatch) as error:
    print(f"error: --out_dir: {error}", file=sys.stderr)
    sys.exit(2)
  except (errors.InputError, FileNotFoundError) as error:
    where = context if context is not None else f"--dataset={FLAGS.dataset}"
    print(f"error: {where}: {error}", file=sys.stderr)
    sys.exit(2)
  except errors.TrainingError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(3)
  except errors.Interrupted as interrupted:
    print(f"interrupted: {interrupted}", file=sys.stderr)
    sys.exit(128 + interrupted.signum)


COLUMNS = ("nll", "kl", "mi", "au", "infonce_bound", "ppl", "train_seconds",
           "seconds_per_step", "step_time_vs_vae")


def metrics_table(run_dir: str, results: dict, split: str = "test") -> str:
  """The table of one run's metrics (format_table), its row named
  "RUN_DIR (checkpoint, split)": what tf-cvae-train and tf-cvae-evaluate
  print."""
  which = results.get("evaluated_checkpoint") or results.get("checkpoint")
  return format_table({f"{run_dir} ({which}, {split})": results})


def format_table(rows: dict[str, dict]) -> str:
  """A fixed-width table: one row per run name, the COLUMNS present."""
  columns = [c for c in COLUMNS if any(c in r for r in rows.values())]
  width = max(len(n) for n in rows) + 2
  lines = ["run".ljust(width) + "".join(c.rjust(17) for c in columns)]
  for name, result in rows.items():
    cells = []
    for c in columns:
      v = result.get(c)
      cells.append(("-" if v is None else f"{v:.0f}" if c == "au"
                    else f"{v:.4f}" if c == "seconds_per_step"
                    else f"{v:.3f}").rjust(17))
    lines.append(name.ljust(width) + "".join(cells))
  return "\n".join(lines)
