"""What a run writes into out_dir/tensorboard (`tensorboard --logdir runs`).

train/ the log steps' outputs (loss, rec, kl, mi, the critics' bounds, the
gradient norms before clipping), the learning rate, beta (the KL weight the
step used, annealing applied), with a critic term the term itself
(critic_term, nats), lambda (critic_lambda, warm-up applied) and
critic_constraint_active (1 while the target pulls: the hinge's bound below
its target, or the multiplier's average below it), the skipped (non-finite)
steps so far; at epoch ends epoch_loss and lr_decays. valid/ every
validation's metrics. time/ each epoch's training and validation seconds.
decoded/ at each epoch's end and at the last step: 8 validation inputs over
their reconstructions and 8 prior samples (images: a picture; text: a
table). test/ the test metrics of the checkpoint metrics.json reports.

Everything is written with tf.summary.write and the TensorBoard plugins'
metadata, which is what tf.summary.scalar / image / text write, minus their
need for the tensorboard package (not a dependency of TensorFlow 2.21 nor of
ours; install it to view the logs).
"""

import math
import numbers

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from tf_cvae import objective
from tf_cvae.trained import sampling


def _metadata(plugin: str, data_class) -> summary_pb2.SummaryMetadata:
  return summary_pb2.SummaryMetadata(
      plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin),
      data_class=data_class)


_SCALAR = _metadata("scalars", summary_pb2.DATA_CLASS_SCALAR)
_IMAGE = _metadata("images", summary_pb2.DATA_CLASS_BLOB_SEQUENCE)
_TEXT = _metadata("text", summary_pb2.DATA_CLASS_TENSOR)

DECODED_COUNT = 8        # inputs reconstructed and prior samples drawn


def write_scalars(writer, prefix: str, values: dict, step: int) -> None:
  """TensorBoard scalars `prefix/name` at `step` (numbers; others skipped)."""
  with writer.as_default(step=step):
    for name, value in values.items():
      if isinstance(value, (numbers.Number, np.generic, np.ndarray,
                            tf.Tensor, tf.Variable)):
        tf.summary.write(f"{prefix}/{name}", tf.cast(value, tf.float32),
                         metadata=_SCALAR)


def write_image(writer, tag: str, picture: np.ndarray, step: int) -> None:
  """One picture, uint8 [height, width, channels], as a PNG image summary."""
  height, width = picture.shape[:2]
  png = tf.io.encode_png(picture)
  with writer.as_default(step=step):
    tf.summary.write(tag, tf.stack([tf.as_string(width), tf.as_string(height),
                                    png]), metadata=_IMAGE)


def write_text(writer, tag: str, rows: list, step: int) -> None:
  """A text summary: a list of strings, or of rows of strings (a table)."""
  with writer.as_default(step=step):
    tf.summary.write(tag, tf.constant(rows, tf.string), metadata=_TEXT)


def step_scalars(outputs: dict, step_fn, step: int, skipped_steps) -> dict:
  """The train/ scalars of update `step` (counted from 1) from the outputs
  of TrainStep `step_fn`: all but the nonfinite mask, plus learning_rate,
  skipped_steps (so far), beta and, with a critic term, critic_lambda and
  critic_constraint_active (see the module's docstring); scalar tensors or
  floats."""
  objective_config = step_fn.objective_config
  values = {k: v for k, v in outputs.items() if k != "nonfinite"}
  values.update(beta=objective.kl_weight(objective_config, step - 1),
                skipped_steps=skipped_steps,
                learning_rate=step_fn.learning_rate)
  if not objective.has_critic_term(objective_config, step_fn.critic,
                                   step_fn.model_critic):
    values.pop("critic_term", None)
    values.pop("critic_lambda", None)
    values.pop("critic_lambda_effective", None)
    return values
  if step_fn.multiplier is not None:   # its active flag is in the outputs
    return values
  target = objective_config.critic_target
  bound = outputs.get("infonce_bound", outputs.get("model_infonce_bound"))
  if target is not None and not math.isinf(target) and bound is not None:
    values["critic_constraint_active"] = float(float(bound) < target)
  return values


def write_epoch_end(writer, record: dict, vae, dataset, seed: int) -> None:
  """An epoch end's summaries at its step, from its history.jsonl record:
  train/epoch_loss and lr_decays, time/ and decoded/ (write_decoded)."""
  step = record["step"]
  write_scalars(writer, "train", dict(epoch_loss=record["train_loss"],
                                      lr_decays=record["lr_decays"]), step)
  write_scalars(writer, "time", {k: record[k] for k in (
      "epoch_seconds", "validation_seconds")}, step)
  write_decoded(writer, vae, dataset, step, seed)


def _valid_examples(vae, dataset, count: int):
  """(batch for vae.encode, raw inputs) of the first `count` examples of
  the valid split: images [N, 28, 28, 1] or sentences."""
  rows = np.arange(min(count, dataset.num_examples("valid")))
  if dataset.kind == "image":
    batch = next(iter(dataset.batches("valid", len(rows), examples=rows)))
    return batch, batch["image"].numpy()
  raw = [" ".join(dataset.vocab.decode(dataset.splits["valid"][i]))
         for i in rows]
  return sampling.to_batch(vae, raw, dataset.vocab), raw


def write_decoded(writer, vae, dataset, step: int, seed: int) -> None:
  """decoded/reconstructions and decoded/samples at `step`: DECODED_COUNT
  valid inputs with their greedy reconstructions from the posterior means,
  and greedy decodings of DECODED_COUNT prior draws (the same z every
  time, from `seed`)."""
  vocab = getattr(dataset, "vocab", None)
  batch, raw = _valid_examples(vae, dataset, DECODED_COUNT)
  _, reconstructions = sampling.reconstruct(vae, batch, vocab=vocab)
  samples = sampling.decode(vae, sampling.prior_latents(
      vae.latent_dim, DECODED_COUNT, seed), vocab=vocab)
  if isinstance(samples, list):
    write_text(writer, "decoded/reconstructions",
               [list(pair) for pair in zip(raw, reconstructions)], step)
    write_text(writer, "decoded/samples", samples, step)
    return
  write_image(writer, "decoded/reconstructions", sampling.image_grid(
      sampling.paired_rows(raw, reconstructions, DECODED_COUNT),
      DECODED_COUNT), step)
  write_image(writer, "decoded/samples", sampling.image_grid(
      samples, DECODED_COUNT), step)
