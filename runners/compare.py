"""Every method on the same data at a short budget, in one table.

  tf-cvae-compare --datasets=synthetic_text,synthetic_images \
      --max_steps=300 --out=runs/compare

Each (data set, method) pair is one train.run in its own directory under --out
(an existing one resumes: delete it to measure again). Prints, and writes
to --out/compare.md, NLL, KL, MI, AU, the InfoNCE bound and the seconds per
step relative to the plain VAE on the same data set. The other train flags
(sizes, --iw_samples, --eval_examples, ...) apply to every run.
"""

import dataclasses
import json
import os

import tf_cvae_runners  # first: TensorFlow starts without its chatter
from tf_cvae_runners import common
from tf_cvae_runners import launch

from absl import app
from absl import flags

from tf_cvae import methods as methods_lib
from tf_cvae.training import train

common.define_train_flags()
flags.DEFINE_list("datasets", ["synthetic_text", "synthetic_images"],
                  "Data sets to compare on.")
flags.DEFINE_list("methods", None,
                  "Methods (default: all of tf_cvae.methods.METHODS).")
flags.DEFINE_string("out", "runs/compare", "Parent of the run directories.")


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  common.setup_logging()
  methods = flags.FLAGS.methods or list(methods_lib.METHODS)
  unknown = sorted(set(methods) - set(methods_lib.METHODS))
  if unknown:
    raise app.UsageError(f"--methods: unknown {unknown}; "
                         f"known {list(methods_lib.METHODS)}")
  lines = []
  for dataset in flags.FLAGS.datasets:
    rows = {}
    for method in methods:
      out_dir = os.path.join(flags.FLAGS.out, dataset, method)
      base = common.train_config_from_flags(out_dir=out_dir)
      base = dataclasses.replace(
          base, data=dataclasses.replace(base.data, name=dataset))
      rows[method] = common.run_or_explain(
          train.run, methods_lib.method_config(base, method))
    reference = rows.get("vae", {}).get("seconds_per_step")
    for result in rows.values():
      if reference and "seconds_per_step" in result:
        result["step_time_vs_vae"] = result["seconds_per_step"] / reference
    lines += [f"\n{dataset} ({flags.FLAGS.max_steps} steps; nats)", "```",
              common.format_table(rows), "```"]
    with open(os.path.join(flags.FLAGS.out, dataset, "results.json"), "w") as f:
      json.dump(rows, f, indent=2)
  text = "\n".join(lines)
  print(text)
  with open(os.path.join(flags.FLAGS.out, "compare.md"), "w") as f:
    f.write(text + "\n")


def main():
  """The tf-cvae-compare command: reads the command line, then
  trains and compares every method."""
  launch.run(_main)


if __name__ == "__main__":
  main()
