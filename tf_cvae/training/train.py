"""The training loop: `run(TrainConfig) -> dict`, what runners and tests call.

It trains under the paper's protocol (resuming from out_dir's last
checkpoint), validates at every epoch's end and at the final step
(validation.py), evaluates the test split with the last weights and the best
checkpoint and writes into out_dir: config.json, metrics.json, history.jsonl
(one line per validation), tensorboard/, checkpoints/ (the last ones) and
best/ (the best one).
"""

import dataclasses
import os
import time

from absl import logging
import tensorflow as tf

from tf_cvae import errors
from tf_cvae import train_step as train_step_lib
from tf_cvae.training import build
from tf_cvae.training import config as config_lib
from tf_cvae.training import determinism
from tf_cvae.training import evaluation
from tf_cvae.training import faults
from tf_cvae.training import history as history_lib
from tf_cvae.training import schedule
from tf_cvae.training import validation

TrainConfig = config_lib.TrainConfig    # callers build it as train.TrainConfig


class _Training:
  """One call of `run`: the counters, checkpoints and logs around a TrainStep.

  The checkpoint (build.training_checkpoint) also holds the position in the
  data (epoch, step_in_epoch), this epoch's summed step outputs, the best
  validation, the aggressive switch and the learning-rate schedule.
  """

  def __init__(self, config: TrainConfig, dataset,
               step_fn: train_step_lib.TrainStep):
    """`step_fn` must be built: building creates the queue and drops an
    unused critic optimizer, and the checkpoint tracks what exists now."""
    self.config, self.dataset, self.step_fn = config, dataset, step_fn
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    # This epoch's sums of the step outputs validation.EPOCH_MEANS names.
    self.epoch_sums = tf.Variable(tf.zeros([len(validation.EPOCH_MEANS)],
                                           tf.float64), trainable=False)
    self.best_validation = validation.BestVariables()
    self.aggressive = tf.Variable(config.aggressive, trainable=False)
    self.schedule = schedule.PlateauVariables()
    self.bad_steps = faults.BadSteps(config.max_bad_steps)
    self.signals = faults.StopSignals()
    self.checkpoint, self.last, self.best = build.training_checkpoint(
        step_fn, config.out_dir, epoch=self.epoch,
        step_in_epoch=self.step_in_epoch,
        epoch_sums=self.epoch_sums, best_validation=self.best_validation,
        aggressive=self.aggressive, lr_schedule=self.schedule,
        bad_steps=self.bad_steps)
    join = lambda name: os.path.join(config.out_dir, name)
    self.writer = tf.summary.create_file_writer(join("tensorboard"))
    self.history = history_lib.History(join("history.jsonl"))
    self.steps_per_epoch = build.steps_per_epoch(dataset, config,
                                                 step_fn.num_replicas)
    self.validator = evaluation.Evaluator(step_fn.vae, step_fn.critic)

  def resume(self) -> None:
    """Loads the last checkpoint, if any, and the history of its epochs."""
    if build.restore_training(self.checkpoint, self.last):
      state = self.schedule.read()
      logging.info("resumed from %s at step %d, epoch %d (learning rate %g, "
                   "%d halvings, best epoch %d)", self.last.latest_checkpoint,
                   self.step_fn.iterations, int(self.epoch),
                   self.step_fn.learning_rate, state.decays,
                   state.best_epoch)
    self.history.load(last_step=self.step_fn.iterations,
                      epochs_done=int(self.epoch))

  def steps_done(self) -> bool:
    max_steps = self.config.max_steps
    return max_steps is not None and self.step_fn.iterations >= max_steps

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
    inner_batches = build.inner_loop_batches(self.dataset, config,
                                           step_fn.num_replicas)
    window_start, window_steps = time.time(), 0
    # Steady-state step time: from the 21st step of this process on (tracing
    # and compilation happen in the first steps), validation time left out.
    first_step, timed_from, paused = step_fn.iterations, None, 0.0
    while not self.finished():
      batches = build.epoch_batches(self.dataset, config, int(self.epoch),
                                    step_fn.num_replicas)
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
          self.epoch_sums.assign_add(tf.stack([
              tf.cast(out.get(k, 0.0), tf.float64)
              for k in validation.EPOCH_MEANS]))
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
        if (config.validate_every and step % config.validate_every == 0
            and int(self.step_in_epoch) < self.steps_per_epoch):
          pause = self.timed(self.validate_partial)
          window_start += pause
          paused += pause if timed_from else 0.0
      else:
        pause = self.timed(self.end_epoch)
        window_start += pause
        paused += pause if timed_from else 0.0
    if not self.validated_now():      # the final step, inside an epoch
      self.validate_partial()
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

  @staticmethod
  def timed(fn) -> float:
    """Calls fn(); returns the seconds it took."""
    started = time.time()
    fn()
    return time.time() - started

  def validated_now(self) -> bool:
    """Whether the current step's weights have a history record."""
    records = self.history.records
    return bool(records) and records[-1]["step"] == self.step_fn.iterations

  def validate(self, partial: bool) -> tuple[dict, dict]:
    """A validation pass: (its results, its history record fields)."""
    config, step_fn = self.config, self.step_fn
    step = step_fn.iterations
    valid = self.validator(self.dataset, validation.valid_config(config))
    improved = self.best_validation.update(
        validation.selection_value(valid, config.select_by), step)
    if improved:
      self.best.save(checkpoint_number=step)
    entry = validation.record(
        valid, epochs_done=int(self.epoch), partial=partial,
        step_in_epoch=int(self.step_in_epoch),
        steps_per_epoch=self.steps_per_epoch,
        epoch_sums=self.epoch_sums.numpy(), step=step,
        learning_rate=step_fn.learning_rate,
        best_step=int(self.best_validation.step), improved=improved)
    self.summaries("valid", {k[len("valid_"):]: v for k, v in entry.items()
                             if k.startswith("valid_")}, step)
    return valid, entry

  def validate_partial(self) -> None:
    """Validation inside an epoch: history and best checkpoint only (the
    learning-rate schedule reads epoch ends alone)."""
    _, entry = self.validate(partial=True)
    self.history.append(entry)
    validation.log_partial(entry)
    self.last.save(checkpoint_number=entry["step"])

  def end_epoch(self) -> None:
    """Validation, the schedule, the best checkpoint, history and summaries."""
    config, step_fn = self.config, self.step_fn
    self.epoch.assign_add(1)
    epoch, step = int(self.epoch), step_fn.iterations
    valid, record = self.validate(partial=False)
    self.step_in_epoch.assign(0)
    self.epoch_sums.assign(tf.zeros_like(self.epoch_sums))
    learning_rate = step_fn.learning_rate
    before = self.schedule.read()
    state = schedule.plateau_update(before, epoch, record["valid_loss"],
                                    patience=config.lr_patience,
                                    warmup_epochs=config.lr_warmup_epochs)
    self.schedule.write(state)
    halved = state.decays > before.decays
    new_rate = (schedule.halve_learning_rates(step_fn) if halved
                else learning_rate)
    record.update(lr_halved=halved, lr_decays=state.decays,
                  bad_epochs=state.bad_epochs, best_epoch=state.best_epoch,
                  best_valid_loss=state.best_loss)
    if bool(self.aggressive):
      self.aggressive.assign(train_step_lib.stays_aggressive(
          [r["valid_mi"] for r in self.history.records if not r["partial"]]
          + [valid["mi"]]))
      record["aggressive_ends"] = not bool(self.aggressive)
    self.history.append(record)
    self.summaries("train", dict(epoch_loss=record["train_loss"],
                                 lr_decays=state.decays), step)
    self.writer.flush()
    history_lib.log_epoch(dict(record, improved=state.best_epoch == epoch),
                          state, new_rate, config.max_lr_decays)
    self.last.save(checkpoint_number=step)


def run(config: TrainConfig) -> dict:
  """Trains (resuming if out_dir has checkpoints), evaluates, writes files.

  Each epoch ends with a validation pass over the valid split (at most
  config.valid_examples) whose negative ELBO drives the schedule
  (plateau_update: halve the learning rate after lr_patience epochs without
  improvement, stop after the max_lr_decays-th halving); aggressive
  training's switch reads its MI. Every validation (also every
  validate_every steps and at the final step) may make out_dir/best.

  Returns the test metrics (see evaluation.evaluate) of the checkpoint that
  config.select names ("last": the weights training ended with; "best": the
  best validation by config.select_by), with both under test_last and
  test_best, plus evaluated_checkpoint, best_step and best_valid_value (of
  every validation), best_epoch and best_valid_loss (the schedule's: epoch
  ends only), select, select_by, epochs, lr_decays, learning_rate,
  train_seconds, steps, skipped_steps and seconds_per_step; the same dict is
  written to out_dir/metrics.json.
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
  build.log_setup(config, dataset, step_fn)
  started = time.time()
  with training.signals:
    seconds_per_step = training.train()
  train_seconds = time.time() - started
  steps = step_fn.iterations
  training.last.save(checkpoint_number=steps)
  training.writer.close()

  state, best_step = training.schedule.read(), int(
      training.best_validation.step)
  results = validation.test_both(
      lambda: training.validator(dataset, validation.final_eval_config(config)),
      lambda: build.restore_model(step_fn, os.path.join(
          training.best.directory, f"ckpt-{best_step}")),
      best_step, steps, config.select)
  results.update(epochs=int(training.epoch), lr_decays=state.decays,
                 learning_rate=step_fn.learning_rate, select=config.select,
                 select_by=config.select_by,
                 best_valid_value=float(training.best_validation.value),
                 **({} if not state.best_epoch else dict(
                     best_epoch=state.best_epoch,
                     best_valid_loss=state.best_loss)),
                 train_seconds=train_seconds, steps=steps,
                 skipped_steps=int(training.bad_steps.total))
  if seconds_per_step is not None:
    results["seconds_per_step"] = seconds_per_step
  config_lib.write_json(os.path.join(config.out_dir, "metrics.json"), results)
  return results
