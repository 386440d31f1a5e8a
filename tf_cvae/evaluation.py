"""Evaluation of a trained VAE on a split: the SPEC's metrics in one pass."""

import dataclasses
import math
import time

from absl import logging
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from tf_cvae import errors
from tf_cvae import critics
from tf_cvae import metrics
from tf_cvae import objective
from tf_cvae.data import vocabulary as vocab_lib


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """How to evaluate; batch_size is K of the MI and InfoNCE estimates."""
  split: str = "test"
  batch_size: int = 32
  iw_samples: int = 500          # 0 skips the IW-NLL
  iw_chunk_size: int = 50        # samples per decoder pass (bounds memory)
  max_examples: int | None = None
  mi_chunk_size: int = 512       # blocks of the whole-split MI (bounds memory)
  seed: int = 0


def evaluate(vae, critic, dataset, config: EvalConfig) -> dict:
  """Metrics of `vae` on `config.split` of `dataset` (see Evaluator)."""
  return Evaluator(vae, critic)(dataset, config)


class Evaluator:
  """evaluate() that keeps its compiled functions between calls.

  train.run validates every epoch with one Evaluator, so the encoder pass is
  traced once per batch shape, not once per epoch.
  """

  def __init__(self, vae, critic):
    self.vae = vae
    self.critic = critic if critic is not None else critics.SelfCritic()
    self._nll_estimators = {}     # iw_chunk_size -> ImportanceWeightedNLL
    self._encode_and_score = tf.function(self._encode_and_score_eager,
                                         reduce_retracing=True)

  def _encode_and_score_eager(self, batch, seed):
    terms = objective.forward(self.vae, self.critic, batch, seed,
                              training=False)
    terms["mi"] = metrics.mutual_information(terms["mu"], terms["logvar"],
                                             terms["z"])
    return terms

  def __call__(self, dataset, config: EvalConfig) -> dict:
    """Metrics of the VAE on `config.split` of `dataset`.

    Returns a dict of floats (nats unless noted): nll (IW, per example), elbo,
    rec (-log p(x|z), one sample), kl, mi (He et al.: per batch of
    config.batch_size, averaged weighted by batch size; capped at log K),
    mi_full (q(z) over the whole split; capped at log N), au (count), and
    infonce_bound (c + log K per batch, averaged; the run's critic, or the
    self critic for a plain VAE); text adds ppl and tokens; num_examples;
    eval_seconds. With config.iw_samples == 0 there is no nll (nor ppl).

    Memory is bounded whatever iw_samples and the split's size N: the IW-NLL
    holds one chunk (iw_chunk_size x batch_size decoder inputs) at a time;
    the split's mu, logvar and z ([N, latent] each) are kept for mi_full and
    au, and mi_full's q(z) is computed in mi_chunk_size blocks, never [N, N].
    """
    started = time.time()
    vae = self.vae
    if config.iw_samples and config.iw_chunk_size not in self._nll_estimators:
      self._nll_estimators[config.iw_chunk_size] = (
          metrics.ImportanceWeightedNLL(vae, config.iw_chunk_size))
    nll_estimator = self._nll_estimators.get(config.iw_chunk_size)

    sums = {"nll": 0.0, "rec": 0.0, "kl": 0.0, "mi": 0.0, "infonce_bound": 0.0}
    mus, logvars, zs = [], [], []
    count, tokens = 0, 0
    batches = dataset.batches(config.split, config.batch_size)
    for index, batch in enumerate(batches):
      if config.max_examples is not None:
        if count >= config.max_examples:
          break
        batch = {k: v[:config.max_examples - count] for k, v in batch.items()}
      size = int(tf.shape(next(iter(batch.values())))[0])
      terms = self._encode_and_score(batch, tf.constant([config.seed, index]))
      sums["rec"] -= float(tf.reduce_sum(terms["log_likelihood"]))
      sums["kl"] += float(tf.reduce_sum(terms["kl"]))
      sums["mi"] += float(terms["mi"]) * size
      sums["infonce_bound"] += float(terms["infonce_bound"]) * size
      if config.iw_samples:
        sums["nll"] += float(tf.reduce_sum(nll_estimator(
            batch, config.iw_samples, seed=config.seed * 100_003 + index)))
      if "tokens" in batch:
        target = vae.target(batch)
        tokens += int(tf.reduce_sum(
            tf.cast(target != vocab_lib.PAD_ID, tf.int32)))
      mus.append(terms["mu"])
      logvars.append(terms["logvar"])
      zs.append(terms["z"])
      count += size
    if count == 0:
      raise errors.InputError(f"split {config.split!r} of {dataset.name!r} is empty")
    results = {k: v / count for k, v in sums.items()}
    if not config.iw_samples:
      del results["nll"]
    results["elbo"] = -(results["rec"] + results["kl"])
    mu, logvar, z = (tf.concat(x, axis=0) for x in (mus, logvars, zs))
    results["mi_full"] = float(metrics.mutual_information(
        mu, logvar, z, chunk_size=config.mi_chunk_size))
    results["au"], _ = metrics.active_units(mu)
    if tokens and config.iw_samples:
      results["ppl"] = metrics.perplexity(results["nll"] * count, tokens)
      results["tokens"] = tokens
    results["num_examples"] = count
    results["log_k"] = math.log(config.batch_size)
    results["eval_seconds"] = time.time() - started
    logging.info("evaluated %d examples of %s/%s in %.1f s", count,
                 dataset.name, config.split, results["eval_seconds"])
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v)
            for k, v in results.items()}


# How TensorBoard's scalars plugin marks its summaries.
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
    data_class=summary_pb2.DATA_CLASS_SCALAR)


def write_scalars(writer, prefix: str, values: dict, step: int) -> None:
  """TensorBoard scalars `prefix/name` at `step` into a summary writer.

  Written with tf.summary.write and the scalars plugin's metadata, which is
  what tf.summary.scalar writes, minus its need for the tensorboard package
  (not a dependency of TensorFlow 2.21 nor of ours).
  """
  with writer.as_default(step=step):
    for name, value in values.items():
      tf.summary.write(f"{prefix}/{name}", tf.cast(value, tf.float32),
                       metadata=_SCALAR_METADATA)
