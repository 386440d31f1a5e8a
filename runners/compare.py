"""Every method on the same data at a short budget, in one table.

  python runners/compare.py --datasets=synthetic_text,synthetic_images \
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

from absl import app
from absl import flags

import common
from tf_cvae import train

common.define_train_flags()
flags.DEFINE_list("datasets", ["synthetic_text", "synthetic_images"],
                  "Data sets to compare on.")
flags.DEFINE_list("methods", None, "Methods (default: all of METHODS).")
flags.DEFINE_string("out", "runs/compare", "Parent of the run directories.")

# method -> TrainConfig / ObjectiveConfig fields it changes.
METHODS = {
    "vae": {},
    "kl_annealing": {"objective": {"kl_anneal_steps": "half"}},
    "beta_0.5": {"objective": {"kl_weight": 0.5}},
    "free_bits_0.25": {"objective": {"free_bits": 0.25}},
    "aggressive": {"aggressive": True},
    "self": {"critic": "self", "objective": {"critic_weight": 3.0}},
    "self_target_2": {"critic": "self", "objective": {"critic_weight": 3.0,
                                                      "critic_target": 2.0}},
    "self_queue_224": {"critic": "self", "num_negatives": 224,
                       "objective": {"critic_weight": 3.0}},
    "hybrid": {"critic": "hybrid", "objective": {"critic_weight": 10.0}},
    "nn": {"critic": "nn", "objective": {"critic_weight": 10.0}},
    "model": {"critic_side": "model", "objective": {"critic_weight": 3.0}},
}


# What every method starts from: no critic and no baseline, whatever the
# command line says, so that a method row holds that method alone.
NEUTRAL = {"critic": "none", "critic_side": "inference", "num_negatives": 0,
           "aggressive": False}
NEUTRAL_OBJECTIVE = {"kl_weight": 1.0, "kl_anneal_steps": 0, "free_bits": 0.0,
                     "critic_target": None}


def method_config(base: train.TrainConfig, method: str) -> train.TrainConfig:
  """`base` reset to the plain VAE, with the changes of `method`."""
  changes = dict(NEUTRAL, **METHODS[method])
  objective = dict(NEUTRAL_OBJECTIVE, **changes.pop("objective", {}))
  if objective.get("kl_anneal_steps") == "half":
    objective["kl_anneal_steps"] = max(1, (base.max_steps or 1000) // 2)
  return dataclasses.replace(
      base, objective=dataclasses.replace(base.objective, **objective),
      **changes)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  common.setup_logging()
  methods = flags.FLAGS.methods or list(METHODS)
  unknown = sorted(set(methods) - set(METHODS))
  if unknown:
    raise app.UsageError(f"--methods: unknown {unknown}; known {list(METHODS)}")
  lines = []
  for dataset in flags.FLAGS.datasets:
    rows = {}
    for method in methods:
      out_dir = os.path.join(flags.FLAGS.out, dataset, method)
      base = common.train_config_from_flags(out_dir=out_dir)
      base = dataclasses.replace(
          base, data=dataclasses.replace(base.data, name=dataset))
      rows[method] = common.run_or_explain(train.run,
                                           method_config(base, method))
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


if __name__ == "__main__":
  app.run(main)
