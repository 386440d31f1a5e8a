"""From a TrainConfig to data, networks, optimizers and a TrainStep, and the
checkpoint layout of a training run (restoring a finished run for its uses:
tf_cvae.trained.restore)."""

import contextlib
import dataclasses
import itertools
import os

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from tf_cvae import critics
from tf_cvae import data as data_lib
from tf_cvae import errors
from tf_cvae import replicas
from tf_cvae import train_step as train_step_lib
from tf_cvae.models import registry
from tf_cvae.training import checkpointing
from tf_cvae.training import config as config_lib
from tf_cvae.training import lock

TrainConfig = config_lib.TrainConfig


def resolve_jit_compile(setting: str, model_name: str) -> bool:
  """Whether to XLA-compile the train step.

  "auto": never for LSTM models (cuDNN kernels cannot be compiled on GPU, and
  on CPU the whole LSTM step measured slower under XLA: 0.30 s against
  0.15 s at B32 T40 V5k E256 H512, the vocabulary matmul being slower); for
  the other models, only when a GPU is present.
  """
  if setting in ("on", "off"):
    return setting == "on"
  if setting != "auto":
    raise errors.InputError(f"jit_compile must be on, off or auto, got {setting!r}")
  if model_name == "lstm":
    return False
  return bool(tf.config.list_physical_devices("GPU"))


def make_optimizer(config: TrainConfig, data_kind: str) -> keras.optimizers.Optimizer:
  """The paper's optimizers: SGD (lr 1.0) for text, Adam (1e-3) for images.

  They do not clip: the TrainStep clips (config.clip_norm).
  """
  name = config.optimizer
  if name == "auto":
    name = "sgd" if data_kind == "text" else "adam"
  if name == "sgd":
    return keras.optimizers.SGD(config.learning_rate or 1.0)
  if name == "adam":
    return keras.optimizers.Adam(config.learning_rate or 1e-3)
  raise errors.InputError(f"optimizer must be sgd, adam or auto, got {name!r}")


def epoch_batches(dataset, config: TrainConfig, epoch: int,
                  multiple_of: int = 1):
  """The training batches of `epoch` (0-based), in their seeded order.

  Images: full batches. Text, batched by exact length (He et al.): a
  length's leftover sentences make a smaller batch, its size a multiple of
  `multiple_of` (the replicas, which split every batch).
  """
  return dataset.batches("train", config.batch_size, shuffle=True,
                         seed=config.seed * 1000 + epoch, drop_remainder=True,
                         multiple_of=multiple_of)


def steps_per_epoch(dataset, config: TrainConfig, multiple_of: int = 1) -> int:
  """Batches in one epoch of epoch_batches."""
  num = dataset.num_examples("train")
  if dataset.kind == "text":
    return len(data_lib.base.exact_length_batches(
        dataset.lengths("train"), config.batch_size, shuffle=False, seed=0,
        multiple_of=multiple_of))
  return max(num // config.batch_size, 1)


def rest_of_epoch(dataset, config: TrainConfig, state, strategy):
  """The batches of epoch_batches(state.epoch) from its state.step_in_epoch-th
  on (LoopState's counters), as `strategy`'s replicas take them
  (replicas.distribute_batches)."""
  epoch, skip = int(state.epoch), int(state.step_in_epoch)
  make_batches = lambda: epoch_batches(
      dataset, config, epoch, strategy.num_replicas_in_sync).skip(skip)
  return replicas.distribute_batches(strategy, make_batches, config.batch_size)


def inner_loop_batches(dataset, config: TrainConfig, strategy=None):
  """Endless training batches for the aggressive inner loop, as `strategy`'s
  replicas take them (None: one device).

  Each pass over the data has its own order (and, for images, its own
  dynamic binarization); the seeds lie far from the epochs' seed * 1000 +
  epoch, so the inner loop never replays an epoch's stream.
  """
  strategy = strategy or tf.distribute.get_strategy()
  for pass_index in itertools.count():
    seed = 10**9 + config.seed * 1000 + pass_index
    yield from replicas.distribute_batches(
        strategy, lambda seed=seed: dataset.batches(
            "train", config.batch_size, shuffle=True, drop_remainder=True,
            multiple_of=strategy.num_replicas_in_sync, seed=seed),
        config.batch_size)


def load_data(config: TrainConfig, run_dir: str, save_vocab: bool = True):
  """The data set; a text run reuses its vocabulary (run_dir/vocab.txt)."""
  vocab_path = os.path.join(run_dir, "vocab.txt")
  data_config = config.data
  if os.path.exists(vocab_path):
    # Text ids stay those the checkpoint was trained with (loaders of
    # generated or image data ignore vocab_file).
    data_config = dataclasses.replace(data_config, vocab_file=vocab_path)
  dataset = data_lib.load(data_config)
  if dataset.kind == "text" and save_vocab:
    dataset.vocab.save(vocab_path)
  return dataset


def build_train_step(config: TrainConfig, dataset,
                     strategy=None) -> train_step_lib.TrainStep:
  """The model, critics and optimizers of `config`, as one TrainStep.

  With a tf.distribute `strategy`, everything is created in its scope.
  """
  strategy = strategy or tf.distribute.get_strategy()
  with strategy.scope():
    return _build_train_step(config, dataset, strategy)


def _build_train_step(config, dataset, strategy):
  if config.critic_side not in ("inference", "model", "both"):
    raise errors.InputError(f"critic_side must be inference, model or both, got "
                     f"{config.critic_side!r}")
  if config.critic_side == "both" and config.critic == "none":
    raise errors.InputError("critic_side=both needs an inference critic (critic)")
  vae = registry.build_vae(config.model, dataset)
  critic = (critics.build_critic(config.critic, vae, dataset)
            if config.critic_side != "model" else None)
  model_critic = (critics.build_model_critic(dataset)
                  if config.critic_side != "inference" else None)
  model_name = registry.resolve_model_name(config.model, dataset.kind)
  return train_step_lib.TrainStep(
      vae, critic, make_optimizer(config, dataset.kind), config.objective,
      seed=config.seed, model_critic=model_critic,
      jit_compile=resolve_jit_compile(config.jit_compile, model_name),
      num_negatives=config.num_negatives,
      encoder_optimizer=(make_optimizer(config, dataset.kind)
                         if config.aggressive else None),
      critic_optimizer=keras.optimizers.Adam(config.critic_learning_rate),
      strategy=strategy,
      clip_norm=config.clip_norm, critic_clip_norm=config.critic_clip_norm)


def training_parts(config: TrainConfig):
  """(dataset, built TrainStep) of a run, on the devices config.strategy
  names; the global batch must split evenly over the replicas. Only the
  chief saves a text run's vocabulary (replicas.is_chief)."""
  strategy = replicas.make_strategy(config.strategy, config.num_cpu_devices)
  num_replicas = strategy.num_replicas_in_sync
  if config.batch_size % num_replicas:
    raise errors.InputError(
        f"--batch_size={config.batch_size} does not split over {num_replicas} "
        f"replicas (--strategy={config.strategy}); use a multiple of "
        f"{num_replicas}")
  keras.utils.set_random_seed(config.seed)
  dataset = load_data(config, config.out_dir,
                      save_vocab=replicas.is_chief(strategy))
  step_fn = build_train_step(config, dataset, strategy)
  step_fn.build(next(iter(epoch_batches(dataset, config, 0))))
  return dataset, step_fn


def worker_config(config: TrainConfig, strategy) -> TrainConfig:
  """`config` as this process runs it: the chief's own; on another worker
  (multi_worker) out_dir is a temporary directory of its own
  (replicas.worker_dir) that starts with copies of the run's checkpoints
  and history, so the worker resumes where the chief does and writes
  nothing into the run directory. Every worker must call it."""
  return dataclasses.replace(config, out_dir=replicas.worker_dir(
      strategy, config.out_dir, reads=("history.jsonl",
                                       *checkpointing.CHECKPOINT_DIRS.values())))


def run_lock(config: TrainConfig):
  """The lock this process holds while it runs `config` (a context manager):
  out_dir/LOCK (lock.RunLock) on the chief; nothing on the other workers
  of a multi_worker run, which write nothing into out_dir."""
  if replicas.is_chief(config.strategy):
    return lock.RunLock(config.out_dir)
  return contextlib.nullcontext()


def log_setup(config: TrainConfig, dataset, step_fn) -> None:
  """One log line: what trains on what, on how many replicas."""
  logging.info("training %s, critic %s (%s side) on %s (%d train examples), "
               "%d replica(s), K = %d, jit_compile=%s, %d parameters",
               step_fn.vae.name, config.critic, config.critic_side,
               dataset.name, dataset.num_examples("train"),
               step_fn.num_replicas, config.batch_size, step_fn.jit_compile,
               sum(int(np.prod(v.shape)) for v in step_fn.variables))
