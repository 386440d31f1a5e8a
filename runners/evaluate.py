"""Evaluates a finished (or interrupted) run directory on one split.

  python runners/evaluate.py --run_dir=runs/quickstart/self
  python runners/evaluate.py --run_dir=RUN --split=valid --checkpoint=last

Rebuilds data and model from RUN/config.json (a text run reuses RUN/vocab.txt),
loads the last checkpoint (RUN/checkpoints) or the best one (RUN/best), writes
RUN/metrics_<split>.json and prints one table row.
"""

import dataclasses
import json
import os

from absl import app
from absl import flags

import common
from tf_cvae.training import build
from tf_cvae.training import evaluation
from tf_cvae.training import validation

flags.DEFINE_string("run_dir", None, "Run directory (a training --out_dir).")
flags.DEFINE_enum("split", "test", ["train", "valid", "test"],
                  "Split to evaluate.")
flags.DEFINE_integer("iw_samples", 500, "Importance samples of the NLL; 0 "
                     "skips it.", lower_bound=0)
flags.DEFINE_integer("eval_examples", None, "Evaluate only this many "
                     "examples.", lower_bound=1)
flags.DEFINE_enum("checkpoint", "last", sorted(build.CHECKPOINT_DIRS),
                  "The last checkpoint (what training ended with) or the "
                  "best one (by the run's --select_by).")
flags.DEFINE_enum("text_batching", None, ["exact", "bucket"], "Text batches "
                  "for the MI estimates (default: the run's): exact = one "
                  "length a batch, bucket = lengths mixed.")
flags.mark_flag_as_required("run_dir")
FLAGS = flags.FLAGS


def evaluate_run() -> dict:
  """Restores --run_dir, evaluates --split, writes metrics_<split>.json."""
  step_fn, dataset, config = build.restore(FLAGS.run_dir, FLAGS.checkpoint)
  if FLAGS.text_batching and dataset.kind == "text":
    dataset = dataclasses.replace(dataset, batching=FLAGS.text_batching)
  eval_config = dataclasses.replace(
      validation.final_eval_config(config), split=FLAGS.split,
      iw_samples=FLAGS.iw_samples, max_examples=FLAGS.eval_examples)
  results = evaluation.evaluate(step_fn.vae, step_fn.critic, dataset,
                                eval_config)
  results.update(checkpoint=FLAGS.checkpoint, split=FLAGS.split,
                 text_batching=getattr(dataset, "batching", None))
  path = os.path.join(FLAGS.run_dir, f"metrics_{FLAGS.split}.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2, sort_keys=True)
  return results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  common.setup_logging()
  results = common.run_or_explain(evaluate_run,
                                  context=f"--run_dir={FLAGS.run_dir}")
  print(common.format_table(
      {f"{FLAGS.run_dir} ({FLAGS.checkpoint}, {FLAGS.split})": results}))


if __name__ == "__main__":
  app.run(main)
