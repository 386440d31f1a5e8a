"""Evaluation of a trained VAE on a split: every metric (IW-NLL, KL, MI, AU,
the InfoNCE bound and the controls) in one pass."""

import collections
import dataclasses
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
  text_batching: str = "full"    # text batches: "full" (K rows each but the
                                 # last, lengths mixed) or "exact" (one length)
  subset_iw_samples: int = 0     # > 0: also nll_iw<S>_subset, the IW-NLL of
                                 # S samples on a fixed subset of the split
  subset_examples: int = 500     # rows of that subset (example_subset)

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


def work_units(dataset, config: EvalConfig) -> int:
  """The passes (progress_lib.EvalProgress's unit) of an evaluation: per
  example of the split (or of max_examples) its encode and score, its
  iw_samples importance samples and its code in the split's MI; the subset
  IW-NLL's samples when it needs a pass of its own; and the train split's
  examples when the probes encode them."""
  num_examples = dataset.num_examples(config.split)
  subset = example_subset(num_examples, config.max_examples)
  count = len(subset) if subset is not None else num_examples
  units = count * (2 + config.iw_samples)
  if config.subset_iw_samples and not _subset_from_pass(config, subset):
    fixed = example_subset(num_examples, config.subset_examples)
    units += (num_examples if fixed is None else len(fixed)) * (
        config.subset_iw_samples)
  if config.probe and _has_probes(dataset, config.split):
    units += dataset.num_examples("train")
  return units


def _subset_from_pass(config: EvalConfig, subset) -> bool:
  """Whether the subset IW-NLL comes from the main pass's draws (the pass
  covers the whole split with enough samples) rather than a pass of its own."""
  return bool(config.subset_iw_samples) and subset is None and (
      config.iw_samples >= config.subset_iw_samples)


def _has_probes(dataset, split: str) -> bool:
  """Whether `split` of `dataset` has known latents or labels to probe."""
  return any(split in (getattr(dataset, name, None) or {})
             for name in ("latents", "labels"))


class Evaluator:
  """evaluate() that keeps its compiled functions between calls.

  train.run validates with one Evaluator, so the encoder pass is traced once
  per batch shape, not once per validation. An evaluation shows one
  progress bar over all its passes (progress_lib.EvalProgress; in a log, a
  line every `progress_seconds`, 0: every batch or block).
  """

  def __init__(self, vae, critic, progress_seconds: float = 30.0):
    self.vae, self.progress_seconds = vae, progress_seconds
    self.critic = critic if critic is not None else critics.SelfCritic()
    self._nll_estimators = {}     # iw_chunk_size -> ImportanceWeightedNLL
    self._encode_and_score = tf.function(self._encode_and_score_eager,
                                         reduce_retracing=True)
    self._encode = tf.function(lambda batch: vae.encode(batch, training=False),
                               reduce_retracing=True)

  def _encode_and_score_eager(self, batch, seed, partner):
    """(objective.Terms, the batch MI estimate, log p(x|z) [B] with each row
    decoded from its partner's z)."""
    terms = objective.forward(self.vae, self.critic, batch, seed,
                              training=False)
    mi = metrics.mutual_information(terms.mu, terms.logvar, terms.z)
    # Each row decoded from its partner's z (partner [B], another row of the
    # same length for text): what p(x|z) loses when z comes from another x.
    shuffled = self.vae.log_likelihood(batch, tf.gather(terms.z, partner),
                                       training=False)
    return terms, mi, shuffled

  def __call__(self, dataset, config: EvalConfig,
               inside_training: bool = False) -> dict:
    """Metrics of the VAE on `config.split` of `dataset`; inside_training
    (a validation): progress as log lines only (see EvalProgress).

    Returns a dict of floats (nats unless noted):
      nll: IW estimate per example from iw_samples samples, and nll_iw<S> for
        the counts of iw_report below it (prefixes of the same draws);
      nll_iw<S>_subset (with config.subset_iw_samples = S): the IW estimate
        of S samples on the fixed subset of subset_examples rows
        (example_subset: the same rows for every run), subset_examples;
      elbo, rec (-log p(x|z), one sample), kl;
      mi: He et al.'s estimate per batch, averaged weighted by batch size
        (capped at log_k); mi_full: q(z) over the whole split (capped at
        log N); mi_noise_std, mi_noise_hi: what both read for a posterior
        that ignores x (metrics.mi_noise_floor; an estimate below
        mi_noise_hi is not distinguishable from zero);
      au (count); infonce_bound (c + log K per batch, averaged; the run's
        critic, or the self critic for a plain VAE);
      z_reliance: rec with each z given to a partner row of its batch minus
        rec, over the rows that have one (how much the decoder uses z); text
        partners have the same length; z_reliance_unpaired counts the rows
        left out (alone with their length, or batches of one);
      text: ppl and tokens; length_only_mi, length_only_mi_full: what a code
        holding only the sentence length reads (metrics.length_only_mi);
        batches of config.batch_size rows but the last ("full" batching,
        lengths mixed) unless config.text_batching == "exact";
      data generated from a known latent: probe_r2 (metrics.linear_probe_r2
        of the posterior means, fit on train, scored on this split) and
        probe_r2_z (the same of one sample z ~ q(z|x) each: what the code
        carries through its noise; means that vary far less than the
        posterior's spread read high in probe_r2 but not here); for text
        also probe_r2_length (the probe from the one-hot sentence length
        alone) and probe_r2_beyond_length, probe_r2_z_beyond_length (the
        probe of the latent less what length explains on train);
      data with labels: probe_acc_<label>, probe_acc_z_<label> (a linear
        classifier of means / z samples fit on train, the fraction of this
        split it gets right), probe_acc_<label>_majority (the split's rate
        of train's most frequent class), probe_acc_<label>_chance (1 /
        classes);
      num_examples; mean_batch_size and log_k (the size-weighted mean of
        log of the batch sizes evaluated: the cap of mi and infonce_bound);
      eval_seconds.
    With config.iw_samples == 0 there is no nll (nor ppl).

    Memory is bounded whatever iw_samples and the split's size N: the IW-NLL
    holds one chunk (iw_chunk_size x batch_size decoder inputs) at a time;
    the split's mu, logvar and z ([N, latent] each) are kept for mi_full and
    au, and mi_full's q(z) is computed in mi_chunk_size blocks, never [N, N].
    """
    what = f"evaluating {dataset.name}/{config.split}"
    with progress_lib.EvalProgress(what, work_units(dataset, config),
                                   inside_training,
                                   self.progress_seconds) as progress:
      return self._evaluate(dataset, config, progress)

  def _evaluate(self, dataset, config: EvalConfig, progress) -> dict:
    """__call__'s work; `progress` (EvalProgress) counts its passes."""
    started = time.time()
    vae, seed = self.vae, config.seed or 0
    if ((config.iw_samples or config.subset_iw_samples)
        and config.iw_chunk_size not in self._nll_estimators):
      self._nll_estimators[config.iw_chunk_size] = (
          metrics.ImportanceWeightedNLL(vae, config.iw_chunk_size))
    nll_estimator = self._nll_estimators.get(config.iw_chunk_size)
    num_examples = dataset.num_examples(config.split)
    subset = example_subset(num_examples, config.max_examples)
    subset_s = config.subset_iw_samples
    subset_from_pass = _subset_from_pass(config, subset)
    report_at = set(config.iw_report or (config.iw_samples,))
    if subset_from_pass:
      report_at.add(subset_s)
    wanted = set(config.iw_report) | {config.iw_samples}

    sums = collections.defaultdict(float)
    rows, mus, logvars, zs, lengths, sizes, per_row_nll = ([] for _ in range(7))
    count, tokens, paired_count, unpaired = 0, 0, 0, 0
    progress.stage(f"IW-NLL of {config.iw_samples} samples"
                   if config.iw_samples else "encoding")
    batches = dataset.batches(config.split, config.batch_size,
                              with_index=True, examples=subset,
                              batching=config.text_batching)
    for index, batch in enumerate(batches):
      rows.append(batch.pop("index").numpy())
      batch = _trim_padding(batch)
      size = len(rows[-1])
      partner, paired = _partners(batch)
      terms, mi, shuffled = self._encode_and_score(
          batch, tf.constant([seed, index]), tf.constant(partner, tf.int32))
      sums["rec"] -= float(tf.reduce_sum(terms.log_likelihood))
      sums["kl"] += float(tf.reduce_sum(terms.kl))
      sums["mi"] += float(mi) * size
      sums["infonce_bound"] += float(terms.critic.bound) * size
      gap = (terms.log_likelihood - shuffled).numpy()
      sums["z_reliance"] += float(np.sum(gap[paired]))
      paired_count += int(np.sum(paired))
      unpaired += size - int(np.sum(paired))
      progress.update(size)
      if config.iw_samples:
        estimates = nll_estimator(
            batch, config.iw_samples, seed=seed * 100_003 + index,
            report_at=tuple(report_at),
            progress=lambda samples: progress.update(samples * size))
        for samples, nll in estimates.items():
          if samples in wanted:
            key = ("nll" if samples == config.iw_samples
                   else f"nll_iw{samples}")
            sums[key] += float(tf.reduce_sum(nll))
        if subset_from_pass:
          per_row_nll.append(estimates[subset_s].numpy())
      if "tokens" in batch:
        valid = tf.cast(vae.target(batch) != vocab_lib.PAD_ID, tf.int32)
        tokens += int(tf.reduce_sum(valid))
        lengths.append(tf.reduce_sum(valid, axis=1).numpy())
      mus.append(terms.mu)
      logvars.append(terms.logvar)
      zs.append(terms.z)
      sizes.append(size)
      count += size
    if count == 0:
      raise errors.InputError(f"split {config.split!r} of {dataset.name!r} is empty")
    results = {k: v / count for k, v in sums.items() if k != "z_reliance"}
    results["z_reliance"] = sums["z_reliance"] / max(paired_count, 1)
    results["z_reliance_unpaired"] = unpaired
    results["elbo"] = -(results["rec"] + results["kl"])
    mu, logvar, z = (tf.concat(x, axis=0) for x in (mus, logvars, zs))
    progress.stage("MI over the split")
    results["mi_full"] = float(metrics.mutual_information(
        mu, logvar, z, chunk_size=config.mi_chunk_size,
        progress=progress.update))
    floor = metrics.mi_noise_floor(count, vae.latent_dim, seed=seed)
    results["mi_noise_std"], results["mi_noise_hi"] = floor["std"], floor["hi"]
    results["au"], _ = metrics.active_units(mu)
    if lengths:
      results["length_only_mi"], results["length_only_mi_full"] = (
          metrics.length_only_mi(lengths))
    if tokens and config.iw_samples:
      results["ppl"] = metrics.perplexity(results["nll"] * count, tokens)
      results["tokens"] = tokens
    all_rows = np.concatenate(rows)
    if subset_s:
      fixed = example_subset(num_examples, config.subset_examples)
      fixed = np.arange(num_examples) if fixed is None else fixed
      if subset_from_pass:
        by_row = dict(zip(all_rows.tolist(),
                          np.concatenate(per_row_nll).tolist()))
        value = float(np.mean([by_row[r] for r in fixed.tolist()]))
      else:
        progress.stage(f"IW-NLL of {subset_s} samples on {len(fixed)} rows")
        value = self._subset_nll(dataset, config, fixed, nll_estimator, seed,
                                 progress)
      results[f"nll_iw{subset_s}_subset"] = value
      results["subset_examples"] = len(fixed)
    if config.probe and _has_probes(dataset, config.split):
      progress.stage("probes (encoding train)")
      order = np.argsort(all_rows)
      results.update(self._probes(dataset, config.split, all_rows[order],
                                  mu.numpy()[order], z.numpy()[order], seed,
                                  progress))
    results["num_examples"] = count
    results["mean_batch_size"] = count / len(sizes)
    results["log_k"] = metrics.size_weighted_log_k(sizes)
    results["eval_seconds"] = time.time() - started
    logging.info("evaluated %d examples of %s/%s in %.1f s", count,
                 dataset.name, config.split, results["eval_seconds"])
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v)
            for k, v in results.items()}

  def _subset_nll(self, dataset, config, rows, nll_estimator, seed,
                  progress) -> float:
    """Mean IW-NLL (nats) of config.subset_iw_samples samples over `rows`."""
    total = 0.0
    for index, batch in enumerate(dataset.batches(
        config.split, config.batch_size, examples=rows,
        batching=config.text_batching)):
      batch = _trim_padding(batch)
      size = int(tf.shape(next(iter(batch.values())))[0])
      nll = nll_estimator(
          batch, config.subset_iw_samples,
          seed=seed * 100_003 + 50_000 + index,
          progress=lambda samples, size=size: progress.update(samples * size))
      total += float(tf.reduce_sum(nll))
    return total / len(rows)

  def _probes(self, dataset, split, split_rows, mu, z, seed, progress) -> dict:
    """The probes of known latents and labels (see __call__) of the codes
    mu, z [N, latent] of rows split_rows (sorted) of `split` (_has_probes)."""
    latents = getattr(dataset, "latents", None)
    labels = getattr(dataset, "labels", None)
    has_latents = latents is not None and split in latents
    has_labels = labels is not None and split in labels
    train_mu, train_z, train_rows = self._train_codes(dataset, seed, progress)
    results = {}
    if has_latents:
      truth = latents[split][split_rows]
      train_truth = latents["train"][train_rows]
      results["probe_r2"] = metrics.linear_probe_r2(train_mu, train_truth,
                                                    mu, truth)
      results["probe_r2_z"] = metrics.linear_probe_r2(train_z, train_truth,
                                                      z, truth)
      if dataset.kind == "text":
        train_n = dataset.lengths("train")[train_rows]
        split_n = dataset.lengths(split)[split_rows]
        results["probe_r2_length"] = metrics.probe_r2_length(
            train_n, train_truth, split_n, truth)
        train_rest, rest = metrics.beyond_length(train_n, train_truth,
                                                 split_n, truth)
        results["probe_r2_beyond_length"] = metrics.linear_probe_r2(
            train_mu, train_rest, mu, rest)
        results["probe_r2_z_beyond_length"] = metrics.linear_probe_r2(
            train_z, train_rest, z, rest)
    if has_labels:
      for name, values in labels[split].items():
        train_values = labels["train"][name][train_rows]
        means = metrics.linear_probe_accuracy(train_mu, train_values, mu,
                                              values[split_rows])
        samples = metrics.linear_probe_accuracy(train_z, train_values, z,
                                                values[split_rows])
        results[f"probe_acc_{name}"] = means["accuracy"]
        results[f"probe_acc_z_{name}"] = samples["accuracy"]
        results[f"probe_acc_{name}_majority"] = means["majority"]
        results[f"probe_acc_{name}_chance"] = means["chance"]
    return results

  def _train_codes(self, dataset, seed: int, progress):
    """(posterior means, one z ~ q(z|x) each, [N, latent]; the rows, sorted)
    of the train split, rows in split order."""
    rows, means, samples = [], [], []
    for index, batch in enumerate(dataset.batches("train", 256,
                                                  with_index=True)):
      rows.append(batch.pop("index").numpy())
      mu, logvar = self._encode(batch)
      eps = tf.random.stateless_normal(tf.shape(mu), [seed, 10**6 + index])
      means.append(mu.numpy())
      samples.append((mu + tf.exp(0.5 * logvar) * eps).numpy())
      progress.update(len(rows[-1]))
    order = np.argsort(np.concatenate(rows))
    return (np.concatenate(means)[order], np.concatenate(samples)[order],
            np.sort(np.concatenate(rows)))


def _partners(batch: dict):
  """(partner int [B], paired bool [B]) of a batch: for text another row of
  the same length (metrics.same_length_partners), for images the next row;
  a batch of one has none."""
  if "tokens" in batch:
    return metrics.same_length_partners(
        np.sum(batch["tokens"].numpy() != vocab_lib.PAD_ID, axis=1))
  size = int(tf.shape(next(iter(batch.values())))[0])
  return np.roll(np.arange(size), -1), np.full(size, size > 1)


def _trim_padding(batch: dict) -> dict:
  """A text batch cut to its longest sentence (exact-length batches come
  padded to a bucket's shape for training; here the padding would only cost
  decoder passes); images unchanged."""
  if "tokens" not in batch:
    return batch
  longest = int(tf.reduce_max(tf.reduce_sum(
      tf.cast(batch["tokens"] != vocab_lib.PAD_ID, tf.int32), axis=1)))
  return dict(batch, tokens=batch["tokens"][:, :longest])
