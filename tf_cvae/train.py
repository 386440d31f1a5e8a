"""The training loop: `run(TrainConfig) -> dict`, what runners and tests call.

It trains under the paper's protocol (resuming from out_dir's last
checkpoint), evaluates the test split with the best checkpoint and writes
into out_dir: config.json, metrics.json, history.jsonl (one line per epoch),
tensorboard/, checkpoints/ (the last ones) and best/ (the best one).
"""

import dataclasses
import os
import time

from absl import logging
import numpy as np
import tensorflow as tf

from tf_cvae import build
from tf_cvae import config as config_lib
from tf_cvae import determinism
from tf_cvae import errors
from tf_cvae import evaluation
from tf_cvae import faults
from tf_cvae import history as history_lib
from tf_cvae import schedule
from tf_cvae import train_step as train_step_lib

TrainConfig = config_lib.TrainConfig    # callers build it as train.TrainConfig


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
    self.schedule = schedule.PlateauVariables()
    self.bad_steps = faults.BadSteps(config.max_bad_steps)
    self.signals = faults.StopSignals()
    tracked = dict(build.model_parts(step_fn), negatives=step_fn.negatives,
                   encoder_optimizer=step_fn.encoder_optimizer,
                   critic_optimizer=step_fn.critic_optimizer)
    # Keras keeps dropout's random state in seed-generator variables that
    # tf.train.Checkpoint does not reach through the layers: a resumed run
    # would replay the first steps' dropout masks without them.
    rng_states = [v.value for part in build.model_parts(step_fn).values()
                  for v in part.variables if "seed_generator" in v.path]
    self.checkpoint = tf.train.Checkpoint(
        optimizer=step_fn.optimizer, epoch=self.epoch,
        step_in_epoch=self.step_in_epoch, epoch_loss_sum=self.loss_sum,
        aggressive=self.aggressive, lr_schedule=self.schedule,
        bad_steps=self.bad_steps,
        dropout_rng=rng_states,
        **{k: v for k, v in tracked.items() if v is not None})
    self.last = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(out_dir, build.CHECKPOINT_DIRS["last"]),
        max_to_keep=2)
    self.best = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(out_dir, build.CHECKPOINT_DIRS["best"]),
        max_to_keep=1)
    self.writer = tf.summary.create_file_writer(
        os.path.join(out_dir, "tensorboard"))
    self.history = history_lib.History(os.path.join(out_dir, "history.jsonl"))
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
                   self.step_fn.iterations, int(self.epoch),
                   self.step_fn.learning_rate, state.decays,
                   state.best_epoch)
    self.history.load(last_epoch=int(self.epoch))

  def steps_done(self) -> bool:
    max_steps = self.config.max_steps
    return (max_steps is not None
            and self.step_fn.iterations >= max_steps)

  def finished(self) -> bool:
    if self.steps_done():
      return True
    if schedule.schedule_stops(self.schedule.read(), self.config.max_lr_decays):
      return True
    return (self.config.max_steps is None
            and int(self.epoch) >= self.config.epochs)

  def summaries(self, prefix: str, values: dict, step: int) -> None:
    """TensorBoard scalars `prefix/name` at `step` (see write_scalars)."""
    evaluation.write_scalars(self.writer, prefix, values, step)

  def train(self) -> float | None:
    """Trains until finished(); returns the steady seconds per step."""
    config, step_fn = self.config, self.step_fn
    inner_batches = build.inner_loop_batches(self.dataset, config)
    window_start, window_steps = time.time(), 0
    # Steady-state step time: from the 21st step of this process on (tracing
    # and compilation happen in the first steps), validation time left out.
    first_step, timed_from, paused = step_fn.iterations, None, 0.0
    while not self.finished():
      batches = build.epoch_batches(self.dataset, config, int(self.epoch))
      for batch in batches.skip(int(self.step_in_epoch)):
        if bool(self.aggressive):
          out, inner = train_step_lib.aggressive_step(
              step_fn, batch, inner_batches, config.aggressive_max_inner)
          out = dict(out, inner_steps=inner)
        else:
          out = step_fn(batch)
        self.step_in_epoch.assign_add(1)
        nonfinite = int(out.pop("nonfinite"))
        step = step_fn.iterations
        self.bad_steps.record(nonfinite, step + 1, self.best.directory)
        if not nonfinite:
          self.loss_sum.assign_add(tf.cast(out["loss"], tf.float64))
        window_steps += 1
        if step == first_step + 20:
          timed_from = (time.time(), step)
        if step % config.log_every == 0:
          rate = window_steps / max(time.time() - window_start, 1e-9)
          # Epochs count from 1 in the logs, as in history.jsonl.
          logging.info("epoch %d step %d  %s  (%.1f steps/s)",
                       int(self.epoch) + 1, step, "  ".join(
                           f"{k} {float(v):.3f}" for k, v in out.items()), rate)
          self.summaries("train", dict(
              out, learning_rate=step_fn.learning_rate), step)
          window_start, window_steps = time.time(), 0
        if step % config.checkpoint_every == 0 and not nonfinite:
          self.last.save(checkpoint_number=step)
        if self.signals.requested:
          self.interrupt()
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
    steps = step_fn.iterations - timed_from[1] if timed_from else 0
    if steps <= 0:
      return None
    return (time.time() - timed_from[0] - paused) / steps

  def interrupt(self) -> None:
    """Saves the last checkpoint and raises errors.Interrupted."""
    path = self.last.save(checkpoint_number=self.step_fn.iterations)
    self.writer.flush()
    raise errors.Interrupted(self.signals.requested, (
        f"stopped by signal {self.signals.requested} at step "
        f"{self.step_fn.iterations}; saved {path}: the same command resumes"))

  def end_epoch(self) -> None:
    """Validation, the schedule, the best checkpoint, history and summaries."""
    config, step_fn = self.config, self.step_fn
    self.epoch.assign_add(1)
    epoch, step = int(self.epoch), step_fn.iterations
    train_loss = float(self.loss_sum) / max(int(self.step_in_epoch), 1)
    self.step_in_epoch.assign(0)
    self.loss_sum.assign(0.0)
    valid = self.validator(self.dataset, evaluation.EvalConfig(
        split="valid", batch_size=config.batch_size, iw_samples=0,
        max_examples=config.valid_examples, seed=config.eval.seed))
    valid_loss = valid["rec"] + valid["kl"]         # the negative ELBO
    learning_rate = step_fn.learning_rate
    before = self.schedule.read()
    state = schedule.plateau_update(before, epoch, valid_loss,
                                    patience=config.lr_patience,
                                    warmup_epochs=config.lr_warmup_epochs)
    self.schedule.write(state)
    halved = state.decays > before.decays
    new_rate = (schedule.halve_learning_rates(step_fn) if halved
                else learning_rate)
    record = dict(
        epoch=epoch, step=step, train_loss=train_loss, valid_loss=valid_loss,
        **{f"valid_{k}": valid[k] for k in ("rec", "kl", "mi", "mi_full", "au",
                                             "infonce_bound")},
        learning_rate=learning_rate, improved=state.best_epoch == epoch,
        lr_halved=halved, lr_decays=state.decays, bad_epochs=state.bad_epochs,
        best_epoch=state.best_epoch, best_valid_loss=state.best_loss)
    if bool(self.aggressive):
      self.aggressive.assign(train_step_lib.stays_aggressive(
          [r["valid_mi"] for r in self.history.records] + [valid["mi"]]))
      record["aggressive_ends"] = not bool(self.aggressive)
    self.history.append(record)
    self.summaries("valid", {k: record[f"valid_{k}"] for k in (
        "loss", "rec", "kl", "mi", "mi_full", "au", "infonce_bound")}, step)
    self.summaries("train", dict(epoch_loss=train_loss,
                                 lr_decays=state.decays), step)
    self.writer.flush()
    history_lib.log_epoch(record, state, new_rate, config.max_lr_decays)
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
  config_lib.check_resumable(config.out_dir, config_dict)
  if config.deterministic:
    determinism.enable(config.seed)
  dataset, step_fn = build.training_parts(config)
  # Written once the data loaded: a bad file leaves no run to clash with.
  config_lib.write_json(os.path.join(config.out_dir, "config.json"), config_dict)
  training = _Training(config, dataset, step_fn)
  training.resume()
  logging.info("training %s, critic %s (%s side) on %s (%d train examples), "
               "%d replica(s), K = %d, jit_compile=%s, %d parameters",
               step_fn.vae.name, config.critic, config.critic_side,
               dataset.name, dataset.num_examples("train"),
               step_fn.num_replicas, config.batch_size, step_fn.jit_compile,
               sum(int(np.prod(v.shape)) for v in step_fn.variables))
  started = time.time()
  with training.signals:
    seconds_per_step = training.train()
  train_seconds = time.time() - started
  steps = step_fn.iterations
  training.last.save(checkpoint_number=steps)
  training.writer.close()

  state = training.schedule.read()
  extra = dict(epochs=int(training.epoch), lr_decays=state.decays,
               learning_rate=step_fn.learning_rate)
  if training.best.latest_checkpoint:
    build.restore_model(step_fn, training.best.latest_checkpoint)
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
  results.update(extra, train_seconds=train_seconds, steps=steps,
                 skipped_steps=int(training.bad_steps.total))
  if seconds_per_step is not None:
    results["seconds_per_step"] = seconds_per_step
  config_lib.write_json(os.path.join(config.out_dir, "metrics.json"), results)
  return results
