"""Trains one VAE (with or without a critic), evaluates it, writes metrics.json.

  python runners/train.py                          # embedded text default
  python runners/train.py --critic=self --critic_weight=3 --max_steps=600
  python runners/train.py --flagfile=flags/quickstart.cfg --critic=self

An existing --out_dir resumes from its last checkpoint. Every epoch is
validated (out_dir/history.jsonl, out_dir/tensorboard); the learning rate is
halved after --lr_patience epochs without improvement and training stops at
the --max_lr_decays-th halving; the test metrics come from the best checkpoint
(out_dir/best). runners/evaluate.py evaluates a run directory again.
"""

import json

from absl import app

from tf_cvae.cli import common
from tf_cvae.training import train

common.define_train_flags()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  common.setup_logging()
  config = common.train_config_from_flags()
  results = common.run_or_explain(train.run, config)
  print(json.dumps({"out_dir": config.out_dir, **results}, indent=2))


if __name__ == "__main__":
  app.run(main)
