"""Evaluation of a trained VAE on a split: every metric (IW-NLL, KL, MI, AU,
the InfoNCE bound and the controls) in one pass."""

import collections
import dataclasses
import math
import time

from absl import logging
import numpy as np
import tensorflow as tf

from tf_cvae import critics
from tf_cvae import errors
from tf_cvae import metrics
from tf_cvae import objective
from tf_cvae.data import vocabulary as vocab_lib
from tf_cvae.training import progress as progress_lib


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """How to evaluate; batch_size is K of the MI and InfoNCE estimates."""
  split: str = "test"
  batch_size: int = 32
  iw_samples: int = 500          # 0 skips the IW-NLL
  iw_chunk_size: int = 50        # samples per decoder pass (bounds memory)
  iw_report: tuple = (20, 100)   # also report the IW-NLL at these counts
  max_examples: int | None = None  # a fixed random subset; None: the split
  mi_chunk_size: int = 512       # blocks of the whole-split MI (bounds memory)
  seed: int | None = None        # samples' seed; None: 0 (train.run: its seed)
  probe: bool = True             # the known-latent probe (encodes train)

  def __post_init__(self):       # JSON gives a list back
    object.__setattr__(self, "iw_report", tuple(self.iw_report))


# The subset that max_examples picks is the same for every run and method.
_SUBSET_SEED = 20_220_722


def example_subset(num_examples: int, max_examples: int | None):
  """Row indices max_examples picks from a split of num_examples (a fixed
  seeded draw, sorted), or None for the whole split."""
  if max_examples is None or max_examples >= num_examples:
    return None
  rng = np.random.default_rng(_SUBSET_SEED)
  return np.sort(rng.choice(num_examples, max_examples, replace=False))


def evaluate(vae, critic, dataset, config: EvalConfig,
             progress_seconds: float = 30.0) -> dict:
  """Metrics of `vae` on `config.split` of `dataset` (see Evaluator)."""
  return Evaluator(vae, critic, progress_seconds)(dataset, config)


class Evaluator:
  """evaluate() that keeps its compiled functions between calls.

  train.run validates with one Evaluator, so the encoder pass is traced once
  per batch shape, not once per validation. A pass logs its progress (done,
  rate, ETA) every `progress_seconds` (0: every batch or block), so a long
  test evaluation is never silent.
  """

  def __init__(self, vae, critic, progress_seconds: float = 30.0):
    self.vae, self.progress_seconds = vae, progress_seconds
    self.critic = critic if critic is not None else critics.SelfCritic()
    self._nll_estimators = {}     # iw_chunk_size -> ImportanceWeightedNLL
    self._encode_and_score = tf.function(self._encode_and_score_eager,
                                         reduce_retracing=True)
    self._encode = tf.function(lambda batch: vae.encode(batch, training=False),
                               reduce_retracing=True)

  def _encode_and_score_eager(self, batch, seed):
    terms = objective.forward(self.vae, self.critic, batch, seed,
                              training=False)
    terms["mi"] = metrics.mutual_information(terms["mu"], terms["logvar"],
                                             terms["z"])
    # Each row's z given to its neighbour in the batch: what p(x|z) loses
    # when z comes from another x (of the same length, in exact batches).
    terms["log_likelihood_shuffled"] = self.vae.log_likelihood(
        batch, tf.roll(terms["z"], 1, axis=0), training=False)
    return terms

  def __call__(self, dataset, config: EvalConfig) -> dict:
    """Metrics of the VAE on `config.split` of `dataset`.

    Returns a dict of floats (nats unless noted):
      nll: IW estimate per example from iw_samples samples, and nll_iw<S> for
        the counts of iw_report below it (prefixes of the same draws);
      elbo, rec (-log p(x|z), one sample), kl;
      mi: He et al.'s estimate per batch of config.batch_size, averaged
        weighted by batch size (capped at log K); mi_full: q(z) over the
        whole split (capped at log N); mi_noise_std, mi_noise_hi: what both
        read for a posterior that ignores x (metrics.mi_noise_floor; an
        estimate below mi_noise_hi shows no information);
      au (count); infonce_bound (c + log K per batch, averaged; the run's
        critic, or the self critic for a plain VAE);
      z_reliance: rec with each z given to another row of its batch minus
        rec (how much the decoder uses z; batches of one left out);
      text: ppl and tokens; length_only_mi, length_only_mi_full: what a code
        holding only the sentence length reads (metrics.length_only_mi);
      data generated from a known latent: probe_r2 (metrics.linear_probe_r2
        of the posterior means, fit on train, scored on this split) and
        probe_r2_z (the same of one sample z ~ q(z|x) each: what the code
        carries through its noise; means that vary far less than the
        posterior's spread read high in probe_r2 but not here);
      num_examples, log_k, eval_seconds.
    With config.iw_samples == 0 there is no nll (nor ppl).

    Memory is bounded whatever iw_samples and the split's size N: the IW-NLL
    holds one chunk (iw_chunk_size x batch_size decoder inputs) at a time;
    the split's mu, logvar and z ([N, latent] each) are kept for mi_full and
    au, and mi_full's q(z) is computed in mi_chunk_size blocks, never [N, N].
    """
    started = time.time()
    vae, seed = self.vae, config.seed or 0
    if config.iw_samples and config.iw_chunk_size not in self._nll_estimators:
      self._nll_estimators[config.iw_chunk_size] = (
          metrics.ImportanceWeightedNLL(vae, config.iw_chunk_size))
    nll_estimator = self._nll_estimators.get(config.iw_chunk_size)
    subset = example_subset(dataset.num_examples(config.split),
                            config.max_examples)
    total = (len(subset) if subset is not None
             else dataset.num_examples(config.split))
    what = f"evaluating {dataset.name}/{config.split}"
    progress = progress_lib.PassProgress(what, total, "example",
                                         self.progress_seconds)

    sums = collections.defaultdict(float)
    rows, mus, logvars, zs, lengths = [], [], [], [], []
    count, tokens, shuffled_count = 0, 0, 0
    batches = dataset.batches(config.split, config.batch_size,
                              with_index=True, examples=subset)
    for index, batch in enumerate(batches):
      rows.append(batch.pop("index").numpy())
      batch = _trim_padding(batch)
      size = len(rows[-1])
      terms = self._encode_and_score(batch, tf.constant([seed, index]))
      sums["rec"] -= float(tf.reduce_sum(terms["log_likelihood"]))
      sums["kl"] += float(tf.reduce_sum(terms["kl"]))
      sums["mi"] += float(terms["mi"]) * size
      sums["infonce_bound"] += float(terms["infonce_bound"]) * size
      if size > 1:
        sums["z_reliance"] += float(tf.reduce_sum(
            terms["log_likelihood"] - terms["log_likelihood_shuffled"]))
        shuffled_count += size
      if config.iw_samples:
        estimates = nll_estimator(batch, config.iw_samples,
                                  seed=seed * 100_003 + index,
                                  report_at=config.iw_report
                                  or (config.iw_samples,))
        for samples, nll in estimates.items():
          key = "nll" if samples == config.iw_samples else f"nll_iw{samples}"
          sums[key] += float(tf.reduce_sum(nll))
      if "tokens" in batch:
        valid = tf.cast(vae.target(batch) != vocab_lib.PAD_ID, tf.int32)
        tokens += int(tf.reduce_sum(valid))
        lengths.append(tf.reduce_sum(valid, axis=1).numpy())
      mus.append(terms["mu"])
      logvars.append(terms["logvar"])
      zs.append(terms["z"])
      count += size
      progress.update(count, f"IW-NLL of {config.iw_samples} samples"
                      if config.iw_samples else "")
    if count == 0:
      raise errors.InputError(f"split {config.split!r} of {dataset.name!r} is empty")
    results = {k: v / count for k, v in sums.items() if k != "z_reliance"}
    results["z_reliance"] = sums["z_reliance"] / max(shuffled_count, 1)
    results["elbo"] = -(results["rec"] + results["kl"])
    mu, logvar, z = (tf.concat(x, axis=0) for x in (mus, logvars, zs))
    mi_progress = progress_lib.PassProgress(
        what + " (MI over the split)", count, "code", self.progress_seconds)
    results["mi_full"] = float(metrics.mutual_information(
        mu, logvar, z, chunk_size=config.mi_chunk_size,
        progress=mi_progress.update))
    floor = metrics.mi_noise_floor(count, vae.latent_dim, seed=seed)
    results["mi_noise_std"], results["mi_noise_hi"] = floor["std"], floor["hi"]
    results["au"], _ = metrics.active_units(mu)
    if lengths:
      results["length_only_mi"], results["length_only_mi_full"] = (
          metrics.length_only_mi(lengths))
    if tokens and config.iw_samples:
      results["ppl"] = metrics.perplexity(results["nll"] * count, tokens)
      results["tokens"] = tokens
    latents = getattr(dataset, "latents", None)
    if config.probe and latents is not None and config.split in latents:
      order = np.argsort(np.concatenate(rows))
      truth = latents[config.split][np.sort(np.concatenate(rows))]
      train_mu, train_z, train_truth = self._train_codes(dataset, seed)
      results["probe_r2"] = metrics.linear_probe_r2(
          train_mu, train_truth, mu.numpy()[order], truth)
      results["probe_r2_z"] = metrics.linear_probe_r2(
          train_z, train_truth, z.numpy()[order], truth)
    results["num_examples"] = count
    results["log_k"] = math.log(config.batch_size)
    results["eval_seconds"] = time.time() - started
    logging.info("evaluated %d examples of %s/%s in %.1f s", count,
                 dataset.name, config.split, results["eval_seconds"])
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v)
            for k, v in results.items()}

  def _train_codes(self, dataset, seed: int):
    """(posterior means, one z ~ q(z|x) each, [N, latent]; true latents
    [N, d]) of the train split, rows in split order."""
    rows, means, samples = [], [], []
    for index, batch in enumerate(dataset.batches("train", 256,
                                                  with_index=True)):
      rows.append(batch.pop("index").numpy())
      mu, logvar = self._encode(batch)
      eps = tf.random.stateless_normal(tf.shape(mu), [seed, 10**6 + index])
      means.append(mu.numpy())
      samples.append((mu + tf.exp(0.5 * logvar) * eps).numpy())
    order = np.argsort(np.concatenate(rows))
    return (np.concatenate(means)[order], np.concatenate(samples)[order],
            dataset.latents["train"][np.sort(np.concatenate(rows))])


def _trim_padding(batch: dict) -> dict:
  """A text batch cut to its longest sentence (exact-length batches come
  padded to a bucket's shape for training; here the padding would only cost
  decoder passes); images unchanged."""
  if "tokens" not in batch:
    return batch
  longest = int(tf.reduce_max(tf.reduce_sum(
      tf.cast(batch["tokens"] != vocab_lib.PAD_ID, tf.int32), axis=1)))
  return dict(batch, tokens=batch["tokens"][:, :longest])
