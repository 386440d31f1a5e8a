"""The training loop: `run(TrainConfig) -> dict`, what runners and tests call.

It trains under the paper's protocol (resuming from out_dir's last
checkpoint), validates at every epoch's end and at the final step
(validation.py), evaluates the test split with the last weights and the best
checkpoint and writes into out_dir: config.json, metrics.json, history.jsonl
(one line per validation), tensorboard/ (summaries.py), checkpoints/ (the
last ones), best/ (the best one) and LOCK while it runs (lock.py).
"""

import dataclasses
import os

from absl import logging
import tensorflow as tf

from tf_cvae import aggressive as aggressive_lib
from tf_cvae import errors
from tf_cvae import train_step as train_step_lib
from tf_cvae.training import build
from tf_cvae.training import checkpointing
from tf_cvae.training import config as config_lib
from tf_cvae.training import determinism
from tf_cvae.training import evaluation
from tf_cvae.training import faults
from tf_cvae.training import history as history_lib
from tf_cvae.training import progress as progress_lib
from tf_cvae.training import schedule
from tf_cvae.training import summaries as summaries_lib
from tf_cvae.training import validation

TrainConfig = config_lib.TrainConfig    # callers build it as train.TrainConfig


def divergence_advice(config: TrainConfig) -> str:
  """What to change after a diverged run: a lower learning rate (and critic
  weight, with a critic), a gradient clip when none is set, a new out_dir."""
  lower = "--learning_rate" + (" or --critic_weight" if config.critic != "none"
                               else "")
  clip = "" if config.clip_norm else ", or set --clip_norm"
  return f"lower {lower}{clip}, and train into a new --out_dir"


class _Training:
  """One call of `run`: the loop and the epoch protocol around a TrainStep.

  The loop state (checkpointing.LoopState) is booked on the device; the host
  reads it only at a step where it logs, saves, validates or stops.
  """

  def __init__(self, config: TrainConfig, dataset,
               step_fn: train_step_lib.TrainStep):
    """`step_fn` must be built: building creates the queue and drops an
    unused critic optimizer, and the checkpoint tracks what exists now."""
    self.config, self.dataset, self.step_fn = config, dataset, step_fn
    self.state = checkpointing.LoopState(step_fn, config.aggressive,
                                         config.max_bad_steps,
                                         config.objective.pretrain_steps)
    step_fn.book_with(self.state.book)    # inside every step, on the device
    self.checkpoints = checkpointing.Checkpoints(step_fn, config.out_dir,
                                                 self.state)
    self.signals = faults.StopSignals()
    join = lambda name: os.path.join(config.out_dir, name)
    self.writer = tf.summary.create_file_writer(join("tensorboard"))
    self.history = history_lib.History(join("history.jsonl"))
    self.steps_per_epoch = build.steps_per_epoch(dataset, config,
                                                 step_fn.num_replicas)
    self.validator = evaluation.Evaluator(step_fn.vae, step_fn.critic)
    self.progress = progress_lib.TrainProgress(
        config.max_steps, config.epochs, self.steps_per_epoch)

  def resume(self) -> None:
    """Loads the last checkpoint, if any, and the history of its epochs."""
    if self.checkpoints.restore_last():
      state = self.state.schedule.read()
      logging.info("resumed from %s at step %d, epoch %d (learning rate %g, "
                   "%d halvings, best epoch %d)",
                   self.checkpoints.last.latest_checkpoint,
                   self.step_fn.iterations, int(self.state.epoch),
                   self.step_fn.learning_rate, state.decays,
                   state.best_epoch)
    self.history.load(last_step=self.step_fn.iterations,
                      epochs_done=int(self.state.epoch))

  def steps_done(self, step: int) -> bool:
    max_steps = self.config.max_steps
    return max_steps is not None and step >= max_steps

  def finished(self) -> bool:
    if self.steps_done(self.step_fn.iterations):
      return True
    if schedule.schedule_stops(self.state.schedule.read(),
                               self.config.max_lr_decays):
      return True
    return (self.config.max_steps is None
            and int(self.state.epoch) >= self.config.epochs)

  def due(self, step: int) -> bool:
    """Whether the loop has something to do after update `step`."""
    config = self.config
    return (step % config.log_every == 0 or step % config.checkpoint_every == 0
            or bool(config.validate_every and step % config.validate_every == 0)
            or self.steps_done(step) or self.signals.requested is not None)

  def check(self) -> tuple[int, bool]:
    """Reads the device's counts: (updates made, whether the last step was
    skipped); raises errors.TrainingError after max_bad_steps in a row."""
    last_skipped = self.state.bad_steps.check(
        self.checkpoints.last.directory, divergence_advice(self.config))
    return self.step_fn.iterations, last_skipped

  def one_step(self, batch, aggressive: bool, inner_batches) -> dict:
    """A train step (aggressive: with its inner loop); the step itself books
    it in the loop state, on the device."""
    if aggressive:
      out, inner = aggressive_lib.aggressive_step(
          self.step_fn, batch, inner_batches, self.config.aggressive_max_inner)
      return dict(out, inner_steps=inner)
    return self.step_fn(batch)

  def train(self) -> float | None:
    """Trains until finished(); returns the steady seconds per step (from
    this process's 21st step on, validation left out)."""
    config, step_fn, state = self.config, self.step_fn, self.state
    inner_batches = build.inner_loop_batches(self.dataset, config,
                                             step_fn.strategy)
    timer = self.progress.timer         # steady from the 21st step on
    while not self.finished():
      step, aggressive = step_fn.iterations, bool(state.aggressive)
      self.progress.start_epoch(int(state.epoch), int(state.step_in_epoch),
                                step)
      for batch in build.rest_of_epoch(self.dataset, config, state,
                                       step_fn.strategy):
        if state.decoder_reset is not None:
          state.decoder_reset.maybe_reset(step)
        out = self.one_step(batch, aggressive, inner_batches)
        timer.tick()
        # Counted as if no step was skipped (never below the true count),
        # so the device is read only where the loop may have work to do.
        step += 1
        self.progress.tick(step, out)
        if not self.due(step):
          continue
        step, skipped = self.check()
        if step % config.log_every == 0:
          self.log_progress(out, step)
        if step % config.checkpoint_every == 0 and not skipped:
          self.checkpoints.save_last(step)
        if self.signals.requested:
          self.interrupt()
        if self.steps_done(step):
          break
        if (config.validate_every and step % config.validate_every == 0
            and int(state.step_in_epoch) < self.steps_per_epoch):
          with timer.pause():
            self.validate_partial()
      else:
        with timer.pause():
          self.end_epoch()
    if not self.validated_now():      # the final step, inside an epoch
      with timer.pause():
        self.validate_partial()
        summaries_lib.write_decoded(self.writer, step_fn.vae, self.dataset,
                                    step_fn.iterations, config.seed)
    self.writer.flush()
    return timer.seconds_per_step()

  def log_progress(self, out: dict, step: int):
    """The progress line and TensorBoard's train scalars of a step."""
    values = summaries_lib.step_scalars(out, self.step_fn, step,
                                        self.state.bad_steps.total)
    self.progress.report(step, values)
    self.summaries("train", values, step)

  def summaries(self, prefix: str, values: dict, step: int) -> None:
    """TensorBoard scalars `prefix/name` at `step` (see write_scalars)."""
    summaries_lib.write_scalars(self.writer, prefix, values, step)

  def interrupt(self) -> None:
    """Saves the last checkpoint and raises errors.Interrupted."""
    step, _ = self.check()
    path = self.checkpoints.save_last(step)
    self.writer.flush()
    raise errors.Interrupted(self.signals.requested, (
        f"stopped by signal {self.signals.requested} at step {step}; saved "
        f"{path}: the same command resumes"))

  def validated_now(self) -> bool:
    """Whether the current step's weights have a history record."""
    records = self.history.records
    return bool(records) and records[-1]["step"] == self.step_fn.iterations

  def validate(self, partial: bool) -> tuple[dict, dict]:
    """A validation pass: (its results, its history record fields)."""
    config, state = self.config, self.state
    step, _ = self.check()
    valid = self.validator(self.dataset, validation.valid_config(config),
                           inside_training=True)
    improved = state.best_validation.update(
        validation.selection_value(valid), step)
    if improved:
      self.checkpoints.save_best(step)
    entry = validation.record(
        valid, epochs_done=int(state.epoch), partial=partial,
        step_in_epoch=int(state.step_in_epoch),
        steps_per_epoch=self.steps_per_epoch,
        epoch_sums=state.epoch_sums.numpy(), step=step,
        learning_rate=self.step_fn.learning_rate,
        best_step=int(state.best_validation.step), improved=improved)
    entry.update(self.progress.validated(valid["eval_seconds"]))
    if self.step_fn.multiplier is not None:   # lambda, the bound's average
      entry.update({k: float(v) for k, v in
                    self.step_fn.multiplier.state().items()})
    self.summaries("valid", {k[len("valid_"):]: v for k, v in entry.items()
                             if k.startswith("valid_")}, step)
    return valid, entry

  def validate_partial(self) -> None:
    """Validation inside an epoch: history and best checkpoint only (the
    learning-rate schedule reads epoch ends alone)."""
    _, entry = self.validate(partial=True)
    self.history.append(entry)
    validation.log_partial(entry)
    self.checkpoints.save_last(entry["step"])

  def end_epoch(self) -> None:
    """Validation, the schedule, the best checkpoint, history and summaries."""
    config, step_fn, state = self.config, self.step_fn, self.state
    self.check()                        # before the epoch counts as done
    state.epoch.assign_add(1)
    epoch, step = int(state.epoch), step_fn.iterations
    _, record = self.validate(partial=False)
    state.restart_epoch()
    learning_rate = step_fn.learning_rate
    record, schedule_state = history_lib.epoch_end(
        record, state.schedule.read(), epoch=epoch,
        patience=config.lr_patience, warmup_epochs=config.lr_warmup_epochs,
        aggressive=bool(state.aggressive), earlier_mis=[
            r["valid_mi"] for r in self.history.records if not r["partial"]])
    state.schedule.write(schedule_state)
    new_rate = (schedule.halve_learning_rates(step_fn)
                if record["lr_halved"] else learning_rate)
    if "aggressive_ends" in record:
      state.aggressive.assign(not record["aggressive_ends"])
    self.history.append(record)
    summaries_lib.write_epoch_end(self.writer, record, step_fn.vae,
                                  self.dataset, config.seed)
    self.writer.flush()
    history_lib.log_epoch(
        dict(record, improved=schedule_state.best_epoch == epoch),
        schedule_state, new_rate, config.max_lr_decays)
    self.checkpoints.save_last(step)


def run(config: TrainConfig, on_start=None) -> dict:
  """Trains (resuming if out_dir has checkpoints), evaluates, writes files.

  `on_start(config)`, if given, is called once the run directory was found
  resumable and the data loaded, before anything else is written there:
  a run refused or failing on its data has not started.

  Each epoch ends with a validation pass over the valid split (at most
  config.valid_examples) whose negative ELBO drives the schedule
  (plateau_update: halve the learning rate after lr_patience epochs without
  improvement, stop after the max_lr_decays-th halving); aggressive
  training's switch reads its MI. Every validation (also every
  validate_every steps and at the final step) may make out_dir/best.

  Returns the test metrics (see evaluation.evaluate) of the checkpoint that
  config.select names ("last": the weights training ended with; "best": the
  lowest validation negative ELBO), with both under test_last and
  test_best, the checkpoint measured (evaluated_checkpoint, _path, _step)
  and the run's state (validation.run_results); the same dict is written
  to out_dir/metrics.json and under test/ in TensorBoard.

  Holds out_dir/LOCK throughout (multi_worker: the chief, build.run_lock);
  lock.RunDirectoryLocked (an InputError) names the process holding it.
  """
  with build.run_lock(config):
    try:
      return _run(config, on_start)
    except (tf.errors.UnavailableError, tf.errors.AbortedError) as error:
      # Outside the step too (a checkpoint's or validation's collectives).
      if config.strategy != "multi_worker":
        raise
      raise errors.lost_worker(error) from None


def _run(config: TrainConfig, on_start) -> dict:
  """run's work, out_dir locked."""
  config_dict = dataclasses.asdict(config)
  config_lib.check_resumable(config.out_dir, config_dict)
  if config.deterministic:
    determinism.enable(config.seed)
  dataset, step_fn = build.training_parts(config)
  if on_start is not None:
    on_start(config)
  config = build.worker_config(config, step_fn.strategy)  # out_dir: its own
  # Written once the data loaded: a bad file leaves no run to clash with.
  config_lib.write_json(os.path.join(config.out_dir, "config.json"), config_dict)
  training = _Training(config, dataset, step_fn)
  training.resume()
  build.log_setup(config, dataset, step_fn)
  training.state.start_clock()
  with training.signals, training.progress:
    seconds_per_step = training.train()
    steps, _ = training.check()
  last_path = training.checkpoints.save_last(steps)
  train_seconds = float(training.state.train_seconds.numpy())

  best_step = int(training.state.best_validation.step)
  best_path = training.checkpoints.best_path(best_step)
  tested = validation.test_both(
      lambda: training.validator(dataset, validation.final_eval_config(config)),
      lambda: checkpointing.restore_model(step_fn, best_path), best_step, steps,
      config.select, dict(best=best_path, last=last_path), config.out_dir)
  results = validation.run_results(
      tested, training.state, step_fn, config, train_seconds=train_seconds,
      steps=steps, seconds_per_step=seconds_per_step)
  config_lib.write_json(os.path.join(config.out_dir, "metrics.json"), results)
  summaries_lib.write_scalars(training.writer, "test", tested, steps)
  training.writer.close()
  return results
