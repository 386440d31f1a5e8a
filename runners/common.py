"""Flags shared by the runners, and their translation into library configs.

Only runners import absl.flags; the library takes the dataclasses built here.
"""

import dataclasses
import datetime
import math
import os
import sys

from absl import flags
from absl import logging

from tf_cvae import data as data_lib
from tf_cvae import determinism
from tf_cvae import errors
from tf_cvae import evaluation
from tf_cvae import methods
from tf_cvae import objective
from tf_cvae import replicas
from tf_cvae import train
from tf_cvae.models import fused_lstm
from tf_cvae.models import registry

FLAGS = flags.FLAGS


class _QuietLibraries:
  """A log filter: drops INFO lines that TensorFlow and Keras log themselves."""
  _NOISY = frozenset({"tensorflow", "keras", "tensorflow_datasets",
                      "tensorflow_probability"})

  def filter(self, record) -> bool:
    return (record.levelno >= logging.converter.STANDARD_WARNING
            or not self._NOISY.intersection(record.pathname.split(os.sep)))


def setup_logging() -> None:
  """Our progress lines at INFO; other libraries' INFO chatter dropped."""
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_QuietLibraries())


def define_train_flags() -> None:
  """Defines every flag of a training run (train.py, quickstart.py)."""
  flags.DEFINE_enum("dataset", "synthetic_text", data_lib.names(),
                    "Data set to train on.")
  flags.DEFINE_string("data_dir", None, "Folder of the real data files "
                      "(default: $TF_CVAE_DATA, else ../shared/data).")
  for split in data_lib.base.SPLITS:
    flags.DEFINE_string(f"{split}_file", None,
                        f"--dataset=text: the {split} file, one sentence a line.")
  flags.DEFINE_integer("max_vocab", None, "Cap on vocabulary ids.", lower_bound=5)
  flags.DEFINE_integer("min_count", 1, "Rarer training words become unknown.",
                       lower_bound=1)
  flags.DEFINE_integer("max_length", None, "Words per sentence at most.",
                       lower_bound=1)
  flags.DEFINE_string("vocab_file", None, "Use this saved vocabulary (a run's "
                      "vocab.txt) instead of building one.")
  flags.DEFINE_enum("long_sentences", "drop", ["drop", "truncate"],
                    "What happens to sentences over --max_length.")
  flags.DEFINE_enum("model", "auto", ["auto"] + sorted(registry.MODELS),
                    "Encoder/decoder pair; auto: lstm for text, mlp for images.")
  flags.DEFINE_integer("embed_dim", 128, "Word embedding size.", lower_bound=1)
  flags.DEFINE_integer("hidden_dim", 256, "LSTM / MLP hidden size.",
                       lower_bound=1)
  flags.DEFINE_integer("latent_dim", 32, "Size of z.", lower_bound=1)
  flags.DEFINE_integer("resnet_channels", 64, "--model=pixelcnn: channels of "
                       "the ResNet encoder's stages.", lower_bound=1)
  flags.DEFINE_integer("pixelcnn_layers", 12, "--model=pixelcnn: gated "
                       "layers (kernel sizes spread from 9 to 3).",
                       lower_bound=1)
  flags.DEFINE_integer("pixelcnn_channels", 32, "--model=pixelcnn: channels "
                       "of each gated layer.", lower_bound=1)
  flags.DEFINE_float("decoder_dropout", 0.5, "Dropout of the LSTM decoder.",
                     lower_bound=0.0, upper_bound=0.99)
  flags.DEFINE_enum("critic", "none", list(registry.CRITICS),
                    "Contrastive critic; none is the plain VAE.")
  flags.DEFINE_enum("critic_side", "inference", ["inference", "model", "both"],
                    "Contrast q(x, z) pairs (inference), p(z) p(x|z) pairs "
                    "(model critic, appendix E), or both.")
  flags.DEFINE_float("critic_weight", None, "lambda: weight of the critic "
                     "loss (default: the critic's, methods.CRITIC_DEFAULTS, "
                     "chosen in RESULTS.md).", lower_bound=0.0)
  flags.DEFINE_integer("critic_warmup_steps", 0, "Linear warm-up of lambda "
                       "from 0 over this many steps.", lower_bound=0)
  flags.DEFINE_integer("num_negatives", 0, "Queue of earlier batches' "
                       "negatives: K = batch + this.", lower_bound=0)
  flags.DEFINE_float("critic_target", None, "Nats: no critic loss once the "
                     "InfoNCE bound c + log K reaches this (a hinge; default: "
                     "the critic's, methods.CRITIC_DEFAULTS; inf: no hinge).")
  flags.DEFINE_float("kl_weight", 1.0, "beta: weight of the KL term.",
                     lower_bound=0.0)
  flags.DEFINE_integer("kl_anneal_steps", 0, "KL annealing: beta rises "
                       "linearly over this many steps.", lower_bound=0)
  flags.DEFINE_float("kl_anneal_start", 0.1, "beta at the start of annealing.",
                     lower_bound=0.0)
  flags.DEFINE_float("free_bits", 0.0, "Free bits: nats per latent dim under "
                     "which the KL costs nothing.", lower_bound=0.0)
  flags.DEFINE_boolean("aggressive", False, "He et al.'s aggressive training: "
                       "encoder-only inner loop until it converges.")
  flags.DEFINE_integer("aggressive_max_inner", 100, "Inner encoder updates "
                       "per step at most.", lower_bound=1)
  flags.DEFINE_integer("batch_size", 32, "Batch size K (the critic's negatives).",
                       lower_bound=1)
  flags.DEFINE_integer("epochs", 10, "Training epochs.", lower_bound=1)
  flags.DEFINE_integer("max_steps", None, "Stop after this many steps "
                       "(overrides --epochs).", lower_bound=1)
  flags.DEFINE_enum("optimizer", "auto", ["auto", "sgd", "adam"],
                    "auto: SGD for text, Adam for images (the paper's).")
  flags.DEFINE_float("learning_rate", None, "Default 1.0 (SGD) or 1e-3 (Adam).",
                     lower_bound=0.0)
  flags.DEFINE_float("clip_norm", 5.0, "Global gradient norm clip; 0: none.",
                     lower_bound=0.0)
  flags.DEFINE_enum("critic_optimizer", "adam", ["adam", "same"],
                    "Optimizer of the critics' own parameters: Adam, or the "
                    "same as the model's.")
  flags.DEFINE_float("critic_learning_rate", 1e-3, "Learning rate of "
                     "--critic_optimizer=adam.", lower_bound=0.0)
  flags.DEFINE_integer("data_seed", 0, "Seed of the generated data sets and "
                       "of the fixed test binarization: the same across "
                       "--seed replicates, so they share one test set.")
  flags.DEFINE_integer("seed", 0, "Seed of data order, init and sampling.")
  flags.DEFINE_boolean("deterministic", False, "Deterministic TF kernels "
                       "(enable_op_determinism; slower on GPU): the same "
                       "--seed gives the same metrics.json.")
  flags.DEFINE_string("out_dir", None, "Run directory (default: a new one "
                      "under ./runs/); an existing one resumes.")
  flags.DEFINE_enum("jit_compile", "auto", ["auto", "on", "off"],
                    "XLA for the train step; auto: what measured faster.")
  flags.DEFINE_enum("lstm_impl", "auto", list(fused_lstm.IMPLEMENTATIONS),
                    "LSTM layers: fused (hand-written gradient, fastest on "
                    "CPU), keras (cuDNN on GPU); auto: fused without a GPU.")
  flags.DEFINE_enum("strategy", "default", list(replicas.STRATEGIES),
                    "default: one device; mirrored: every local GPU (or the "
                    "CPU split into --num_cpu_devices); multi_worker; tpu. "
                    "The critic's negatives span the global batch.")
  flags.DEFINE_integer("max_bad_steps", 20, "Stop (keeping the best "
                       "checkpoint) after this many steps in a row with a "
                       "non-finite loss or gradient; each is skipped.",
                       lower_bound=1)
  flags.DEFINE_integer("num_cpu_devices", 1, "--strategy=mirrored without "
                       "GPUs: split the host CPU into this many devices.",
                       lower_bound=1)
  flags.DEFINE_integer("iw_samples", 500, "Importance samples of the test "
                       "NLL; 0 skips it.", lower_bound=0)
  flags.DEFINE_integer("iw_chunk_size", 50, "Importance samples per decoder "
                       "pass (bounds memory).", lower_bound=1)
  flags.DEFINE_integer("eval_examples", None, "Evaluate only this many test "
                       "examples.", lower_bound=1)
  flags.DEFINE_integer("log_every", 100, "Steps between progress lines.",
                       lower_bound=1)
  flags.DEFINE_integer("checkpoint_every", 500, "Steps between checkpoints.",
                       lower_bound=1)
  flags.DEFINE_integer("lr_patience", 2, "Halve the learning rate after this "
                       "many epochs without a lower validation loss; 0: "
                       "never.", lower_bound=0)
  flags.DEFINE_integer("lr_warmup_epochs", 0, "Epochs before the patience "
                       "count starts (He et al.: 15).", lower_bound=0)
  flags.DEFINE_integer("max_lr_decays", 5, "Stop training after this many "
                       "halvings; 0: never stop for it.", lower_bound=0)
  flags.DEFINE_integer("valid_examples", None, "Validate every epoch on only "
                       "this many examples (default: the whole split).",
                       lower_bound=1)


def train_config_from_flags(**overrides) -> train.TrainConfig:
  """The TrainConfig the flags describe; keyword overrides replace fields.

  With --deterministic it also turns on determinism (before any model or
  pipeline exists: runners call this first).
  """
  f = FLAGS
  if f.deterministic:
    determinism.enable(overrides.get("seed", f.seed))
  out_dir = f.out_dir or os.path.join("runs", "{}_{}_{}".format(
      f.dataset, overrides.get("critic", f.critic),
      datetime.datetime.now().strftime("%Y%m%d-%H%M%S")))
  fields = dict(
      data=data_lib.DataConfig(
          name=f.dataset, data_dir=f.data_dir, train_file=f.train_file,
          valid_file=f.valid_file, test_file=f.test_file,
          max_vocab=f.max_vocab, min_count=f.min_count,
          max_length=f.max_length, long_sentences=f.long_sentences,
          vocab_file=f.vocab_file, seed=f.data_seed),
      model=registry.ModelConfig(
          name=f.model, embed_dim=f.embed_dim, hidden_dim=f.hidden_dim,
          latent_dim=f.latent_dim, decoder_dropout=f.decoder_dropout,
          resnet_channels=f.resnet_channels,
          pixelcnn_layers=f.pixelcnn_layers,
          pixelcnn_channels=f.pixelcnn_channels, lstm_impl=f.lstm_impl),
      objective=objective.ObjectiveConfig(
          kl_weight=f.kl_weight, kl_anneal_steps=f.kl_anneal_steps,
          kl_anneal_start=f.kl_anneal_start, free_bits=f.free_bits,
          critic_warmup_steps=f.critic_warmup_steps),
      eval=evaluation.EvalConfig(
          iw_samples=f.iw_samples, iw_chunk_size=f.iw_chunk_size,
          max_examples=f.eval_examples, seed=f.seed),
      critic=f.critic, critic_side=f.critic_side,
      num_negatives=f.num_negatives, aggressive=f.aggressive,
      aggressive_max_inner=f.aggressive_max_inner, batch_size=f.batch_size, epochs=f.epochs,
      max_steps=f.max_steps, optimizer=f.optimizer,
      learning_rate=f.learning_rate, clip_norm=f.clip_norm or None,
      critic_optimizer=f.critic_optimizer,
      critic_learning_rate=f.critic_learning_rate,
      seed=f.seed, out_dir=out_dir, jit_compile=f.jit_compile,
      strategy=f.strategy, num_cpu_devices=f.num_cpu_devices,
      max_bad_steps=f.max_bad_steps, deterministic=f.deterministic,
      log_every=f.log_every, checkpoint_every=f.checkpoint_every,
      lr_patience=f.lr_patience, lr_warmup_epochs=f.lr_warmup_epochs,
      max_lr_decays=f.max_lr_decays or None, valid_examples=f.valid_examples)
  fields.update(overrides)
  weight, target = methods.critic_defaults(fields["critic"],
                                           fields["critic_side"])
  if f.critic_weight is not None:
    weight = f.critic_weight
  if f.critic_target is not None:
    target = None if math.isinf(f.critic_target) else f.critic_target
  fields["objective"] = dataclasses.replace(
      fields["objective"], critic_weight=weight, critic_target=target)
  return train.TrainConfig(**fields)


def run_or_explain(fn, *args, context: str | None = None):
  """Calls fn(*args); a bad input becomes one error line and exit status 2.

  The line starts with `context` (default: the --dataset flag).
  """
  try:
    return fn(*args)
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
