"""Trains one VAE (with or without a critic), evaluates it, writes metrics.json.

  tf-cvae-train                                  # embedded text default
  tf-cvae-train --critic=self --critic_weight=3 --max_steps=600
  tf-cvae-train --preset=quickstart --critic=self
  tf-cvae-train --flagfile=flags/quickstart.cfg   # the same

Without --out_dir the run directory is runs/<dataset>_<model>_<critic>_seed
<seed>_<hash of the other flags>: the same command resumes the same run (an
existing run directory resumes from its last checkpoint). The first log line
names the run directory and the command that resumes it; before training the
run directory receives flags.cfg (--flagfile=RUN/flags.cfg rebuilds the same
config) and provenance.json (command, versions, devices, host, git state).
Every epoch is validated (out_dir/history.jsonl, out_dir/tensorboard); the
learning rate is halved after --lr_patience epochs without improvement and
training stops at the --max_lr_decays-th halving; the test metrics come from
the best checkpoint (out_dir/best). tf-cvae-evaluate evaluates a run
directory again. Training ends with the table of the test metrics and the
path of metrics.json (--json: metrics.json's content, for scripts).
"""

import json
import os
import sys

import tf_cvae_runners  # first: TensorFlow starts without its chatter
from tf_cvae_runners import common
from tf_cvae_runners import launch
from tf_cvae_runners import provenance

from absl import app
from absl import flags

common.define_train_flags()
flags.DEFINE_bool("json", False, "Print the results as JSON (metrics.json's "
                  "content and out_dir) instead of the table, for scripts.")


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  common.setup_logging()
  config = common.train_config_from_flags()
  results = common.run_or_explain(
      provenance.train_with_provenance, config, sys.argv,
      provenance.run_flagfile(config))
  if flags.FLAGS.json:
    print(json.dumps({"out_dir": config.out_dir, **results}, indent=2))
    return
  print(common.metrics_table(config.out_dir, results))
  print(f"metrics: {os.path.join(config.out_dir, 'metrics.json')}")


def main():
  """The tf-cvae-train command: reads the command line, then trains one run."""
  launch.run(_main)


if __name__ == "__main__":
  main()
