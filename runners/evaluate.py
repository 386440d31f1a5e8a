"""Evaluates a finished (or interrupted) run directory on one split.

  tf-cvae-evaluate --run_dir=runs/quickstart/self
  tf-cvae-evaluate --run_dir=RUN --split=valid --checkpoint=last

Rebuilds data and model from RUN/config.json (a text run reuses RUN/vocab.txt),
loads the last checkpoint (RUN/checkpoints; the default, as for metrics.json,
tf-cvae-export and tf-cvae-sample), the best one (RUN/best) or, with auto,
the best once there is one, else the last; writes RUN/metrics_<split>.json
(naming the checkpoint under "checkpoint" and "checkpoint_path") and prints
one table row.
"""

import dataclasses
import json
import os

import tf_cvae_runners  # first: TensorFlow starts without its chatter
from tf_cvae_runners import common
from tf_cvae_runners import launch

from absl import app
from absl import flags

from tf_cvae.trained import restore
from tf_cvae.training import evaluation
from tf_cvae.training import validation

flags.DEFINE_string("run_dir", None, "Run directory (a training --out_dir).")
flags.DEFINE_enum("split", "test", ["train", "valid", "test"],
                  "Split to evaluate.")
flags.DEFINE_integer("iw_samples", 500, "Importance samples of the NLL; 0 "
                     "skips it.", lower_bound=0)
flags.DEFINE_integer("eval_examples", None, "Evaluate only this many "
                     "examples.", lower_bound=1)
flags.DEFINE_enum("checkpoint", restore.DEFAULT_CHECKPOINT,
                  list(restore.CHECKPOINTS), restore.CHECKPOINT_HELP)
flags.DEFINE_enum("text_batching", None, ["full", "exact"], "Text batches "
                  "for the MI estimates (default: full): full = batches of "
                  "the run's K, lengths mixed within a range; exact = one "
                  "length a batch (smaller batches on a small split).")
flags.mark_flag_as_required("run_dir")
FLAGS = flags.FLAGS


def evaluate_run() -> dict:
  """Restores --run_dir, evaluates --split, writes metrics_<split>.json."""
  run = restore.restore_run(FLAGS.run_dir, FLAGS.checkpoint)
  dataset = run.dataset
  eval_config = dataclasses.replace(
      validation.final_eval_config(run.config), split=FLAGS.split,
      iw_samples=FLAGS.iw_samples, max_examples=FLAGS.eval_examples)
  if FLAGS.text_batching:
    eval_config = dataclasses.replace(eval_config,
                                      text_batching=FLAGS.text_batching)
  results = evaluation.evaluate(run.vae, run.critic, dataset, eval_config)
  results.update(run.checkpoint_record(), split=FLAGS.split)
  if dataset.kind == "text":
    results["text_batching"] = eval_config.text_batching
  path = os.path.join(FLAGS.run_dir, f"metrics_{FLAGS.split}.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2, sort_keys=True)
  return results


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  common.setup_logging()
  results = common.run_or_explain(evaluate_run,
                                  context=f"--run_dir={FLAGS.run_dir}")
  print(common.metrics_table(FLAGS.run_dir, results, FLAGS.split))


def main():
  """The tf-cvae-evaluate command: reads the command line, then
  evaluates a run directory."""
  launch.run(_main)


if __name__ == "__main__":
  main()
