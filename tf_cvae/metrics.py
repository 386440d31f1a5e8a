"""The paper's metrics as functions of tensors, shared by text and images.

All log-densities, KLs and informations are in nats.
"""

import math

import numpy as np
import tensorflow as tf

from tf_cvae.models import latent
from tf_cvae.models import vae as vae_lib

ACTIVE_UNIT_THRESHOLD = 0.01


def mutual_information(mu: tf.Tensor, logvar: tf.Tensor, z: tf.Tensor,
                       chunk_size: int | None = None,
                       progress=None) -> tf.Tensor:
  """He et al.'s estimate of I_q(x; z) over one set of N examples (nats).

  I = E[log q(z|x)] - E[log q(z)], with q(z) = 1/N sum_i q(z|x_i), the
  aggregate posterior over the same N examples, and one z_j ~ q(z|x_j) each.
  E[log q(z|x)] is the exact negative entropy. The estimate cannot exceed
  log N and can read slightly negative from sampling noise.

  Args:
    mu, logvar: [N, latent] posterior parameters.
    z: [N, latent], z_j drawn from q(z|x_j).
    chunk_size: evaluate q(z) over blocks of this many z and x at a time
      (in a tf.function), so memory stays O(chunk_size^2 * latent + N) for a
      whole test set, never [N, N]; None: all pairs at once.
    progress: with chunk_size, called as progress(z) after each block with
      the number of z it scored (for the progress of a long pass).
  """
  num = tf.shape(mu)[0]
  neg_entropy = -tf.reduce_mean(latent.posterior(mu, logvar).entropy())
  if chunk_size is None:
    log_q_z = tf.reduce_logsumexp(latent.pairwise_log_q(mu, logvar, z), axis=0)
  else:
    blocks = []
    for start in range(0, int(num), chunk_size):
      blocks.append(_logsumexp_over_x(mu, logvar, z[start:start + chunk_size],
                                      chunk_size))
      if progress is not None:
        progress(min(chunk_size, int(num) - start))
    log_q_z = tf.concat(blocks, axis=0)
  log_q_z -= tf.math.log(tf.cast(num, mu.dtype))
  return neg_entropy - tf.reduce_mean(log_q_z)


@tf.function(reduce_retracing=True)
def _logsumexp_over_x(mu, logvar, z_chunk, chunk_size):
  """logsumexp_i log q(z_j | x_i) over all N x, a block at a time: [chunk].

  A running logsumexp over [chunk_size, chunk] blocks of pairs.
  """
  total = tf.fill(tf.shape(z_chunk)[:1], tf.constant(-float("inf"), mu.dtype))
  for start in tf.range(0, tf.shape(mu)[0], chunk_size):
    block = latent.pairwise_log_q(mu[start:start + chunk_size],
                                  logvar[start:start + chunk_size], z_chunk)
    total = tf.reduce_logsumexp(
        tf.stack([total, tf.reduce_logsumexp(block, axis=0)]), axis=0)
  return total


def active_units(means: tf.Tensor,
                 threshold: float = ACTIVE_UNIT_THRESHOLD):
  """Active units: dims whose posterior mean varies over the data set.

  Args:
    means: [N, latent] posterior means E_q[z|x] over a whole split.
    threshold: variance above which a unit counts as active (He et al.: 0.01).

  Returns:
    (count, variances): the int count and the per-dim variances [latent].
  """
  variances = tf.math.reduce_variance(means, axis=0)
  return int(tf.reduce_sum(tf.cast(variances > threshold, tf.int32))), variances


class ImportanceWeightedNLL:
  """Importance-weighted estimate of -log p(x) per example (nats).

  -log (1/S sum_s p(x, z_s) / q(z_s|x)), z_s ~ q(z|x). The S samples are
  scored at most `chunk_size` at a time (the encoder runs once) and summed
  into a running logsumexp, so memory holds one chunk (the LSTM decoder's
  logits are [chunk_size * batch, vocab], a step at a time) plus [batch],
  whatever S (He et al.: 500 in chunks). Only the S samples asked for are
  drawn and scored. Sample s of example i is mu_i + sigma_i * eps_s with
  eps_s drawn from the stateless seed (seed, s): the estimate does not
  depend on chunk_size, and the estimate from the first S' < S samples is a
  prefix of the same draws. As S grows it falls towards -log p(x) (IWAE
  bound).
  """

  def __init__(self, vae: vae_lib.VAE, chunk_size: int = 50,
               log_likelihood=None):
    """log_likelihood(vae, batch, z [S, B, latent]) -> [S, B] nats scores
    the samples (default vae_lib.sample_log_likelihood)."""
    self.vae = vae
    self.chunk_size = chunk_size
    self._log_likelihood = log_likelihood or vae_lib.sample_log_likelihood
    self._log_weights = tf.function(self._chunk_log_weights,
                                    reduce_retracing=True)
    self._encode = tf.function(lambda batch: vae.encode(batch),
                               reduce_retracing=True)

  def _chunk_log_weights(self, batch, mu, logvar, seed, start, count):
    """log p(x, z_s) - log q(z_s|x) for s in [start, start + count): [count,
    B]; mu, logvar [B, latent] the batch's posterior parameters."""
    vae = self.vae
    q_z_given_x = latent.posterior(mu, logvar)
    eps = tf.map_fn(
        lambda s: tf.random.stateless_normal(tf.shape(mu), tf.stack([seed, s]),
                                             dtype=mu.dtype),
        tf.range(start, start + tf.cast(count, tf.int64)),
        fn_output_signature=mu.dtype)
    z = mu + tf.exp(0.5 * logvar) * eps                       # [C, B, latent]
    return (self._log_likelihood(vae, batch, z) + vae.prior().log_prob(z)
            - q_z_given_x.log_prob(z))

  def __call__(self, batch: dict, num_samples: int, seed: int = 0,
               report_at=(), progress=None):
    """[batch] IW-NLL in nats from `num_samples` samples per example.

    With `report_at` (sample counts below num_samples), returns instead
    {S': [batch] IW-NLL from the first S' samples} for each S' and for
    num_samples: the estimate's convergence from one set of draws.
    progress, if given, is called as progress(samples) after each chunk
    with the samples per example it scored.
    """
    marks = sorted({s for s in report_at if 0 < s < num_samples}
                   | {num_samples})
    log_sum, done, estimates = None, 0, {}               # log_sum: [batch]
    mu, logvar = self._encode(batch)                     # once for all S
    for mark in marks:
      while done < mark:
        count = min(self.chunk_size, mark - done)
        log_w = self._log_weights(batch, mu, logvar,
                                  tf.constant(seed, tf.int64),
                                  tf.constant(done, tf.int64),
                                  tf.constant(count, tf.int32))
        part = tf.reduce_logsumexp(log_w, axis=0)
        log_sum = part if log_sum is None else tf.reduce_logsumexp(
            tf.stack([log_sum, part]), axis=0)
        done += count
        if progress is not None:
          progress(count)
      estimates[mark] = -(log_sum - tf.math.log(tf.cast(mark, log_sum.dtype)))
    return estimates if report_at else estimates[num_samples]


def mi_noise_floor(num_examples: int, latent_dim: int, draws: int = 100_000,
                   seed: int = 0) -> dict:
  """What He et al.'s MI estimate reads for a posterior that ignores x.

  When q(z|x_i) is the same Gaussian for every x_i, q(z) = q(z|x) and the
  estimate over N examples (per batch and averaged, or over the whole split)
  is exactly mean_j (||eps_j||^2 - d) / 2, eps_j ~ N(0, I_d): mean 0,
  standard deviation sqrt(d / (2 N)) nats. An estimate inside the interval
  is indistinguishable from no information at all.

  Returns {"mean", "std", "lo", "hi"} (nats; lo, hi: the 2.5% and 97.5%
  quantiles from `draws` exact chi-square draws).
  """
  dof = num_examples * latent_dim
  chi2 = np.random.default_rng(seed).chisquare(dof, size=draws)
  values = (chi2 - dof) / (2.0 * num_examples)
  lo, hi = np.quantile(values, [0.025, 0.975])
  return {"mean": 0.0, "std": math.sqrt(latent_dim / (2.0 * num_examples)),
          "lo": float(lo), "hi": float(hi)}


def length_only_mi(batch_lengths: list[np.ndarray]) -> tuple[float, float]:
  """The MI a code holding only each sentence's length would read (nats).

  A code z = length (plus vanishing noise) makes q(z) over a set of N
  examples put mass n_l / N on each length l, so He et al.'s estimate is the
  plug-in entropy of the length: mean_j log(N / n_{l_j}). Returns
  (over each batch, averaged weighted by batch size; over all the batches'
  examples together). With one length a batch the first is 0.
  """
  def plug_in_entropy(lengths):
    _, inverse, counts = np.unique(lengths, return_inverse=True,
                                   return_counts=True)
    return float(np.mean(np.log(len(lengths) / counts[inverse])))
  total = sum(len(b) for b in batch_lengths)
  per_batch = sum(plug_in_entropy(b) * len(b) for b in batch_lengths) / total
  return per_batch, plug_in_entropy(np.concatenate(batch_lengths))


def _ridge(train_features: np.ndarray, train_targets: np.ndarray,
           ridge: float):
  """features [M, d] -> predicted targets [M, k]: ridge regression on the
  training rows' standardized features, the bias unpenalized."""
  mean, std = train_features.mean(0), train_features.std(0) + 1e-8
  def design(features):
    return np.concatenate([(features - mean) / std,
                           np.ones((len(features), 1))], axis=1)
  a = design(train_features)
  penalty = ridge * len(a) * np.eye(a.shape[1])
  penalty[-1, -1] = 0.0                                  # no penalty on b
  weights = np.linalg.solve(a.T @ a + penalty, a.T @ train_targets)
  return lambda features: design(features) @ weights


def linear_probe_r2(train_features: np.ndarray, train_targets: np.ndarray,
                    test_features: np.ndarray, test_targets: np.ndarray,
                    ridge: float = 1e-3) -> float:
  """How much of a known latent a linear map of the codes recovers.

  Fits targets [N, k] ~ features [N, d] @ W + b by ridge regression on the
  training rows (features standardized), scores the test rows: the mean over
  the k target dimensions of R^2 = 1 - SSE / SST (1: recovered, about 0 or
  below: nothing).
  """
  predict = _ridge(train_features, train_targets, ridge)
  residual = test_targets - predict(test_features)
  sse = (residual ** 2).sum(0)
  sst = ((test_targets - test_targets.mean(0)) ** 2).sum(0)
  return float(np.mean(1.0 - sse / sst))


def perplexity(total_nll: float, total_tokens: int) -> float:
  """exp(total NLL / total predicted tokens, </s> included)."""
  return math.exp(total_nll / total_tokens)


def one_hot(values: np.ndarray, categories: np.ndarray) -> np.ndarray:
  """float [N, len(categories)]: 1 where values[i] == categories[j]; a value
  outside `categories` (e.g. a length unseen in training) is all zeros."""
  return (np.asarray(values)[:, None] == np.asarray(categories)[None, :]
          ).astype(np.float64)


def probe_r2_length(train_lengths: np.ndarray, train_targets: np.ndarray,
                    lengths: np.ndarray, targets: np.ndarray) -> float:
  """linear_probe_r2 of the targets [N, k] from the one-hot sentence length
  alone (lengths [N], categories those of train): what length explains."""
  categories = np.unique(train_lengths)
  return linear_probe_r2(one_hot(train_lengths, categories), train_targets,
                         one_hot(lengths, categories), targets)


def beyond_length(train_lengths: np.ndarray, train_targets: np.ndarray,
                  lengths: np.ndarray, targets: np.ndarray):
  """The targets [N, k] less what their length explains: (train residuals,
  split residuals).

  The least-squares fit of the targets on the one-hot length, on train, is
  the mean target of each length; both sets subtract it (a length unseen in
  training subtracts the training mean).
  """
  train_targets = np.asarray(train_targets, np.float64)
  overall = train_targets.mean(0)
  means = {n: train_targets[train_lengths == n].mean(0)
           for n in np.unique(train_lengths)}
  def explained(values):
    return np.stack([means.get(n, overall) for n in values])
  return (train_targets - explained(train_lengths),
          np.asarray(targets, np.float64) - explained(lengths))


def linear_probe_accuracy(train_features: np.ndarray,
                          train_labels: np.ndarray,
                          test_features: np.ndarray, test_labels: np.ndarray,
                          ridge: float = 1e-3) -> dict:
  """How well a linear classifier of the codes recovers a known class.

  Ridge regression of the one-hot class (classes seen in train) on the
  standardized features [N, d], fit on train; a test row's prediction is the
  argmax. Returns {"accuracy": fraction of test rows right, "majority": the
  test rate of train's most frequent class, "chance": 1 / classes in train}.
  """
  classes, counts = np.unique(train_labels, return_counts=True)
  predict = _ridge(train_features, one_hot(train_labels, classes), ridge)
  predicted = classes[np.argmax(predict(test_features), axis=1)]
  test_labels = np.asarray(test_labels)
  return {"accuracy": float(np.mean(predicted == test_labels)),
          "majority": float(np.mean(test_labels == classes[np.argmax(counts)])),
          "chance": 1.0 / len(classes)}


def same_length_partners(lengths: np.ndarray):
  """For a batch's sentence lengths [B]: (partner [B] int, paired [B] bool).

  Row i's partner is another row of the same length (the next one of that
  length, cyclically), so swapping codes between partners keeps length out;
  a row alone with its length is its own partner and not paired.
  """
  lengths = np.asarray(lengths)
  partner = np.arange(len(lengths))
  paired = np.zeros(len(lengths), bool)
  for n in np.unique(lengths):
    rows = np.flatnonzero(lengths == n)
    if len(rows) > 1:
      partner[rows] = np.roll(rows, -1)
      paired[rows] = True
  return partner, paired


def size_weighted_log_k(batch_sizes) -> float:
  """sum_b n_b log n_b / sum_b n_b over the batches evaluated (nats): the
  cap log K that per-batch MI and InfoNCE estimates averaged with weights
  n_b were read at."""
  sizes = np.asarray(batch_sizes, np.float64)
  return float(np.sum(sizes * np.log(sizes)) / np.sum(sizes))
