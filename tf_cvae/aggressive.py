"""He et al.'s aggressive training (2019), a baseline: encoder-only updates
until the encoder catches up with the decoder, then one decoder update; on
until the validation MI stops rising. Drives a train_step.TrainStep.
"""

import tensorflow as tf

WINDOW = 10   # encoder updates between two checks of the inner loop's rule


def inner_loop_converged(losses: list[float], window: int = WINDOW) -> bool:
  """He et al.'s stop rule for the aggressive inner loop.

  After every `window` encoder updates, the summed loss of the last window
  is compared with the window before it: stop once it no longer decreases.
  """
  if len(losses) < 2 * window or len(losses) % window:
    return False
  return sum(losses[-window:]) >= sum(losses[-2 * window:-window])


def stays_aggressive(mi_history: list[float]) -> bool:
  """He et al.'s switch: aggressive training ends once the validation MI
  measured at an epoch's end is no higher than at the previous epoch's end."""
  return len(mi_history) < 2 or mi_history[-1] > mi_history[-2]


def aggressive_step(train_step, batch: dict, inner_batches,
                    max_inner_steps: int = 100) -> tuple[dict, int]:
  """One aggressive step (He et al. 2019): encoder-only updates on fresh
  batches (the iterator `inner_batches`) until `inner_loop_converged`, then
  a decoder-only update on `batch`. Returns (the decoder step's outputs,
  the number of inner encoder updates).

  The losses reach the host a window at a time, where the rule reads them
  (one read per WINDOW updates instead of one per update)."""
  losses, pending = [], []
  for _ in range(max_inner_steps):
    pending.append(train_step(next(inner_batches), "encoder")["loss"])
    if len(pending) == WINDOW:
      losses += tf.stack(pending).numpy().tolist()
      pending = []
      if inner_loop_converged(losses):
        break
  return train_step(batch, "decoder"), len(losses) + len(pending)
