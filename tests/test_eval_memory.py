"""Evaluation memory stays bounded: IW-NLL in chunks, whole-split MI in blocks.

Each measurement runs in a fresh process (this file as a script) that warms
up (traces) first, then reports how far the peak of TensorFlow's CPU
allocator (tf.config.experimental.get_memory_info, which works on CPU in TF
2.21) and the peak RSS rose above their level before the measured call. The
allocator peak is compared where it is available, else the RSS.
"""

import json
import os
import resource
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import metrics
from tf_cvae.data import base
from tf_cvae.data import vocabulary as vocab_lib
from tf_cvae.models import latent
from tf_cvae.models import registry
from tf_cvae.training import evaluation

# The IW measurement: one chunk of LSTM logits is CHUNK * BATCH x TIME x VOCAB
# floats (10 * 8 * 30 * 2000 * 4 bytes = 19 MB); 1000 samples unchunked would
# be 100 times that.
VOCAB, TIME, BATCH, CHUNK, EXAMPLES = 2000, 31, 8, 10, 8
MI_EXAMPLES, MI_LATENT, MI_CHUNK = 8000, 8, 256   # [N, N, latent]: 2 GB
MB = 2 ** 20


class _ModelInputs:
  kind = "text"

  def __init__(self, vocab):
    self.vocab = vocab


def _text_setup(vocab_size=VOCAB, time=TIME, examples=EXAMPLES):
  """A small LSTM VAE (untrained) and a data set of random sentences."""
  vocab = vocab_lib.Vocabulary([f"w{i}" for i in range(vocab_size - 4)])
  vae = registry.build_vae(
      registry.ModelConfig(embed_dim=16, hidden_dim=32, latent_dim=4,
                           decoder_dropout=0.0), _ModelInputs(vocab))
  rng = np.random.default_rng(0)
  sentences = [np.concatenate([[vocab_lib.BOS_ID],
                               rng.integers(4, vocab_size, time - 2),
                               [vocab_lib.EOS_ID]]).astype(np.int32)
               for _ in range(examples)]
  dataset = base.TextDataset(name="random", vocab=vocab, splits={
      s: sentences for s in base.SPLITS})
  return vae, dataset


def _rss(field: str) -> int | None:
  """VmRSS / VmHWM (peak since exec or the last reset) in bytes; Linux."""
  try:
    with open("/proc/self/status") as f:
      line = next(l for l in f if l.startswith(field + ":"))
  except (OSError, StopIteration):
    return None
  return int(line.split()[1]) * 1024


def _peaks(fn):
  """Growth of (allocator peak, peak RSS) in bytes while fn() runs.

  The allocator figure is None where TF keeps no statistics. The RSS peak
  is VmHWM, reset first through /proc/self/clear_refs (ru_maxrss would carry
  the forking pytest process's peak across exec); elsewhere, ru_maxrss.
  """
  try:
    tf.config.experimental.reset_memory_stats("CPU:0")
    before = tf.config.experimental.get_memory_info("CPU:0")["current"]
  except (ValueError, RuntimeError):   # no allocator statistics here
    before = None
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")                     # VmHWM := VmRSS
  except OSError:
    pass
  rss_before = _rss("VmRSS") or 0
  fn()
  peak = None
  if before is not None:
    peak = tf.config.experimental.get_memory_info("CPU:0")["peak"] - before
  rss = _rss("VmHWM")
  if rss is None:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  return peak, rss - rss_before


def _worker(what: str, size: int) -> dict:
  """Runs one measurement in this (fresh) process."""
  if what == "iw":
    vae, dataset = _text_setup()
    evaluator = evaluation.Evaluator(vae, None)
    config = lambda s: evaluation.EvalConfig(
        batch_size=BATCH, iw_samples=s, iw_chunk_size=CHUNK)
    evaluator(dataset, config(CHUNK))                 # traces every function
    peak, rss = _peaks(lambda: evaluator(dataset, config(size)))
  else:
    rng = np.random.default_rng(0)
    mu = tf.constant(rng.normal(size=(size, MI_LATENT)), tf.float32)
    logvar = tf.constant(rng.normal(size=(size, MI_LATENT)) - 1, tf.float32)
    z = latent.posterior(mu, logvar).sample(seed=[1, 2])
    metrics.mutual_information(mu[:MI_CHUNK], logvar[:MI_CHUNK],
                               z[:MI_CHUNK], chunk_size=MI_CHUNK)
    peak, rss = _peaks(lambda: metrics.mutual_information(
        mu, logvar, z, chunk_size=MI_CHUNK))
  return {"peak": peak, "rss": rss}


def _measure(what: str, size: int) -> dict:
  result = subprocess.run(
      [sys.executable, os.path.abspath(__file__), what, str(size)],
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def _growth(small: dict, large: dict) -> tuple[str, int, int]:
  key = "peak" if small["peak"] is not None else "rss"
  return key, small[key], large[key]


@pytest.mark.slow
def test_iw_nll_memory_does_not_grow_with_samples():
  runs = {s: _measure("iw", s) for s in (100, 1000)}
  for samples, run in runs.items():
    print(f"evaluation, {samples} samples: allocator peak "
          f"{(run['peak'] or 0) / MB:.1f} MB, RSS peak +{run['rss'] / MB:.0f} MB")
  key, small, large = _growth(runs[100], runs[1000])
  # One chunk's logits alone are 19 MB; unchunked, 1000 samples take 1.9 GB.
  assert large - small < max(0.2 * small, 50 * MB)


@pytest.mark.slow
def test_whole_split_mi_never_holds_n_by_n():
  measured = _measure("mi", MI_EXAMPLES)
  key, value = ("peak", measured["peak"]) if measured["peak"] is not None \
      else ("rss", measured["rss"])
  print(f"mi_full over {MI_EXAMPLES} examples: {key} {value / MB:.1f} MB, "
        f"RSS peak +{measured['rss'] / MB:.0f} MB")
  n_by_n = MI_EXAMPLES ** 2 * 4          # one float32 [N, N]: 256 MB
  assert value < n_by_n // 4


@pytest.mark.parametrize("chunk", [1, 7, 40])
def test_chunked_iw_nll_equals_one_chunk(chunk):
  vae, dataset = _text_setup(vocab_size=50, time=9, examples=5)
  batch = next(iter(dataset.batches("test", 5)))
  whole = metrics.ImportanceWeightedNLL(vae, 40)(batch, 40, seed=3)
  chunked = metrics.ImportanceWeightedNLL(vae, chunk)(batch, 40, seed=3)
  np.testing.assert_allclose(chunked.numpy(), whole.numpy(), rtol=1e-5)


@pytest.mark.slow
def test_evaluator_chunking_changes_no_metric():
  vae, dataset = _text_setup(vocab_size=50, time=9, examples=40)
  evaluator = evaluation.Evaluator(vae, None)
  config = lambda iw, mi: evaluation.EvalConfig(
      batch_size=8, iw_samples=30, iw_chunk_size=iw, mi_chunk_size=mi)
  whole = evaluator(dataset, config(30, 40))         # one chunk each
  chunked = evaluator(dataset, config(4, 6))
  for key in ("nll", "mi_full", "elbo", "kl", "mi", "au", "ppl"):
    np.testing.assert_allclose(chunked[key], whole[key], rtol=1e-5, err_msg=key)


if __name__ == "__main__":
  # Ops one at a time: the peak then does not depend on thread timing.
  tf.config.threading.set_inter_op_parallelism_threads(1)
  print(json.dumps(_worker(sys.argv[1], int(sys.argv[2]))))
