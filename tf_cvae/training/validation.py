"""Validation during training: what is measured, what is kept, what is logged.

A run validates at every epoch's end (which drives the learning-rate schedule,
as in He et al.'s protocol), every `validate_every` steps if set, and at its
final step even when that falls inside an epoch, so the weights a run ends
with are always validated. Every validation may become the best checkpoint
(by validation negative ELBO, the paper's rule, or by validation IW-NLL).
Validation reads the valid split only, never the test split.
"""

import dataclasses
import math
import os

from absl import logging
import tensorflow as tf

from tf_cvae.training import evaluation

SELECT = ("best", "last")        # whose test metrics the top-level keys hold
SELECT_BY = ("elbo", "nll")      # what makes a checkpoint the best
# Step outputs averaged over an epoch into history.jsonl as train_<name>.
EPOCH_MEANS = ("loss", "rec", "kl", "mi", "infonce_bound", "elbo_grad_norm",
               "critic_grad_norm")


class BestVariables(tf.Module):
  """The best validation so far: its selection value and step (checkpointed)."""

  def __init__(self):
    super().__init__(name="best_validation")
    self.value = tf.Variable(math.inf, dtype=tf.float64, trainable=False)
    self.step = tf.Variable(-1, dtype=tf.int64, trainable=False)

  def update(self, value: float, step: int) -> bool:
    """Records (value, step) if value is lower than the best; True if so."""
    if not value < float(self.value):
      return False
    self.value.assign(value)
    self.step.assign(step)
    return True


def valid_config(config) -> evaluation.EvalConfig:
  """The EvalConfig of a validation pass of TrainConfig `config` (no IW-NLL:
  the best checkpoint is the lowest validation negative ELBO)."""
  return evaluation.EvalConfig(
      split="valid", batch_size=config.batch_size,
      iw_samples=0,
      iw_chunk_size=config.eval.iw_chunk_size, iw_report=(),
      max_examples=config.valid_examples, seed=eval_seed(config), probe=False)


def eval_seed(config) -> int:
  """The evaluation's sample seed: config.eval.seed, else the run's seed
  (so collapsed runs of different seeds do not share their noise)."""
  return config.eval.seed if config.eval.seed is not None else config.seed


def selection_value(valid: dict) -> float:
  """The number a best checkpoint minimizes: the valid negative ELBO, nats."""
  return valid["rec"] + valid["kl"]


def record(valid: dict, *, epochs_done: int, partial: bool,
           step_in_epoch: int, steps_per_epoch: int, epoch_sums, step: int,
           learning_rate: float, best_step: int, improved: bool) -> dict:
  """One history.jsonl line: a validation's results and the training state.

  Its `epoch` counts from 1 (the epoch just finished, or the one in progress
  when `partial`), `epoch_fraction` the epochs done, fractions included;
  train_<name> are the means of this epoch's steps so far (epoch_sums, one
  per EPOCH_MEANS name, over step_in_epoch steps).
  """
  done = max(step_in_epoch, 1)
  train_means = {k: float(v) / done for k, v in zip(EPOCH_MEANS, epoch_sums)}
  epoch = epochs_done + (1 if partial else 0)
  epoch_fraction = epochs_done + (done / steps_per_epoch if partial else 0)
  out = dict(epoch=epoch, epoch_fraction=epoch_fraction, step=step,
             partial=partial, valid_loss=selection_value(valid),
             learning_rate=learning_rate, improved=improved,
             best_step=best_step)
  out.update({f"valid_{k}": v for k, v in valid.items()
              if k in ("rec", "kl", "mi", "mi_full", "au", "infonce_bound",
                       "nll", "z_reliance")})
  out.update({f"train_{k}": v for k, v in train_means.items()})
  return out


def log_partial(entry: dict) -> None:
  """The log line of a validation inside an epoch."""
  logging.info("validation at step %d (epoch %.2f): valid loss %.3f  mi %.3f "
               " au %d%s", entry["step"], entry["epoch_fraction"],
               entry["valid_loss"], entry["valid_mi"], entry["valid_au"],
               "  (best so far)" if entry["improved"] else "")


def test_both(evaluate, restore_best, best_step: int, last_step: int,
              select: str, checkpoint_paths: dict, run_dir: str) -> dict:
  """Test metrics of the last weights and of the best checkpoint.

  `evaluate()` measures the weights in memory (the last ones first);
  `restore_best()` loads the best checkpoint; checkpoint_paths maps "best"
  and "last" to their checkpoints' paths. Returns the selected checkpoint's
  metrics at the top level plus test_last, test_best (equal when the best
  is the last), evaluated_checkpoint ("best" or "last"),
  evaluated_checkpoint_path (relative to run_dir, e.g. "best/ckpt-120") and
  evaluated_checkpoint_step (the checkpoint the top-level metrics measured)
  and best_step.
  """
  logging.info("testing the last weights (step %d)", last_step)
  test_last = evaluate()
  if best_step < 0 or best_step == last_step:
    test_best = test_last
  else:
    restore_best()
    logging.info("testing the best checkpoint (step %d)", best_step)
    test_best = evaluate()
  which = "best" if select == "best" and best_step >= 0 else "last"
  return dict(test_best if which == "best" else test_last,
              test_last=test_last, test_best=test_best,
              evaluated_checkpoint=which,
              evaluated_checkpoint_path=os.path.relpath(
                  checkpoint_paths[which], run_dir),
              evaluated_checkpoint_step=(best_step if which == "best"
                                         else last_step),
              best_step=best_step)


def run_results(tested: dict, loop, step_fn, config, *, train_seconds: float,
                steps: int, seconds_per_step: float | None) -> dict:
  """What metrics.json holds: `tested` (test_both's) plus the run's state at
  its end (`loop`: checkpointing.LoopState): epochs, lr_decays,
  learning_rate, select, best_valid_value (of every validation),
  best_epoch and best_valid_loss (the schedule's: epoch ends only),
  skipped_steps and, with a Lagrange multiplier, critic_lambda and
  critic_bound_average; and train_seconds (wall seconds of every resumed
  segment, each up to its last save; docs/faults.md), steps,
  seconds_per_step (when timed)."""
  schedule_state = loop.schedule.read()
  results = dict(tested, epochs=int(loop.epoch),
                 lr_decays=schedule_state.decays,
                 learning_rate=step_fn.learning_rate, select=config.select,
                 best_valid_value=float(loop.best_validation.value),
                 train_seconds=train_seconds, steps=steps,
                 skipped_steps=int(loop.bad_steps.total))
  if schedule_state.best_epoch:
    results.update(best_epoch=schedule_state.best_epoch,
                   best_valid_loss=schedule_state.best_loss)
  if step_fn.multiplier is not None:        # lambda as training left it
    results.update({k: float(v) for k, v in
                    step_fn.multiplier.state().items()})
  if seconds_per_step is not None:
    results["seconds_per_step"] = seconds_per_step
  return results


def final_eval_config(config) -> evaluation.EvalConfig:
  """The test EvalConfig of TrainConfig `config` (K = its batch size)."""
  return dataclasses.replace(config.eval, batch_size=config.batch_size,
                             seed=eval_seed(config))
