"""Training: the config, the one-`tf.function` train step, and the loop.

`run(TrainConfig) -> dict` is what runners and tests call: it trains (resuming
from the run directory's last checkpoint), evaluates the test split and writes
config.json, metrics.json and the checkpoints into `out_dir`.
"""

import dataclasses
import json
import os
import time

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from tf_cvae import data as data_lib
from tf_cvae import evaluation
from tf_cvae import objective as objective_lib
from tf_cvae import train_step as train_step_lib
from tf_cvae.models import registry


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything a run needs; runners build it from flags."""
  data: data_lib.DataConfig = data_lib.DataConfig()
  model: registry.ModelConfig = registry.ModelConfig()
  objective: objective_lib.ObjectiveConfig = objective_lib.ObjectiveConfig()
  eval: evaluation.EvalConfig = evaluation.EvalConfig()
  critic: str = "none"                 # inference critic: none self hybrid nn
  critic_side: str = "inference"       # inference | model | both
  num_negatives: int = 0               # queue of earlier batches' negatives
  aggressive: bool = False             # He et al.'s aggressive encoder updates
  aggressive_max_inner: int = 100      # encoder updates per step at most
  batch_size: int = 32                 # K: the critic's negatives
  epochs: int = 10
  max_steps: int | None = None         # overrides epochs when set
  optimizer: str = "auto"              # sgd | adam; auto: sgd text, adam images
  learning_rate: float | None = None   # None: 1.0 for sgd, 1e-3 for adam
  clip_norm: float | None = 5.0        # global gradient-norm clip
  critic_optimizer: str = "adam"       # critics' own parameters: adam | same
  critic_learning_rate: float = 1e-3
  seed: int = 0
  out_dir: str = "runs/default"
  jit_compile: str = "auto"            # on | off | auto (see resolve_jit_compile)
  log_every: int = 100
  checkpoint_every: int = 500


def resolve_jit_compile(setting: str, model_name: str) -> bool:
  """Whether to XLA-compile the train step.

  "auto": never for LSTM models (cuDNN kernels cannot be compiled on GPU, and
  on CPU the whole LSTM step measured slower under XLA, see PITFALLS.md); for
  the other models, only when a GPU is present.
  """
  if setting in ("on", "off"):
    return setting == "on"
  if setting != "auto":
    raise ValueError(f"jit_compile must be on, off or auto, got {setting!r}")
  if model_name == "lstm":
    return False
  return bool(tf.config.list_physical_devices("GPU"))


def make_optimizer(config: TrainConfig, data_kind: str) -> keras.optimizers.Optimizer:
  """The paper's optimizers: SGD (lr 1.0) for text, Adam (1e-3) for images."""
  name = config.optimizer
  if name == "auto":
    name = "sgd" if data_kind == "text" else "adam"
  clip = {"global_clipnorm": config.clip_norm} if config.clip_norm else {}
  if name == "sgd":
    return keras.optimizers.SGD(config.learning_rate or 1.0, **clip)
  if name == "adam":
    return keras.optimizers.Adam(config.learning_rate or 1e-3, **clip)
  raise ValueError(f"optimizer must be sgd, adam or auto, got {name!r}")


def _write_json(path: str, payload: dict) -> None:
  """Writes JSON atomically (write, then rename)."""
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


# Config sections that must match to resume from an existing run directory.
_RESUME_KEYS = ("data", "model", "critic", "critic_side", "num_negatives",
                "batch_size", "optimizer")


def _check_resumable(out_dir: str, config_dict: dict) -> None:
  path = os.path.join(out_dir, "config.json")
  if not os.path.exists(path):
    return
  with open(path, encoding="utf-8") as f:
    saved = json.load(f)
  clashes = [k for k in _RESUME_KEYS if saved.get(k) != config_dict.get(k)]
  if clashes:
    raise ValueError(
        f"{out_dir} holds a run with a different {', '.join(clashes)} (see "
        f"{path}); pass a new --out_dir or delete the old run")


def _load_data(config: TrainConfig):
  """The data set; a resumed text run reuses the run's saved vocabulary."""
  vocab_path = os.path.join(config.out_dir, "vocab.txt")
  data_config = config.data
  if os.path.exists(vocab_path):
    # Text ids stay those the checkpoint was trained with (loaders of
    # generated or image data ignore vocab_file).
    data_config = dataclasses.replace(data_config, vocab_file=vocab_path)
  dataset = data_lib.load(data_config)
  if dataset.kind == "text":
    dataset.vocab.save(vocab_path)
  return dataset


def build_train_step(config: TrainConfig, dataset) -> train_step_lib.TrainStep:
  """The model, critics and optimizers of `config`, as one TrainStep."""
  if config.critic_side not in ("inference", "model", "both"):
    raise ValueError(f"critic_side must be inference, model or both, got "
                     f"{config.critic_side!r}")
  if config.critic_side == "both" and config.critic == "none":
    raise ValueError("critic_side=both needs an inference critic (critic)")
  vae = registry.build_vae(config.model, dataset)
  critic = (registry.build_critic(config.critic, vae, dataset)
            if config.critic_side != "model" else None)
  model_critic = (registry.build_model_critic(dataset)
                  if config.critic_side != "inference" else None)
  model_name = registry.resolve_model_name(config.model, dataset.kind)
  return train_step_lib.TrainStep(
      vae, critic, make_optimizer(config, dataset.kind), config.objective,
      seed=config.seed, model_critic=model_critic,
      jit_compile=resolve_jit_compile(config.jit_compile, model_name),
      num_negatives=config.num_negatives,
      encoder_optimizer=(make_optimizer(config, dataset.kind)
                         if config.aggressive else None),
      critic_optimizer=_critic_optimizer(config))


def _critic_optimizer(config: TrainConfig):
  """Adam for the critics' own parameters, or None to use the main optimizer.

  Under the text protocol's SGD (lr 1.0, clipped) the NN and hybrid critics'
  heads learned too slowly to raise MI in 600 steps on the embedded data;
  with Adam they did (see the closing notes of issue 5).
  """
  if config.critic_optimizer == "same":
    return None
  if config.critic_optimizer != "adam":
    raise ValueError(f"critic_optimizer must be adam or same, got "
                     f"{config.critic_optimizer!r}")
  return keras.optimizers.Adam(config.critic_learning_rate)


def run(config: TrainConfig) -> dict:
  """Trains (resuming if out_dir has checkpoints), evaluates, writes files.

  Returns the test metrics (see evaluation.evaluate) plus train_seconds and
  steps; the same dict is written to out_dir/metrics.json.
  """
  config_dict = dataclasses.asdict(config)
  os.makedirs(config.out_dir, exist_ok=True)
  _check_resumable(config.out_dir, config_dict)
  _write_json(os.path.join(config.out_dir, "config.json"), config_dict)
  keras.utils.set_random_seed(config.seed)
  dataset = _load_data(config)
  step_fn = build_train_step(config, dataset)
  optimizer = step_fn.optimizer

  def epoch_batches(epoch):
    return dataset.batches("train", config.batch_size, shuffle=True,
                           seed=config.seed * 1000 + epoch, drop_remainder=True)

  step_fn.build(next(iter(epoch_batches(0))))
  epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
  step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
  aggressive = tf.Variable(config.aggressive, trainable=False)
  tracked = dict(vae=step_fn.vae, critic=step_fn.critic,
                 model_critic=step_fn.model_critic, negatives=step_fn.negatives,
                 encoder_optimizer=step_fn.encoder_optimizer,
                 critic_optimizer=step_fn.critic_optimizer)
  checkpoint = tf.train.Checkpoint(
      optimizer=optimizer, epoch=epoch, step_in_epoch=step_in_epoch,
      aggressive=aggressive, **{k: v for k, v in tracked.items() if v})
  manager = tf.train.CheckpointManager(
      checkpoint, os.path.join(config.out_dir, "checkpoints"), max_to_keep=2)
  if manager.latest_checkpoint:
    checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    logging.info("resumed from %s at step %d", manager.latest_checkpoint,
                 int(optimizer.iterations))
  logging.info("training %s, critic %s (%s side) on %s (%d train examples), "
               "jit_compile=%s, %d parameters", step_fn.vae.name, config.critic,
               config.critic_side, dataset.name,
               dataset.num_examples("train"), step_fn.jit_compile,
               sum(int(np.prod(v.shape)) for v in step_fn.variables))
  inner_batches = iter(dataset.batches(
      "train", config.batch_size, shuffle=True, seed=config.seed + 7,
      drop_remainder=True).repeat())
  valid_mi = []
  max_steps = config.max_steps
  started, window_start, window_steps = time.time(), time.time(), 0
  # Steady-state step time: from the 21st step of this process on (tracing and
  # compilation happen in the first steps).
  first_step, timed_from = int(optimizer.iterations), None
  done = lambda: max_steps is not None and int(optimizer.iterations) >= max_steps
  while not done() and (max_steps is not None or int(epoch) < config.epochs):
    for batch in epoch_batches(int(epoch)).skip(int(step_in_epoch)):
      if bool(aggressive):
        out, inner = train_step_lib.aggressive_step(
            step_fn, batch, inner_batches, config.aggressive_max_inner)
        out = dict(out, inner_steps=inner)
      else:
        out = step_fn(batch)
      step_in_epoch.assign_add(1)
      window_steps += 1
      step = int(optimizer.iterations)
      if step == first_step + 20:
        timed_from = (time.time(), step)
      if step % config.log_every == 0:
        rate = window_steps / max(time.time() - window_start, 1e-9)
        logging.info("epoch %d step %d  %s  (%.1f steps/s)", int(epoch), step,
                     "  ".join(f"{k} {float(v):.3f}" for k, v in out.items()),
                     rate)
        window_start, window_steps = time.time(), 0
      if step % config.checkpoint_every == 0:
        manager.save(checkpoint_number=step)
      if done():
        break
    else:
      epoch.assign_add(1)
      step_in_epoch.assign(0)
      if bool(aggressive):
        valid_mi.append(evaluation.evaluate(
            step_fn.vae, None, dataset, evaluation.EvalConfig(
                split="valid", batch_size=config.batch_size, iw_samples=0,
                max_examples=1000))["mi"])
        aggressive.assign(train_step_lib.stays_aggressive(valid_mi))
        logging.info("validation MI %.3f: aggressive training %s",
                     valid_mi[-1], "continues" if bool(aggressive) else "ends")
  train_seconds = time.time() - started
  steady = None
  if timed_from and int(optimizer.iterations) > timed_from[1]:
    steady = ((time.time() - timed_from[0])
              / (int(optimizer.iterations) - timed_from[1]))
  manager.save(checkpoint_number=int(optimizer.iterations))

  eval_config = dataclasses.replace(config.eval, batch_size=config.batch_size)
  results = evaluation.evaluate(step_fn.vae, step_fn.critic, dataset,
                                eval_config)
  results.update(train_seconds=train_seconds, steps=int(optimizer.iterations))
  if steady is not None:
    results["seconds_per_step"] = steady
  _write_json(os.path.join(config.out_dir, "metrics.json"), results)
  return results
