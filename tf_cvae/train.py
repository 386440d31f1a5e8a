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
from tf_cvae import metrics
from tf_cvae import objective as objective_lib
from tf_cvae.models import registry


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything a run needs; runners build it from flags."""
  data: data_lib.DataConfig = data_lib.DataConfig()
  model: registry.ModelConfig = registry.ModelConfig()
  objective: objective_lib.ObjectiveConfig = objective_lib.ObjectiveConfig()
  eval: evaluation.EvalConfig = evaluation.EvalConfig()
  critic: str = "none"
  batch_size: int = 32                 # K: the critic's negatives
  epochs: int = 10
  max_steps: int | None = None         # overrides epochs when set
  optimizer: str = "auto"              # sgd | adam; auto: sgd text, adam images
  learning_rate: float | None = None   # None: 1.0 for sgd, 1e-3 for adam
  clip_norm: float | None = 5.0        # global gradient-norm clip
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


class TrainStep:
  """One optimizer step on the negative ELBO plus the critic loss.

  Call it with a batch; it returns scalar tensors: loss, rec, kl, mi (batch
  estimate) and, with a critic, infonce_bound (nats). The whole step is one
  tf.function, XLA-compiled when `jit_compile`.
  """

  def __init__(self, vae, critic, optimizer, objective_config, seed: int = 0,
               jit_compile: bool = False):
    self.vae, self.critic, self.optimizer = vae, critic, optimizer
    self.objective_config = objective_config
    self.seed = seed
    self._step = tf.function(self._train_step, jit_compile=jit_compile)
    self._variables = None

  def build(self, batch: dict) -> None:
    """Creates every variable (networks and optimizer slots) from one batch."""
    objective_lib.forward(self.vae, self.critic, batch, tf.constant([0, 0]),
                      training=False)
    unique = {}
    for module in (self.vae, self.critic):
      for variable in (module.trainable_variables if module else []):
        unique.setdefault(id(variable), variable)
    self._variables = list(unique.values())
    self.optimizer.build(self._variables)

  @property
  def variables(self) -> list:
    """The trained variables (the hybrid critic's shared ones counted once)."""
    return self._variables

  def _train_step(self, batch):
    step = tf.cast(self.optimizer.iterations, tf.int32)
    seed = tf.stack([tf.constant(self.seed, tf.int32), step])
    with tf.GradientTape() as tape:
      terms = objective_lib.forward(self.vae, self.critic, batch, seed,
                                training=True)
      loss = objective_lib.total_loss(terms, self.objective_config)
    gradients = tape.gradient(loss, self._variables)
    self.optimizer.apply_gradients(zip(gradients, self._variables))
    out = {"loss": loss, "rec": -tf.reduce_mean(terms["log_likelihood"]),
           "kl": tf.reduce_mean(terms["kl"]),
           "mi": metrics.mutual_information(terms["mu"], terms["logvar"],
                                            terms["z"])}
    if "infonce_bound" in terms:
      out["infonce_bound"] = terms["infonce_bound"]
    return out

  def __call__(self, batch: dict) -> dict:
    if self._variables is None:
      self.build(batch)
    return self._step(batch)


def _write_json(path: str, payload: dict) -> None:
  """Writes JSON atomically (write, then rename)."""
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


# Config sections that must match to resume from an existing run directory.
_RESUME_KEYS = ("data", "model", "critic", "batch_size", "optimizer")


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

  dataset = data_lib.load(config.data)
  if dataset.kind == "text":
    dataset.vocab.save(os.path.join(config.out_dir, "vocab.txt"))
  vae = registry.build_vae(config.model, dataset)
  critic = registry.build_critic(config.critic, vae)
  optimizer = make_optimizer(config, dataset.kind)
  jit = resolve_jit_compile(config.jit_compile,
                            registry.resolve_model_name(config.model, dataset.kind))
  train_step = TrainStep(vae, critic, optimizer, config.objective,
                         seed=config.seed, jit_compile=jit)

  def epoch_batches(epoch):
    return dataset.batches("train", config.batch_size, shuffle=True,
                           seed=config.seed * 1000 + epoch, drop_remainder=True)

  train_step.build(next(iter(epoch_batches(0))))
  epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
  step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
  checkpoint = tf.train.Checkpoint(vae=vae, optimizer=optimizer, epoch=epoch,
                                   step_in_epoch=step_in_epoch,
                                   **({"critic": critic} if critic else {}))
  manager = tf.train.CheckpointManager(
      checkpoint, os.path.join(config.out_dir, "checkpoints"), max_to_keep=2)
  if manager.latest_checkpoint:
    checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    logging.info("resumed from %s at step %d", manager.latest_checkpoint,
                 int(optimizer.iterations))

  logging.info("training %s with critic %s on %s (%d train examples), "
               "jit_compile=%s, %d parameters", vae.name, config.critic,
               dataset.name, dataset.num_examples("train"), jit,
               sum(int(np.prod(v.shape)) for v in train_step.variables))
  max_steps = config.max_steps
  started, window_start, window_steps = time.time(), time.time(), 0
  done = lambda: max_steps is not None and int(optimizer.iterations) >= max_steps
  while not done() and (max_steps is not None or int(epoch) < config.epochs):
    for batch in epoch_batches(int(epoch)).skip(int(step_in_epoch)):
      out = train_step(batch)
      step_in_epoch.assign_add(1)
      window_steps += 1
      step = int(optimizer.iterations)
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
  manager.save(checkpoint_number=int(optimizer.iterations))
  train_seconds = time.time() - started

  eval_config = dataclasses.replace(config.eval, batch_size=config.batch_size)
  results = evaluation.evaluate(vae, critic, dataset, eval_config)
  results.update(train_seconds=train_seconds, steps=int(optimizer.iterations))
  _write_json(os.path.join(config.out_dir, "metrics.json"), results)
  return results
