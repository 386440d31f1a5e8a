"""history.jsonl, one record per validation; the epoch-end record and its
log line."""

import json
import os

from absl import logging

from tf_cvae import aggressive as aggressive_lib
from tf_cvae.training import schedule


class History:
  """The epoch records of a run, mirrored in `path` (JSON lines).

  A record is validation.record's fields plus, from the loop, the wall
  clock: epoch_seconds (seconds of training in the record's epoch so far in
  this process, validations left out; a resumed epoch counts from the
  resume) and validation_seconds (the record's validation pass)."""

  def __init__(self, path: str):
    self.path = path
    self.records = []

  def load(self, last_step: int, epochs_done: int) -> None:
    """Reads the file, keeping the records the checkpoint (at last_step,
    epochs_done epochs finished) had seen.

    Lines past the checkpoint (written before an interruption) go: the
    resumed run validates those steps again. So does an epoch-end record at
    last_step whose epoch the checkpoint had not finished (a kill between
    the record and the epoch-end checkpoint). The file is rewritten
    atomically without them.
    """
    if not os.path.exists(self.path):
      return
    with open(self.path, encoding="utf-8") as f:
      records = [json.loads(line) for line in f if line.strip()]
    seen = lambda r: r["partial"] or r["epoch"] <= epochs_done
    self.records = [r for r in records if r["step"] < last_step
                    or (r["step"] == last_step and seen(r))]
    if len(self.records) < len(records):
      tmp = self.path + ".tmp"
      with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, sort_keys=True) + "\n" for r in self.records)
      os.replace(tmp, self.path)

  def append(self, record: dict) -> None:
    self.records.append(record)
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(json.dumps(record, sort_keys=True) + "\n")


def epoch_end(record: dict, before: schedule.PlateauState, *, epoch: int,
              patience: int, warmup_epochs: int, aggressive: bool,
              earlier_mis: list[float]) -> tuple[dict, schedule.PlateauState]:
  """The epoch-end history record and schedule, from the epoch's validation.

  Args:
    record: validation.record of the epoch-end validation (valid_loss, the
      negative ELBO in nats, drives the schedule; valid_mi the switch).
    before: the schedule's state before this epoch's end.
    epoch: the epoch just finished, counted from 1.
    patience, warmup_epochs: schedule.plateau_update's.
    aggressive: whether this epoch trained aggressively.
    earlier_mis: valid_mi at the earlier epochs' ends, oldest first.

  Returns:
    (record plus lr_halved, lr_decays, bad_epochs, best_epoch,
    best_valid_loss and, when aggressive, aggressive_ends; the new state).
  """
  state = schedule.plateau_update(before, epoch, record["valid_loss"],
                                  patience=patience,
                                  warmup_epochs=warmup_epochs)
  record = dict(record, lr_halved=state.decays > before.decays,
                lr_decays=state.decays, bad_epochs=state.bad_epochs,
                best_epoch=state.best_epoch, best_valid_loss=state.best_loss)
  if aggressive:
    record["aggressive_ends"] = not aggressive_lib.stays_aggressive(
        list(earlier_mis) + [record["valid_mi"]])
  return record, state


def log_epoch(record: dict, state: schedule.PlateauState, new_rate: float,
              max_lr_decays: int | None) -> None:
  """The end-of-epoch progress line(s) of a history record."""
  if record["improved"]:
    verdict = "best so far"
  elif record["lr_halved"]:
    verdict = (f"no improvement: learning rate halved to {new_rate:g} "
               f"(halving {state.decays} of {max_lr_decays or 'no cap'})")
  else:
    verdict = f"best epoch {state.best_epoch} at {state.best_loss:.3f}"
  logging.info("epoch %d (step %d): train loss %.3f  valid loss %.3f (rec "
               "%.3f, kl %.3f)  mi %.3f  au %d  infonce_bound %.3f  lr %g: "
               "%s", record["epoch"], record["step"], record["train_loss"],
               record["valid_loss"], record["valid_rec"], record["valid_kl"],
               record["valid_mi"], record["valid_au"],
               record["valid_infonce_bound"], record["learning_rate"], verdict)
  if "aggressive_ends" in record:
    logging.info("validation MI %.3f: aggressive training %s",
                 record["valid_mi"],
                 "ends" if record["aggressive_ends"] else "continues")
  if schedule.schedule_stops(state, max_lr_decays):
    logging.info("halving %d of max_lr_decays=%d done: training stops",
                 state.decays, max_lr_decays)
