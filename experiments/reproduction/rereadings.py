"""Further readings of a finished run's weights, cached in its directory.

`old_protocol`: the test metrics as the earlier protocol took them (the best
checkpoint by validation negative ELBO, text batched in mixed-length buckets,
a few hundred test examples, 20 importance samples), so a report can show old
and new readings of the same weights side by side.
`iw_convergence`: the IW-NLL of the last weights at 20, 100 and 500 samples
(the same draws) on a fixed subset of the test split: how far the count a
table uses is from converged.
`validation`: the metrics of the last weights on the validation split, as
the test split is read (IW-NLL, MI, AU, the InfoNCE bound): what the
defaults are chosen by, so that no choice is made on the test split.
"""

import dataclasses
import json
import os

import keras

from tf_cvae.trained import restore
from tf_cvae.training import config as config_lib
from tf_cvae.training import evaluation

OLD_PROTOCOL_FILE = "metrics_old_protocol.json"
CONVERGENCE_FILE = "metrics_iw_convergence.json"
VALID_FILE = "metrics_valid.json"
# The importance samples iw_convergence takes as converged.
CONVERGED_SAMPLES = 500


def _cached(path: str, measure) -> dict | None:
  """The JSON at `path`, else measure() written there (measure None: None)."""
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  if measure is None:
    return None
  results = measure()
  config_lib.write_json(path, results)
  keras.backend.clear_session()
  return results


def old_protocol(run, measure_it: bool = True) -> dict | None:
  """The test metrics of a finished run as the earlier protocol took them.

  The run's best checkpoint (by its select_by, the validation negative ELBO
  by default; unlike the earlier protocol, the final step's validation is
  among the candidates, and PTB validates on a held-out part of its
  training file), text in mixed-length buckets, run.old_eval's examples and
  IW samples (e.g. 300 sentences, 20 samples), the run's samples' seed: how
  the same weights read before the measurement was fixed. Cached in the run
  directory; with measure_it False, only the cached reading (or None).
  """
  def measure():
    restored = restore.restore_run(run.config.out_dir, "auto")
    which, dataset, config = restored.which, restored.dataset, restored.config
    if dataset.kind == "text":
      dataset = dataclasses.replace(dataset, batching="bucket")
    results = evaluation.evaluate(
        restored.vae, restored.critic, dataset, evaluation.EvalConfig(
            batch_size=config.batch_size, seed=config.seed, iw_report=(),
            **run.old_eval))
    return dict(results, checkpoint=which)
  return _cached(os.path.join(run.config.out_dir, OLD_PROTOCOL_FILE),
                 measure if measure_it else None)


def iw_convergence(run, examples: int = 500,
                   samples: int = CONVERGED_SAMPLES,
                   measure_it: bool = True) -> dict | None:
  """{"nll_iw20", "nll_iw100", "nll_iw500" (nats), "num_examples"} of the
  last weights on a fixed subset of `examples` test examples."""
  def measure():
    restored = restore.restore_run(run.config.out_dir, "last")
    dataset, config = restored.dataset, restored.config
    results = evaluation.evaluate(
        restored.vae, restored.critic, dataset, dataclasses.replace(
            config.eval, batch_size=config.batch_size, seed=config.seed,
            iw_samples=samples, iw_report=(20, 100), max_examples=examples))
    return {k: results[k] for k in ("nll_iw20", "nll_iw100", "num_examples")
            } | {f"nll_iw{samples}": results["nll"]}
  return _cached(os.path.join(run.config.out_dir, CONVERGENCE_FILE),
                 measure if measure_it else None)


def validation(run, measure_it: bool = True) -> dict | None:
  """The last weights' metrics on the validation split (the run's evaluation
  settings: IW samples, seed; at most config.valid_examples examples), in
  nats, as evaluation.evaluate returns them."""
  def measure():
    restored = restore.restore_run(run.config.out_dir, "last")
    config = restored.config
    return evaluation.evaluate(
        restored.vae, restored.critic, restored.dataset, dataclasses.replace(
            config.eval, split="valid", batch_size=config.batch_size,
            seed=config.seed, iw_report=(),
            max_examples=config.valid_examples))
  return _cached(os.path.join(run.config.out_dir, VALID_FILE),
                 measure if measure_it else None)


def all_of(run, measure: bool = True) -> dict:
  """A run's further readings: {"valid": ...}, "old_protocol" where cached
  or where the run is a table run tested the earlier way too (run.old_eval),
  and, for seed 0, "iw_convergence" where cached or where the run is a table
  run read with fewer than CONVERGED_SAMPLES importance samples (so every
  table shows how far its count is from converged); with measure False,
  only those already cached. A directory shared by two parts reads the
  same."""
  earlier = measure and bool(run.old_eval)
  out = {"valid": validation(run, measure),
         "old_protocol": old_protocol(run, earlier)}
  if run.seed == 0:
    few_samples = (run.part == "table"
                   and run.config.eval.iw_samples < CONVERGED_SAMPLES)
    out["iw_convergence"] = iw_convergence(
        run, measure_it=earlier or (measure and few_samples))
  return {k: v for k, v in out.items() if v is not None}
