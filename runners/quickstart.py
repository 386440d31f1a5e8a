"""The main job: a plain VAE, a critic VAE and BN-VAE on the same data.

  tf-cvae-quickstart --preset=quickstart

The runs share every flag except the critic (--critic=none for the plain
VAE) and BN-VAE's scale (gamma 0.7, no critic: on the synthetic text the
setting that kept the most information the decoder uses at the VAE's NLL,
chosen on validation; RESULTS.md). Each writes its own run directory under
--quickstart_dir (default ./runs/quickstart): none/, <critic>/ and bn_vae/,
each with its flags.cfg (the tf-cvae-train flags of that run) and
provenance.json.
"""

import dataclasses
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
                    "Parent of the run directories (none/, <critic>/, "
                    "bn_vae/).")
BN_GAMMA = 0.7


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  common.setup_logging()
  parent = flags.FLAGS.quickstart_dir
  critic = flags.FLAGS.critic if flags.FLAGS.critic != "none" else "self"
  started = time.time()
  rows = {}
  plain = common.train_config_from_flags(critic="none")
  bn_vae = dataclasses.replace(plain, model=dataclasses.replace(
      plain.model, bn_gamma=BN_GAMMA))
  runs = (("plain VAE", "none", plain, dict(critic="none")),
          (f"{critic} critic", critic,
           common.train_config_from_flags(critic=critic),
           dict(critic=critic)),
          (f"BN-VAE {BN_GAMMA:g}", "bn_vae", bn_vae,
           dict(critic="none", bn_gamma=BN_GAMMA)))
  for name, folder, config, values in runs:
    config = dataclasses.replace(config, out_dir=os.path.join(parent, folder))
    print(f"== training {name} -> {config.out_dir}", flush=True)
    rows[name] = common.run_or_explain(
        provenance.train_with_provenance, config, sys.argv,
        provenance.run_flagfile(config, **values))
  critic_name = runs[1][0]
  o = runs[1][2].objective
  held = (f"target {o.critic_target:g} nats by a {o.critic_constraint}, "
          f"lambda from {o.critic_weight:g}" if math.isfinite(
              o.critic_target) else f"lambda {o.critic_weight:g}, no target")
  if "critic_lambda" in rows[critic_name]:
    held += f" to {rows[critic_name]['critic_lambda']:.2f}"
  print(f"\n{flags.FLAGS.dataset}: test metrics (nats; mi capped at "
        f"log K = {rows[critic_name]['log_k']:.2f}; the critic's {held})")
  print(common.format_table(rows))
  print(f"total {time.time() - started:.0f} s; run directories under {parent}")


def main():
  """The tf-cvae-quickstart command: reads the command line, then
  trains the plain VAE, the critic VAE and BN-VAE."""
  launch.run(_main)


if __name__ == "__main__":
  main()
