"""RESULTS.md and its figures from a reproduction's records, in one call."""

import collections
import math
import os

from experiments.reproduction import families as families_lib
from experiments.reproduction import reproduction as repro
from experiments.reproduction import results_measure as measure
from experiments.reproduction import results_plots as plots
from experiments.reproduction import results_report as report
from experiments.reproduction import results_tradeoff as tradeoff
from tf_cvae import critics
from tf_cvae import data as data_lib


def write(scale_name: str, scale: repro.Scale, runs: list, records: dict,
          results_md: str, plots_dir: str, parts=repro.PARTS,
          command: str | None = None) -> dict:
  """Writes `results_md` and the PNGs under `plots_dir` for the `runs` of
  `parts` whose records exist (`command`: the one that regenerates it, for
  its header); returns the chosen critic defaults (see
  results_tradeoff.choose_defaults; empty without the sweep)."""
  rows = [(run, records.get(run.config.out_dir, {})) for run in runs]
  counts = collections.Counter()
  for out_dir in {run.config.out_dir for run in runs}:
    status = records.get(out_dir, {}).get("status")
    counts["failed" if status == "failed" else "finished"
           if records.get(out_dir, {}).get("metrics") else "missing"] += 1
  used = {run.setup for run in runs}
  lines = report.header(scale_name, {n: s for n, s in scale.setups.items()
                                     if n in used}, parts, counts, command)
  seeds = 1 + max([r.seed for r in runs if r.part == "table"], default=0)
  caps = [(m, n) for m, n in scale.method_seeds if m in scale.methods] + [
      (name, s.seeds) for name, s in scale.setups.items()
      if s.seeds and name in used]
  capped = ", ".join(f"{name} {n}" for name, n in caps if n < seeds)
  lines += [f"Table seeds: {seeds} per method" + (
      f" ({capped}: fewer, for their cost)" if capped else "")
            + f"; the sweep: {scale.sweep_seeds} per point; K: seed 0.",
            ""]
  png = lambda name: os.path.join(plots_dir, f"{name}.png")
  link = lambda path, alt: report.image(path, results_md, alt)
  choice = {}
  by_part = lambda part: [(r, rec) for r, rec in rows if r.part == part]

  def progress(part: str) -> str:
    dirs = {r.config.out_dir: rec for r, rec in by_part(part)}
    done = sum(bool(rec.get("metrics")) for rec in dirs.values())
    return "" if done == len(dirs) else (
        f" (incomplete: {done} of {len(dirs)} runs finished)")

  if "table" in parts:
    stats = report.aggregate(by_part("table"))
    lines += [f"## The paper's tables, re-measured{progress('table')}", ""]
    shown = [n for n in scale.table if n in used]
    lines += measure.caveats({n: scale.setups[n] for n in shown},
                             by_part("table"), scale.methods)
    for name in shown:
      log_k = math.log(scale.setups[name].batch_size)
      lines += report.table_section(name, scale.setups[name], stats,
                                    scale.methods, log_k)
      lines += measure.section(name, by_part("table"), stats, scale.methods)
      lines += [link(plots.mi_per_epoch(
                    name, rows, scale.methods, log_k,
                    png(f"{name}_mi_per_epoch")), f"{name}: MI per epoch"),
                link(plots.nll_vs_mi(name, stats, scale.methods,
                                     png(f"{name}_nll_vs_mi")),
                     f"{name}: NLL against MI"), ""]
  if "sweep" in parts:
    families = families_lib.sweep_families(scale)
    stats = report.aggregate(by_part("sweep"))
    swept = [n for n in scale.sweep if n in used]
    choice = tradeoff.choose_defaults(stats, families, swept, {
        n: data_lib.kind(scale.setups[n].dataset) for n in swept})
    title = {"lambda": "lambda and the baselines' knobs",
             "target": "the critics' targets in nats"}[scale.sweep_kind]
    done = {r.seed for r, rec in by_part("sweep") if rec.get("metrics")}
    seeds = ("One seed per point" if scale.sweep_seeds == 1 else
             f"Mean ± standard error over the seeds of a point (planned "
             f"{scale.sweep_seeds}; seeds with finished runs: "
             f"{', '.join(map(str, sorted(done))) or 'none'})")
    lines += [f"## The trade-off: {title}" + progress("sweep"), "",
              f"{seeds}. NLL vs VAE compares with the plain VAE trained "
              "for as long, on the test split; the defaults below are "
              "chosen on the validation split.", "",
              "### Chosen defaults", ""]
    lines += tradeoff.defaults_section(choice, stats)
    for name in [n for n in scale.sweep if n in used]:
      lines += [f"### {name}", "", link(plots.trade_off(
          name, stats, families, png(f"{name}_tradeoff")),
          f"{name}: NLL against MI for every knob"), ""]
      lines += tradeoff.sweep_section(name, stats, families)
      lines += tradeoff.target_section(name, stats, families)
  if "sweep" not in parts:
    lines += defaults_in_force()
  if "k" in parts and scale.k:
    families = families_lib.k_families(scale)
    stats = report.aggregate(by_part("k"))
    lines += [f"## MI against K{progress('k')}", "",
              "The InfoNCE bound c + log K can rise by at most log K; the "
              "self critic at lambda "
              f"{scale.k_lambda:g}, no target, one seed.", ""]
    for name in [n for n in scale.k if n in used]:
      batch = scale.setups[name].batch_size
      lines += [f"### {name}", "", link(plots.mi_vs_k(
          name, stats, families, batch, png(f"{name}_mi_vs_k")),
          f"{name}: MI against K"), ""]
      lines += tradeoff.k_section(name, stats, families, batch)
  failed = sorted(d for d, r in records.items() if r.get("status") == "failed")
  if failed:
    lines += ["## Failed runs", ""] + [
        f"- {d}: {records[d].get('error', '')}" for d in failed] + [""]
  os.makedirs(os.path.dirname(os.path.abspath(results_md)), exist_ok=True)
  with open(results_md, "w", encoding="utf-8") as f:
    f.write("\n".join(lines).rstrip() + "\n")
  return choice


def defaults_in_force() -> list[str]:
  """The critics' defaults the library applies, for a report without the
  sweep that chooses them."""
  lines = ["## The critics' defaults", "",
           "This report holds no sweep, so it chooses no default. The "
           "library's defaults (tf_cvae/critics.py, DEFAULTS) follow; a "
           "target is held by the Lagrange multiplier, lambda starting at "
           "the value given. Unless a report of the target sweep (`--scale="
           "cpu`) chose them on validation data, treat them as "
           "provisional.", ""]
  for kind, by_critic in critics.DEFAULTS.items():
    for critic, (weight, target) in by_critic.items():
      if critic == "none":
        continue
      held = None if target == critics.NO_TARGET else target
      lines.append(f"- **{critic} on {kind} data: "
                   f"{tradeoff.describe_setting(weight, held, 'lagrangian')}"
                   "**")
  return lines + [""]
