"""Training: the config, the one-`tf.function` train step, and the loop.

`run(TrainConfig) -> dict` is what runners and tests call: it trains (resuming
from the run directory's last checkpoint) under the paper's protocol
(validation every epoch, the learning rate halved on a plateau, training
stopped after the last halving, the best checkpoint kept), evaluates the test
split with the best checkpoint and writes into `out_dir`: config.json,
metrics.json, history.jsonl (one line per epoch), tensorboard/, checkpoints/
(the last ones) and best/ (the best one). `load_config` and `restore` rebuild
a finished run from its directory.
"""

import dataclasses
import json
import math
import os
import time

from absl import logging
import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from tf_cvae import data as data_lib
from tf_cvae import errors
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
  lr_patience: int = 2                 # epochs not improving; 0: never halve
  lr_warmup_epochs: int = 0            # epochs not counted (He et al.: 15)
  max_lr_decays: int | None = 5        # stop at this halving; None or 0: never
  valid_examples: int | None = None    # cap on the validation split


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


def _load_data(config: TrainConfig, run_dir: str, save_vocab: bool = True):
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


# The learning-rate schedule of the protocol (SPEC, "Training protocol").


@dataclasses.dataclass(frozen=True)
class PlateauState:
  """The learning-rate schedule after some epochs (losses in nats)."""
  best_loss: float = math.inf    # lowest validation loss so far
  best_epoch: int = 0            # the epoch (from 1) that reached it; 0: none
  bad_epochs: int = 0            # counted epochs without improvement in a row
  decays: int = 0                # halvings so far


def plateau_update(state: PlateauState, epoch: int, valid_loss: float, *,
                   patience: int, warmup_epochs: int = 0) -> PlateauState:
  """The schedule after validating `epoch` (counted from 1) at `valid_loss`.

  An epoch improves when its loss is below every earlier epoch's (NaN never
  does). Epochs up to `warmup_epochs` never count against the run; after
  them, `patience` counted epochs in a row without improvement halve the
  learning rate (decays + 1) and the count starts again. patience 0: never.

  He et al.'s text.py differs in details we do not copy: it counts from the
  first epoch but halves only from its epoch 15 on, compares each epoch with
  the last one that did not get worse rather than with the best, and reloads
  the best weights at each halving.
  """
  if valid_loss < state.best_loss:
    return dataclasses.replace(state, best_loss=valid_loss, best_epoch=epoch,
                               bad_epochs=0)
  if epoch <= warmup_epochs or not patience:
    return state
  if state.bad_epochs + 1 >= patience:
    return dataclasses.replace(state, bad_epochs=0, decays=state.decays + 1)
  return dataclasses.replace(state, bad_epochs=state.bad_epochs + 1)


def schedule_stops(state: PlateauState, max_decays: int | None) -> bool:
  """Whether training ends: the `max_decays`-th halving happened (0: never)."""
  return bool(max_decays) and state.decays >= max_decays


class PlateauVariables(tf.Module):
  """A PlateauState in tf.Variables, so that checkpoints carry the schedule
  (the learning rate itself is the optimizer's variable, checkpointed too)."""

  def __init__(self):
    super().__init__(name="lr_schedule")
    self.best_loss = tf.Variable(math.inf, dtype=tf.float64, trainable=False)
    self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.bad_epochs = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.decays = tf.Variable(0, dtype=tf.int64, trainable=False)

  def read(self) -> PlateauState:
    return PlateauState(float(self.best_loss), int(self.best_epoch),
                        int(self.bad_epochs), int(self.decays))

  def write(self, state: PlateauState) -> None:
    for field in dataclasses.fields(PlateauState):
      getattr(self, field.name).assign(getattr(state, field.name))


def halve_learning_rates(step_fn: train_step_lib.TrainStep) -> float:
  """Halves the model's optimizer (and aggressive training's encoder
  optimizer); returns the new learning rate of the model's optimizer.

  The critics' own Adam (step_fn.critic_optimizer) keeps its rate: the
  schedule watches the validation negative ELBO, to which the critics' own
  parameters do not contribute, and that rate is a setting of its own
  (critic_learning_rate), there because the critics' heads learned too
  slowly at the model's pace (see _critic_optimizer). With
  critic_optimizer="same" the critics' parameters are the model optimizer's
  and follow the halving.
  """
  for optimizer in (step_fn.optimizer, step_fn.encoder_optimizer):
    if optimizer is not None:
      optimizer.learning_rate.assign(optimizer.learning_rate * 0.5)
  return float(step_fn.optimizer.learning_rate)


# Rebuilding a run from its directory.


def _dataclass_from_dict(cls, values):
  """cls(**values), nested dataclass fields rebuilt from their dicts."""
  if not isinstance(values, dict):
    raise errors.InputError(f"{cls.__name__} must be a JSON object, got "
                            f"{type(values).__name__}")
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - set(fields))
  if unknown:
    raise errors.InputError(
        f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
  kwargs = {}
  for name, value in values.items():
    default = fields[name].default
    if dataclasses.is_dataclass(default):
      value = _dataclass_from_dict(type(default), value)
    kwargs[name] = value
  return cls(**kwargs)


def load_config(run_dir: str) -> TrainConfig:
  """The TrainConfig of a run directory, read from its config.json.

  The nested sections (data, model, objective, eval) become their dataclasses
  again; fields the file lacks (runs older than the field) take their
  defaults. Raises errors.InputError (a ValueError) naming the file when it
  is missing, is not JSON, or holds fields this version does not know.
  """
  path = os.path.join(run_dir, "config.json")
  if not os.path.isfile(path):
    why = ("no such directory" if not os.path.isdir(run_dir)
           else "the directory holds no config.json")
    raise errors.InputError(f"{path} not found ({why}); a run directory is "
                            "the out_dir of a training run")
  try:
    with open(path, encoding="utf-8") as f:
      saved = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
    raise errors.InputError(
        f"{path} is not readable JSON: {error}") from None
  try:
    return _dataclass_from_dict(TrainConfig, saved)
  except (TypeError, ValueError) as error:
    raise errors.InputError(f"{path} does not match this version's "
                            f"TrainConfig: {error}") from None


def _model_parts(step_fn: train_step_lib.TrainStep) -> dict:
  """The networks a checkpoint holds under these names (evaluation's share)."""
  parts = dict(vae=step_fn.vae, critic=step_fn.critic,
               model_critic=step_fn.model_critic)
  return {name: part for name, part in parts.items() if part is not None}


def _restore_model(step_fn: train_step_lib.TrainStep, path: str) -> None:
  """Loads the networks (not the optimizers) of checkpoint `path`."""
  try:
    status = tf.train.Checkpoint(**_model_parts(step_fn)).restore(path)
    status.expect_partial().assert_existing_objects_matched()
  except (AssertionError, ValueError) as error:
    raise errors.InputError(f"checkpoint {path} does not fit the model of "
                            f"its config.json: {error}") from None


CHECKPOINT_DIRS = {"best": "best", "last": "checkpoints"}

# How TensorBoard's scalars plugin marks its summaries.
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
    data_class=summary_pb2.DATA_CLASS_SCALAR)


def restore(run_dir: str, which: str = "best"):
  """Rebuilds a run from its directory: (step_fn, dataset, config).

  Data and networks are built as `run` built them (config.json; a text run
  reuses run_dir/vocab.txt), then the networks are loaded from the best
  checkpoint (run_dir/best) or the last one (run_dir/checkpoints); optimizer
  state is not loaded. config.out_dir is set to run_dir. Raises
  errors.InputError (a ValueError) when the directory, its config or the
  checkpoint is missing or does not fit.
  """
  if which not in CHECKPOINT_DIRS:
    raise errors.InputError(f"checkpoint must be one of "
                            f"{', '.join(CHECKPOINT_DIRS)}, got {which!r}")
  config = dataclasses.replace(load_config(run_dir), out_dir=run_dir)
  folder = os.path.join(run_dir, CHECKPOINT_DIRS[which])
  path = tf.train.latest_checkpoint(folder)
  if path is None:
    hint = (" (best/ appears once an epoch has finished; the last checkpoint "
            "is in checkpoints/)" if which == "best" else "")
    raise errors.InputError(f"no checkpoint in {folder}{hint}")
  keras.utils.set_random_seed(config.seed)
  dataset = _load_data(config, run_dir, save_vocab=False)
  step_fn = build_train_step(config, dataset)
  step_fn.build(next(iter(dataset.batches("train", config.batch_size))))
  _restore_model(step_fn, path)
  logging.info("restored %s from %s", step_fn.vae.name, path)
  return step_fn, dataset, config


# The training loop.


def _epoch_batches(dataset, config: TrainConfig, epoch: int):
  """The training batches of `epoch` (0-based), in their seeded order."""
  return dataset.batches("train", config.batch_size, shuffle=True,
                         seed=config.seed * 1000 + epoch, drop_remainder=True)


class _Training:
  """One call of `run`: the counters, checkpoints and logs around a TrainStep.

  The checkpoint holds the networks, optimizers, negative queue, the position
  in the data (epoch, step_in_epoch), this epoch's summed train loss, the
  aggressive switch and the learning-rate schedule, so a resumed run goes on
  exactly where the interrupted one was.
  """

  def __init__(self, config: TrainConfig, dataset,
               step_fn: train_step_lib.TrainStep):
    """`step_fn` must be built: building creates the queue and drops an
    unused critic optimizer, and the checkpoint tracks what exists now."""
    self.config, self.dataset, self.step_fn = config, dataset, step_fn
    out_dir = config.out_dir
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.loss_sum = tf.Variable(0.0, dtype=tf.float64, trainable=False)
    self.aggressive = tf.Variable(config.aggressive, trainable=False)
    self.schedule = PlateauVariables()
    tracked = dict(_model_parts(step_fn), negatives=step_fn.negatives,
                   encoder_optimizer=step_fn.encoder_optimizer,
                   critic_optimizer=step_fn.critic_optimizer)
    self.checkpoint = tf.train.Checkpoint(
        optimizer=step_fn.optimizer, epoch=self.epoch,
        step_in_epoch=self.step_in_epoch, epoch_loss_sum=self.loss_sum,
        aggressive=self.aggressive, lr_schedule=self.schedule,
        **{k: v for k, v in tracked.items() if v is not None})
    self.last = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(out_dir, CHECKPOINT_DIRS["last"]),
        max_to_keep=2)
    self.best = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(out_dir, CHECKPOINT_DIRS["best"]),
        max_to_keep=1)
    self.writer = tf.summary.create_file_writer(
        os.path.join(out_dir, "tensorboard"))
    self.history_path = os.path.join(out_dir, "history.jsonl")
    self.history = []
    self.validator = evaluation.Evaluator(step_fn.vae, step_fn.critic)

  def resume(self) -> None:
    """Loads the last checkpoint, if any, and the history of its epochs."""
    if self.last.latest_checkpoint:
      try:
        self.checkpoint.restore(
            self.last.latest_checkpoint).assert_existing_objects_matched()
      except AssertionError as error:
        raise errors.InputError(
            f"{self.last.latest_checkpoint} lacks parts of this version's "
            f"training state (written by an older tf_cvae?); pass a new "
            f"--out_dir: {error}") from None
      state = self.schedule.read()
      logging.info("resumed from %s at step %d, epoch %d (learning rate %g, "
                   "%d halvings, best epoch %d)", self.last.latest_checkpoint,
                   int(self.step_fn.optimizer.iterations), int(self.epoch),
                   float(self.step_fn.optimizer.learning_rate), state.decays,
                   state.best_epoch)
    if os.path.exists(self.history_path):
      with open(self.history_path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
      # Lines past the checkpoint (written before an interruption) go: the
      # resumed run validates those epochs again.
      self.history = [r for r in records if r["epoch"] <= int(self.epoch)]
      if len(self.history) < len(records):
        self._write_history()

  def _write_history(self) -> None:
    tmp = self.history_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.writelines(json.dumps(r, sort_keys=True) + "\n" for r in self.history)
    os.replace(tmp, self.history_path)

  def steps_done(self) -> bool:
    max_steps = self.config.max_steps
    return (max_steps is not None
            and int(self.step_fn.optimizer.iterations) >= max_steps)

  def finished(self) -> bool:
    if self.steps_done():
      return True
    if schedule_stops(self.schedule.read(), self.config.max_lr_decays):
      return True
    return (self.config.max_steps is None
            and int(self.epoch) >= self.config.epochs)

  def summaries(self, prefix: str, values: dict, step: int) -> None:
    """TensorBoard scalars `prefix/name` at `step`.

    Written with tf.summary.write and the scalars plugin's metadata, which is
    what tf.summary.scalar writes, minus its need for the tensorboard package
    (not a dependency of TensorFlow 2.21 nor of ours).
    """
    with self.writer.as_default(step=step):
      for name, value in values.items():
        tf.summary.write(f"{prefix}/{name}", tf.cast(value, tf.float32),
                         metadata=_SCALAR_METADATA)

  def train(self) -> float | None:
    """Trains until finished(); returns the steady seconds per step."""
    config, step_fn = self.config, self.step_fn
    optimizer = step_fn.optimizer
    inner_batches = iter(self.dataset.batches(
        "train", config.batch_size, shuffle=True, seed=config.seed + 7,
        drop_remainder=True).repeat())
    window_start, window_steps = time.time(), 0
    # Steady-state step time: from the 21st step of this process on (tracing
    # and compilation happen in the first steps), validation time left out.
    first_step, timed_from, paused = int(optimizer.iterations), None, 0.0
    while not self.finished():
      batches = _epoch_batches(self.dataset, config, int(self.epoch))
      for batch in batches.skip(int(self.step_in_epoch)):
        if bool(self.aggressive):
          out, inner = train_step_lib.aggressive_step(
              step_fn, batch, inner_batches, config.aggressive_max_inner)
          out = dict(out, inner_steps=inner)
        else:
          out = step_fn(batch)
        self.step_in_epoch.assign_add(1)
        self.loss_sum.assign_add(tf.cast(out["loss"], tf.float64))
        window_steps += 1
        step = int(optimizer.iterations)
        if step == first_step + 20:
          timed_from = (time.time(), step)
        if step % config.log_every == 0:
          rate = window_steps / max(time.time() - window_start, 1e-9)
          # Epochs count from 1 in the logs, as in history.jsonl.
          logging.info("epoch %d step %d  %s  (%.1f steps/s)",
                       int(self.epoch) + 1, step, "  ".join(
                           f"{k} {float(v):.3f}" for k, v in out.items()), rate)
          self.summaries("train", dict(
              out, learning_rate=optimizer.learning_rate), step)
          window_start, window_steps = time.time(), 0
        if step % config.checkpoint_every == 0:
          self.last.save(checkpoint_number=step)
        if self.steps_done():
          break
      else:
        started = time.time()
        self.end_epoch()
        validation = time.time() - started
        window_start += validation
        if timed_from is not None:
          paused += validation
    self.writer.flush()
    steps = int(optimizer.iterations) - timed_from[1] if timed_from else 0
    if steps <= 0:
      return None
    return (time.time() - timed_from[0] - paused) / steps

  def end_epoch(self) -> None:
    """Validation, the schedule, the best checkpoint, history and summaries."""
    config, step_fn = self.config, self.step_fn
    self.epoch.assign_add(1)
    epoch, step = int(self.epoch), int(step_fn.optimizer.iterations)
    train_loss = float(self.loss_sum) / max(int(self.step_in_epoch), 1)
    self.step_in_epoch.assign(0)
    self.loss_sum.assign(0.0)
    valid = self.validator(self.dataset, evaluation.EvalConfig(
        split="valid", batch_size=config.batch_size, iw_samples=0,
        max_examples=config.valid_examples, seed=config.eval.seed))
    valid_loss = valid["rec"] + valid["kl"]         # the negative ELBO
    learning_rate = float(step_fn.optimizer.learning_rate)
    before = self.schedule.read()
    state = plateau_update(before, epoch, valid_loss,
                           patience=config.lr_patience,
                           warmup_epochs=config.lr_warmup_epochs)
    self.schedule.write(state)
    halved = state.decays > before.decays
    new_rate = halve_learning_rates(step_fn) if halved else learning_rate
    record = dict(
        epoch=epoch, step=step, train_loss=train_loss, valid_loss=valid_loss,
        **{f"valid_{k}": valid[k] for k in ("rec", "kl", "mi", "mi_full", "au",
                                             "infonce_bound")},
        learning_rate=learning_rate, improved=state.best_epoch == epoch,
        lr_halved=halved, lr_decays=state.decays, bad_epochs=state.bad_epochs,
        best_epoch=state.best_epoch, best_valid_loss=state.best_loss)
    if bool(self.aggressive):
      self.aggressive.assign(train_step_lib.stays_aggressive(
          [r["valid_mi"] for r in self.history] + [valid["mi"]]))
      record["aggressive_ends"] = not bool(self.aggressive)
    self.history.append(record)
    with open(self.history_path, "a", encoding="utf-8") as f:
      f.write(json.dumps(record, sort_keys=True) + "\n")
    self.summaries("valid", {k: record[f"valid_{k}"] for k in (
        "loss", "rec", "kl", "mi", "mi_full", "au", "infonce_bound")}, step)
    self.summaries("train", dict(epoch_loss=train_loss,
                                 lr_decays=state.decays), step)
    self.writer.flush()
    if record["improved"]:
      verdict = "best so far"
    elif halved:
      verdict = (f"no improvement: learning rate halved to {new_rate:g} "
                 f"(halving {state.decays} of "
                 f"{config.max_lr_decays or 'no cap'})")
    else:
      verdict = f"best epoch {state.best_epoch} at {state.best_loss:.3f}"
    logging.info("epoch %d (step %d): train loss %.3f  valid loss %.3f (rec "
                 "%.3f, kl %.3f)  mi %.3f  au %d  infonce_bound %.3f  lr %g: "
                 "%s", epoch, step, train_loss, valid_loss, valid["rec"],
                 valid["kl"], valid["mi"], valid["au"],
                 valid["infonce_bound"], learning_rate, verdict)
    if "aggressive_ends" in record:
      logging.info("validation MI %.3f: aggressive training %s", valid["mi"],
                   "ends" if record["aggressive_ends"] else "continues")
    if schedule_stops(state, config.max_lr_decays):
      logging.info("halving %d of max_lr_decays=%d done: training stops",
                   state.decays, config.max_lr_decays)
    if record["improved"]:
      self.best.save(checkpoint_number=step)
    self.last.save(checkpoint_number=step)


def run(config: TrainConfig) -> dict:
  """Trains (resuming if out_dir has checkpoints), evaluates, writes files.

  Every epoch ends with a validation pass over the valid split (at most
  config.valid_examples; no IW-NLL) whose negative ELBO drives the schedule
  (plateau_update: halve the learning rate after lr_patience epochs without
  improvement, stop after the max_lr_decays-th halving) and the best
  checkpoint (out_dir/best); aggressive training's switch reads its MI.

  Returns the test metrics (see evaluation.evaluate) of the best checkpoint,
  or of the last weights when no epoch finished (max_steps within the first
  epoch), plus evaluated_checkpoint ("best" or "last"), best_epoch and
  best_valid_loss (with "best"), epochs, lr_decays, learning_rate,
  train_seconds, steps and seconds_per_step; the same dict is written to
  out_dir/metrics.json.
  """
  config_dict = dataclasses.asdict(config)
  os.makedirs(config.out_dir, exist_ok=True)
  _check_resumable(config.out_dir, config_dict)
  _write_json(os.path.join(config.out_dir, "config.json"), config_dict)
  keras.utils.set_random_seed(config.seed)
  dataset = _load_data(config, config.out_dir)
  step_fn = build_train_step(config, dataset)
  step_fn.build(next(iter(_epoch_batches(dataset, config, 0))))
  training = _Training(config, dataset, step_fn)
  training.resume()
  logging.info("training %s, critic %s (%s side) on %s (%d train examples), "
               "jit_compile=%s, %d parameters", step_fn.vae.name, config.critic,
               config.critic_side, dataset.name,
               dataset.num_examples("train"), step_fn.jit_compile,
               sum(int(np.prod(v.shape)) for v in step_fn.variables))
  started = time.time()
  seconds_per_step = training.train()
  train_seconds = time.time() - started
  steps = int(step_fn.optimizer.iterations)
  training.last.save(checkpoint_number=steps)
  training.writer.close()

  state = training.schedule.read()
  extra = dict(epochs=int(training.epoch), lr_decays=state.decays,
               learning_rate=float(step_fn.optimizer.learning_rate))
  if training.best.latest_checkpoint:
    _restore_model(step_fn, training.best.latest_checkpoint)
    extra.update(evaluated_checkpoint="best", best_epoch=state.best_epoch,
                 best_valid_loss=state.best_loss)
    logging.info("evaluating the best checkpoint (epoch %d, valid loss %.3f)",
                 state.best_epoch, state.best_loss)
  else:
    extra.update(evaluated_checkpoint="last")
    logging.info("no epoch finished, so no validated checkpoint: evaluating "
                 "the last weights (step %d)", steps)
  eval_config = dataclasses.replace(config.eval, batch_size=config.batch_size)
  results = evaluation.evaluate(step_fn.vae, step_fn.critic, dataset,
                                eval_config)
  results.update(extra, train_seconds=train_seconds, steps=steps)
  if seconds_per_step is not None:
    results["seconds_per_step"] = seconds_per_step
  _write_json(os.path.join(config.out_dir, "metrics.json"), results)
  return results
