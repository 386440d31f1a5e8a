"""The main job: a plain VAE and a critic VAE on the same data, side by side.

  tf-cvae-quickstart --preset=quickstart

Both runs share every flag except the critic; the plain run uses --critic=none.
Each writes its own run directory under --quickstart_dir (default
./runs/quickstart): none/ and <critic>/, each with its flags.cfg (the
tf-cvae-train flags of that run) and provenance.json.
"""

import math
import os
import sys
import time

import tf_cvae_runners  # first: TensorFlow starts without its chatter
from tf_cvae_runners import common
from tf_cvae_runners import launch
from tf_cvae_runners import provenance

from absl import app
from absl import flags

common.define_train_flags()
flags.DEFINE_string("quickstart_dir", "runs/quickstart",
                    "Parent of the two run directories (plain/ and critic/).")


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  common.setup_logging()
  parent = flags.FLAGS.quickstart_dir
  critic = flags.FLAGS.critic if flags.FLAGS.critic != "none" else "self"
  started = time.time()
  rows = {}
  for name, critic_name in (("plain VAE", "none"),
                            (f"{critic} critic", critic)):
    config = common.train_config_from_flags(
        critic=critic_name, out_dir=os.path.join(parent, critic_name))
    print(f"== training {name} -> {config.out_dir}", flush=True)
    rows[name] = common.run_or_explain(
        provenance.train_with_provenance, config, sys.argv,
        provenance.run_flagfile(config, critic=critic_name))
  o = config.objective
  held = (f"target {o.critic_target:g} nats by a {o.critic_constraint}, "
          f"lambda from {o.critic_weight:g}" if math.isfinite(
              o.critic_target) else f"lambda {o.critic_weight:g}, no target")
  if "critic_lambda" in rows[name]:
    held += f" to {rows[name]['critic_lambda']:.2f}"
  print(f"\n{flags.FLAGS.dataset}: test metrics (nats; mi capped at "
        f"log K = {rows[name]['log_k']:.2f}; {held})")
  print(common.format_table(rows))
  print(f"total {time.time() - started:.0f} s; run directories under {parent}")


def main():
  """The tf-cvae-quickstart command: reads the command line, then
  trains the plain and the critic VAE."""
  launch.run(_main)


if __name__ == "__main__":
  main()
