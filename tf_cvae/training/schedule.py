"""The learning-rate schedule of the training protocol (He et al. 2019's,
which the paper follows): halve the rate after `patience` epochs without
validation improvement, stop at the last allowed halving. Pure functions over PlateauState, and its checkpointed variables."""

import dataclasses
import math

from absl import logging
import tensorflow as tf

from tf_cvae import train_step as train_step_lib


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
  slowly at the model's pace (docs/methods.md).
  """
  for optimizer in (step_fn.optimizer, step_fn.encoder_optimizer):
    if optimizer is not None:
      optimizer.learning_rate.assign(optimizer.learning_rate * 0.5)
  return step_fn.learning_rate


class DecoderReset(tf.Module):
  """Encoder pre-training's switch (Li et al. 2019): once `at` optimizer
  steps are done (beta was 0 until then), the decoder's weights return to
  their initial draw, which knows nothing pre-training learnt, and the ELBO
  trains from there. The initial weights and `done` are checkpointed; the
  optimizer's state for the decoder is kept (SGD, the text protocol's, has
  none; Adam's moments adapt within a few hundred steps)."""

  def __init__(self, step_fn: train_step_lib.TrainStep, at: int):
    super().__init__(name="decoder_reset")
    self.at, self._step_fn = at, step_fn
    self._decoder = step_fn.vae.decoder.trainable_variables
    with step_fn.strategy.scope():
      self.initial = [tf.Variable(tf.convert_to_tensor(v), trainable=False,
                                  name="initial") for v in self._decoder]
      self.done = tf.Variable(False, trainable=False, name="done")
    self._done = None        # the host's copy of `done`, read once
  def maybe_reset(self, steps_at_least: int) -> bool:
    """Resets the decoder if `at` steps are done and it has not been reset
    (the loop's count, never below the true one, spares reading the device
    before the switch); True if it reset now."""
    if steps_at_least < self.at or self._done:
      return False
    if self._done is None:           # after a restore: read the device once
      self._done = bool(self.done)
      if self._done:
        return False
    if self._step_fn.iterations < self.at:
      return False
    for variable, initial in zip(self._decoder, self.initial):
      variable.assign(initial)
    self.done.assign(True)
    self._done = True
    logging.info("step %d: encoder pre-training done; the decoder starts "
                 "again from its initial weights", self._step_fn.iterations)
    return True
