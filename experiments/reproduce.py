"""The reproduction in one command: trains what is not yet trained, then
writes RESULTS.md and its figures.

  python experiments/reproduce.py --scale=cpu --dry_run  # the plan and its time
  python experiments/reproduce.py --scale=cpu            # table, sweep and K
  python experiments/reproduce.py --only=table --seeds=1
  python experiments/reproduce.py --methods=vae,self_default,hybrid_default --dry_run
  python experiments/reproduce.py --scale=cpu --report_only  # what has finished

Runs live under --out_dir (default runs/reproduce/<scale>), one directory a
run; a finished one is read, an interrupted one resumes. RESULTS.md and the
PNGs are rewritten after each part from whatever has finished.
"""

import dataclasses
import os
import sys

# experiments/ is a folder of the repository, not of the installed package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tf_cvae_runners  # noqa: E402, I001  first: TensorFlow starts quietly
from tf_cvae_runners import common  # noqa: E402
from tf_cvae_runners import launch  # noqa: E402

from absl import app
from absl import flags

from tf_cvae import data as data_lib
from experiments.reproduction import cost
from experiments.reproduction import reproduction as repro
try:      # its figures need matplotlib, an extra: tf_cvae[plots]
  from experiments.reproduction import report
except ModuleNotFoundError as missing:
  if missing.name != "matplotlib":
    raise
  report = None
from experiments.reproduction import scales
from experiments.reproduction import stats

flags.DEFINE_enum("scale", "cpu", list(scales.SCALES), "cpu: runs that "
                  "converge on 2 CPU cores (its report keeps the hand-written "
                  "matched-MI section and the earlier protocol's frozen "
                  "record); paper: the paper's networks and protocol (a "
                  "GPU); smoke: the cpu grid for a few steps.")
flags.DEFINE_list("only", list(repro.PARTS), "Parts to run: table (the "
                  "paper's methods), sweep (lambda and the baselines' knobs), "
                  "k (MI against K).")
flags.DEFINE_list("setups", None, "Setups to run (default: all of the "
                  "scale's, e.g. ptb,synthetic_text); the report covers "
                  "only these.")
flags.DEFINE_list("methods", None, "Table methods to run (default: all of "
                  "the scale's, e.g. vae,self_default,hybrid_default: the "
                  "core rows); the sweep and k parts are not filtered.")
flags.DEFINE_integer("seeds", None, "Seeds of the table part (default: the "
                     "scale's, 3 on cpu); sweep and k use seed 0.",
                     lower_bound=1)
flags.DEFINE_string("out_dir", None, "Parent of the run directories "
                    "(default runs/reproduce/<scale>).")
flags.DEFINE_string("data_dir", None, "Real data (default $TF_CVAE_DATA, "
                    "else ../shared/data).")
flags.DEFINE_string("results_md", "RESULTS.md", "The report to write.")
flags.DEFINE_string("plots_dir", "results", "Folder of the PNG figures.")
flags.DEFINE_boolean("dry_run", False, "Print the plan and its estimated "
                     "time (step times measured here, cached in "
                     "out_dir/calibration.json); train nothing.")
flags.DEFINE_boolean("recalibrate", False, "--dry_run: measure again.")
flags.DEFINE_boolean("report_only", False, "Write RESULTS.md and the plots "
                     "from the runs already finished; train nothing (the "
                     "report marks the parts left incomplete).")
FLAGS = flags.FLAGS


def _command() -> str:
  """The command that regenerates this report: the scale and every flag
  that changes what it covers or where it goes."""
  words = ["python experiments/reproduce.py", f"--scale={FLAGS.scale}"]
  if set(FLAGS.only) != set(repro.PARTS):
    words.append(f"--only={','.join(FLAGS.only)}")
  for name in ("setups", "methods", "seeds", "out_dir", "results_md", "plots_dir"):
    value = FLAGS[name].value
    if FLAGS[name].present and value:
      words.append(f"--{name}=" + (",".join(value) if isinstance(value, list)
                                   else str(value)))
  return " ".join(words)


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  unknown = sorted(set(FLAGS.only) - set(repro.PARTS))
  if unknown or not FLAGS.only:
    raise app.UsageError(f"--only: unknown {unknown}; known {repro.PARTS}")
  if report is None and not FLAGS.dry_run:
    print('error: experiments/reproduce.py draws its figures with matplotlib: '
          'pip install "tf_cvae[plots]"', file=sys.stderr)
    sys.exit(2)
  common.setup_logging()
  scale = scales.SCALES[FLAGS.scale]
  if FLAGS.methods:
    unknown = sorted(set(FLAGS.methods) - set(scale.methods))
    if unknown:
      raise app.UsageError(f"--methods: unknown {unknown}; --scale="
                           f"{FLAGS.scale} has {list(scale.methods)}")
    scale = dataclasses.replace(scale, methods=tuple(
        m for m in scale.methods if m in FLAGS.methods))
  parts = [p for p in repro.PARTS if p in FLAGS.only]
  out_dir = FLAGS.out_dir or os.path.join("runs", "reproduce", FLAGS.scale)
  data_dir = FLAGS.data_dir or data_lib.default_data_dir()
  runs = repro.plan(scale, parts, FLAGS.seeds, data_dir, out_dir)
  if FLAGS.setups:
    unknown = sorted(set(FLAGS.setups) - set(scale.setups))
    if unknown:
      raise app.UsageError(f"--setups: unknown {unknown}; --scale="
                           f"{FLAGS.scale} has {sorted(scale.setups)}")
    runs = [r for r in runs if r.setup in FLAGS.setups]
  records = common.run_or_explain(repro.execute, runs, True,
                                  context="--out_dir")
  if FLAGS.dry_run:
    path = os.path.join(out_dir, "calibration.json")
    if FLAGS.recalibrate and os.path.exists(path):
      os.remove(path)
    calibration = common.run_or_explain(cost.calibrate, scale, runs,
                                        data_dir, path, context="--data_dir")
    print("\n".join(cost.describe(scale, runs, calibration, records)))
    print(f"load average now {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores (times grow with it)")
    return
  # The repository's RESULTS.md (the cpu scale) keeps what is not generated.
  kept = dict(matched_mi=report.MATCHED_MI, frozen=True) if (
      FLAGS.scale == "cpu") else {}
  write = lambda: report.write(FLAGS.scale, scale, runs, records,
                               FLAGS.results_md, FLAGS.plots_dir, parts,
                               _command(), **kept)
  for part in [] if FLAGS.report_only else parts:
    records.update(common.run_or_explain(
        repro.execute, [r for r in runs if r.part == part],
        context="reproduce"))
    if part != parts[-1]:     # the report so far; the last is written below
      write()
  choice = write()
  for critic, picked in choice.items():
    for kind, chosen in picked["overall"].items():
      print(f"{critic} critic on {kind} data: " + (
          "no default from this evidence" if chosen is None else
          f"{stats.describe_setting(*chosen)}, validation MI "
          f"{picked['gain'][kind]:+.2f} nats over the VAE")
          + f" (see {FLAGS.results_md})")
  failed = [d for d, r in records.items() if r.get("status") == "failed"]
  print(f"wrote {FLAGS.results_md} and {FLAGS.plots_dir}/; "
        f"{len(failed)} failed runs")
  sys.exit(1 if failed else 0)


def main():
  """Reads the command line, then runs the reproduction."""
  launch.run(_main)


if __name__ == "__main__":
  main()
