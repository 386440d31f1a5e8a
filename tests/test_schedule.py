"""The learning-rate schedule as a pure function, and its flags."""

import math

from tf_cvae.training import schedule


def _replay(losses, **kwargs) -> list[schedule.PlateauState]:
  state, states = schedule.PlateauState(), []
  for epoch, loss in enumerate(losses, start=1):
    state = schedule.plateau_update(state, epoch, loss, **kwargs)
    states.append(state)
  return states


def test_learning_rate_halves_after_patience_epochs_without_improvement():
  states = _replay([5.0, 4.0, 4.5, 4.2, 3.9, 3.9, 4.0, 4.0, 4.0], patience=2)
  assert [s.decays for s in states] == [0, 0, 0, 1, 1, 1, 2, 2, 3]
  assert [s.bad_epochs for s in states] == [0, 0, 1, 0, 0, 1, 0, 1, 0]
  assert [s.best_epoch for s in states] == [1, 2, 2, 2, 5, 5, 5, 5, 5]
  assert states[-1].best_loss == 3.9      # an equal loss is no improvement


def test_epochs_of_the_warm_up_do_not_count():
  states = _replay([5.0, 6.0, 6.0, 6.0, 6.0, 4.0, 6.0], patience=1,
                   warmup_epochs=3)
  assert [s.decays for s in states] == [0, 0, 0, 1, 2, 2, 3]
  assert states[-1].best_epoch == 6       # improvements count from epoch 1


def test_nan_never_improves_and_patience_zero_never_halves():
  states = _replay([5.0, math.nan, math.nan], patience=1)
  assert [s.decays for s in states] == [0, 1, 2]
  assert states[-1].best_loss == 5.0
  assert _replay([5.0, 6.0, 7.0], patience=0)[-1].decays == 0


def test_training_stops_at_the_last_halving():
  assert not schedule.schedule_stops(schedule.PlateauState(decays=4), 5)
  assert schedule.schedule_stops(schedule.PlateauState(decays=5), 5)
  for never in (None, 0):
    assert not schedule.schedule_stops(schedule.PlateauState(decays=9), never)



def test_schedule_flags_reach_the_train_config():
  from tf_cvae_runners import common

  from absl import flags
  if "lr_patience" not in flags.FLAGS:
    common.define_train_flags()
  flags.FLAGS(["train.py", "--lr_patience=3", "--lr_warmup_epochs=15",
               "--max_lr_decays=0", "--valid_examples=500", "--select=best",
               "--validate_every=50",
               "--valid_from_train=0.1", "--iw_report=10,50"])
  try:
    config = common.train_config_from_flags(out_dir="unused")
  finally:
    flags.FLAGS.unparse_flags()
  assert (config.lr_patience, config.lr_warmup_epochs, config.max_lr_decays,
          config.valid_examples) == (3, 15, None, 500)
  assert (config.select, config.validate_every) == ("best", 50)
  assert (config.data.valid_from_train, config.eval.iw_report) == (
      0.1, (10, 50))
