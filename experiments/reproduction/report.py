"""RESULTS.md and its figures from a reproduction's records, in one call.

The prose is RESULTS.template.md beside this file: named blocks whose
${placeholders} this module fills with generated tables, figures and
numbers (see stats.py for the numbers and the rules that read them). Only
the paper's reference rows (stats.PAPER) and two sections are not
generated: the comparison at matched MI, written by hand in its own file,
and a frozen record of the earlier protocol.
"""

import collections
import datetime
import math
import os
import re
import string

from experiments.reproduction import families as families_lib
from experiments.reproduction import figures
from experiments.reproduction import reproduction as repro
from experiments.reproduction import stats as stats_lib
from tf_cvae import critics
from tf_cvae import data as data_lib

cell = stats_lib.cell
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "RESULTS.template.md")
# The hand-written section "Every method at matched MI".
MATCHED_MI = os.path.join(_REPO, "results", "matched_mi", "SECTION.md")
MEASUREMENT = os.path.join(_REPO, "results", "measurement", "RESULTS.md")


def blocks(path: str = TEMPLATE) -> dict:
  """name -> text of each "<!-- name -->" block of the template (newlines
  at its ends dropped; spaces kept, so a phrase may start with one)."""
  with open(path, encoding="utf-8") as f:
    parts = re.split(r"^<!-- (\w+) -->\n", f.read(), flags=re.MULTILINE)
  return {name: text.strip("\n") for name, text in zip(parts[1::2],
                                                       parts[2::2])}


_BLOCKS = blocks()


def fill(name: str, **values) -> str:
  """Block `name` with its placeholders filled; a list fills a line of its
  own with one line an item (an empty list drops that line). Raises
  KeyError for a placeholder without a value."""
  text = _BLOCKS[name]
  for key, value in values.items():
    if isinstance(value, list):
      if not value:
        text = "\n".join(line for line in text.split("\n")
                         if line != f"${{{key}}}")
      values[key] = "\n".join(value)
  return string.Template(text).substitute(values)


def lines(name: str, **values) -> list[str]:
  """fill() as a list of lines."""
  return fill(name, **values).split("\n")


def write(scale_name: str, scale: repro.Scale, runs: list, records: dict,
          results_md: str, plots_dir: str, parts=repro.PARTS,
          command: str | None = None, matched_mi: str | None = None,
          frozen: bool = False) -> dict:
  """Writes `results_md` and the PNGs under `plots_dir` for the `runs` of
  `parts` whose records exist (`command`: the one that regenerates it, for
  its header; `matched_mi`: a hand-written section to keep, if the file
  exists; `frozen`: add the earlier protocol's frozen record); returns the
  chosen critic defaults (stats.choose_defaults; empty without the
  sweep)."""
  text, choice = render(scale_name, scale, runs, records, results_md,
                        plots_dir, parts, command, matched_mi, frozen)
  os.makedirs(os.path.dirname(os.path.abspath(results_md)), exist_ok=True)
  with open(results_md, "w", encoding="utf-8") as f:
    f.write(text)
  return choice


def render(scale_name, scale, runs, records, results_md, plots_dir,
           parts=repro.PARTS, command=None, matched_mi=None,
           frozen=False) -> tuple[str, dict]:
  """The text of RESULTS.md (figures drawn) and the chosen defaults."""
  rows = [(run, records.get(run.config.out_dir, {})) for run in runs]
  counts = collections.Counter()
  for out_dir in {run.config.out_dir for run in runs}:
    status = records.get(out_dir, {}).get("status")
    counts["failed" if status == "failed" else "finished"
           if records.get(out_dir, {}).get("metrics") else "missing"] += 1
  used = {run.setup for run in runs}
  out = _header(scale_name, scale, runs, used, parts, counts, command) + [""]
  if matched_mi and os.path.exists(matched_mi):
    with open(matched_mi, encoding="utf-8") as f:
      out += [f.read().strip("\n"), ""]
  png = lambda name: os.path.join(plots_dir, f"{name}.png")
  link = lambda path: os.path.relpath(path, os.path.dirname(
      os.path.abspath(results_md)))
  choice = {}
  by_part = lambda part: [(r, rec) for r, rec in rows if r.part == part]

  def progress(part: str) -> str:
    dirs = {r.config.out_dir: rec for r, rec in by_part(part)}
    done = sum(bool(rec.get("metrics")) for rec in dirs.values())
    return "" if done == len(dirs) else fill("incomplete", done=done,
                                             planned=len(dirs))

  if "table" in parts:
    stats = stats_lib.aggregate(by_part("table"))
    shown = [n for n in scale.table if n in used]
    out += lines("table_part", progress=progress("table"), **caveats(
        {n: scale.setups[n] for n in shown}, by_part("table"),
        scale.methods)) + [""]
    for name in shown:
      log_k = math.log(scale.setups[name].batch_size)
      out += table_section(name, scale.setups[name], stats, scale.methods, log_k)
      out += worth_section(name, by_part("table"), stats, scale.methods)
      out += lines("table_figures", setup=name, mi_per_epoch=link(
          figures.mi_per_epoch(name, rows, scale.methods, log_k,
                               png(f"{name}_mi_per_epoch"))),
                   nll_vs_mi=link(figures.nll_vs_mi(
                       name, stats, scale.methods,
                       png(f"{name}_nll_vs_mi")))) + [""]
  if "sweep" in parts:
    families = families_lib.sweep_families(scale)
    stats = stats_lib.aggregate(by_part("sweep"))
    swept = [n for n in scale.sweep if n in used]
    choice = stats_lib.choose_defaults(stats, families, swept, {
        n: data_lib.kind(scale.setups[n].dataset) for n in swept})
    done = {r.seed for r, rec in by_part("sweep") if rec.get("metrics")}
    seeds = (fill("one_seed_a_point") if scale.sweep_seeds == 1 else
             fill("seeds_a_point", planned=scale.sweep_seeds,
                  done=", ".join(map(str, sorted(done)))
                  or fill("no_seeds")))
    out += lines("sweep_part", title=fill(f"title_{scale.sweep_kind}"),
                 progress=progress("sweep"), seeds=seeds) + [""]
    out += defaults_section(choice, stats)
    for name in swept:
      out += sweep_section(name, stats, families, link(figures.trade_off(
          name, stats, families, png(f"{name}_tradeoff"))))
      out += _targets(name, stats, families)
  if "sweep" not in parts:
    out += _defaults_in_force()
  if "k" in parts and scale.k:
    families = families_lib.k_families(scale)
    stats = stats_lib.aggregate(by_part("k"))
    out += lines("k_part", progress=progress("k"),
                 k_lambda=f"{scale.k_lambda:g}") + [""]
    for name in [n for n in scale.k if n in used]:
      batch = scale.setups[name].batch_size
      out += _k(name, stats, families, batch, link(figures.mi_vs_k(
          name, stats, families, batch, png(f"{name}_mi_vs_k"))))
  if frozen:
    out += lines("earlier_protocol", measurement=link(MEASUREMENT)) + [""]
  failed = sorted(d for d, r in records.items() if r.get("status") == "failed")
  if failed:
    out += lines("failed_runs", runs=[
        f"- {d}: {records[d].get('error', '')}" for d in failed]) + [""]
  return "\n".join(out).rstrip() + "\n", choice


def _header(scale_name, scale, runs, used, parts, counts, command):
  """Title, provenance (`command`, default the plain one of the scale),
  the setups' sizes and the seeds."""
  setups = []
  for name, s in scale.setups.items():
    if name not in used:
      continue
    model = ", ".join(f"{k} {v}" for k, v in s.model.items())
    steps = s.max_steps or fill("epochs", epochs=s.epochs)
    examples = s.eval.get("max_examples") or fill("all_examples")
    data = fill("ptb_data") if s.dataset == "ptb" else s.dataset
    setups.append(f"| {name} | {data} | {model} | {s.batch_size} | "
                  f"{steps} | {examples} x {s.eval.get('iw_samples')} |")
  seeds = 1 + max([r.seed for r in runs if r.part == "table"], default=0)
  caps = [(m, n) for m, n in scale.method_seeds if m in scale.methods] + [
      (name, s.seeds) for name, s in scale.setups.items()
      if s.seeds and name in used]
  capped = ", ".join(f"{name} {n}" for name, n in caps if n < seeds)
  return lines(
      "header", command=command or (f"python experiments/reproduce.py "
                                    f"--scale={scale_name}"),
      stamp=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
      parts=", ".join(parts), finished=counts.get("finished", 0),
      failed=counts.get("failed", 0), missing=counts.get("missing", 0),
      setups=setups, seeds=seeds, sweep_seeds=scale.sweep_seeds,
      capped=capped and fill("seeds_capped", names=capped))


def caveats(setups: dict, rows: list, methods) -> dict:
  """The table's caveats: how its runs ended (the learning-rate rule or the
  cap; `rows` are (Run, record) pairs) and at which critic settings."""
  caps = ", ".join(
      fill("cap_steps", setup=name, steps=s.max_steps) if s.max_steps else
      fill("cap_epochs", setup=name, epochs=s.epochs)
      for name, s in setups.items())
  finished = [(run, rec) for run, rec in rows if rec.get("metrics")]
  by_rule = sum(stats_lib.stopped_by_rule(run, rec) for run, rec in finished)
  ended = (fill("ended_by_rule", caps=caps)
           if finished and by_rule == len(finished) else
           fill("ended_at_cap", caps=caps, by_rule=by_rule,
                finished=len(finished)))
  settings = ("settings_defaults" if any(m.endswith("_default")
                                         for m in methods)
              else "settings_fixed")
  return {"ended": ended, "settings": fill(settings)}


def _nll_vs_vae(s: dict, vae: dict) -> str:
  """NLL change against the VAE in percent, ± its standard error."""
  if "nll" not in s or "nll" not in vae:
    return "-"
  (a, sa, na), (b, sb, nb) = s["nll"], vae["nll"]
  se = 100.0 * math.hypot(sa / math.sqrt(na), sb / math.sqrt(nb)) / b
  return f"{stats_lib.rel(a, b):+.2f} ± {se:.2f}%" if max(na, nb) > 1 else (
      f"{stats_lib.rel(a, b):+.2f}%")


def table_section(name, setup, stats, methods, log_k) -> list[str]:
  """The table of one setup, its paper rows and the generated reading."""
  paper = stats_lib.PAPER.get(setup.paper or "", {})
  vae = stats.get((name, "vae", None), {})
  rows = []
  for method in methods:
    s = stats.get((name, method, None), {})
    if not s:
      why = fill("not_run_here" if method in setup.skip else "not_run_yet")
      rows.append(f"| {method} | 0 | {why} |" + " |" * 10)
      continue
    step = (f"{s['seconds_per_step'][0] / vae['seconds_per_step'][0]:.2f}x"
            if "seconds_per_step" in s and "seconds_per_step" in vae else "-")
    ref = paper.get(stats_lib.paper_method(method))
    ref_cells = ("-", "-") if not ref else (
        " / ".join(f"{v:g}" for v in ref),
        f"{stats_lib.rel(ref[0], paper['vae'][0]):+.2f}%")
    rows.append(
        f"| {method} | {s['nll'][2] if 'nll' in s else 0} | "
        f"{cell(s.get('nll'))} | {_nll_vs_vae(s, vae)} | "
        f"{cell(s.get('kl'))} | {cell(s.get('mi'))} | "
        f"{cell(s.get('mi_full'))} | {cell(s.get('au'), 1)} | "
        f"{cell(s.get('infonce_bound'))} | {cell(s.get('wall'), 0)} | "
        f"{step} | {ref_cells[0]} | {ref_cells[1]} |")
  return (lines("setup_table", setup=name, log_k=f"{log_k:.2f}",
                paper=setup.paper or fill("no_paper"), rows=rows) + [""]
          + reading(name, stats, methods, paper, log_k) + [""])


def _against_paper(s, vae, ref, paper_vae) -> str:
  """Our MI gain and NLL change over the VAE against the paper's: the paper
  agrees only where its value lies inside our seeds' interval (mean ± 2
  s.e.)."""
  se = lambda stat: stat[1] / math.sqrt(stat[2])
  n = min(s["mi"][2], vae["mi"][2], s["nll"][2], vae["nll"][2])
  ours_gain = s["mi"][0] - vae["mi"][0]
  ours_rel = stats_lib.rel(s["nll"][0], vae["nll"][0])
  gain_band = stats_lib.interval(ours_gain, (se(s["mi"]), se(vae["mi"])), n)
  rel_band = stats_lib.interval(
      ours_rel, (100 * se(s["nll"]) / vae["nll"][0],
                 100 * se(vae["nll"]) / vae["nll"][0]), n)
  p_gain, p_rel = ref[2] - paper_vae[2], stats_lib.rel(ref[0], paper_vae[0])
  words = fill("paper_words", gain=f"{p_gain:+.2f}", rel=f"{p_rel:+.2f}")
  if gain_band is None:
    return fill("paper_one_seed", words=words)
  inside = [(what, lo <= value <= hi) for what, value, (lo, hi) in (
      ("MI", p_gain, gain_band), ("NLL", p_rel, rel_band))]
  bands = fill("paper_bands", lo=f"{gain_band[0]:+.2f}",
               hi=f"{gain_band[1]:+.2f}", nll_lo=f"{rel_band[0]:+.2f}",
               nll_hi=f"{rel_band[1]:+.2f}")
  if all(ok for _, ok in inside):
    return fill("paper_agrees", words=words, bands=bands)
  return fill("paper_differs", words=words, bands=bands, what=" and ".join(
      what for what, ok in inside if not ok))


def reading(name, stats, methods, paper, log_k) -> list[str]:
  """Where we agree with the paper and where not, in words, from numbers."""
  vae = stats.get((name, "vae", None), {})
  if "mi" not in vae or "nll" not in vae:
    return [fill("reading_no_vae")]
  collapsed, capped = vae["mi"][0] < 0.5, vae["mi"][0] > 0.75 * log_k
  out = [fill("reading", state=fill("collapses" if collapsed
                                    else "does_not_collapse"),
              kl=f"{vae['kl'][0]:.2f}", mi=f"{vae['mi'][0]:.2f}",
              capped=capped and fill("reading_capped",
                                     share=f"{vae['mi'][0] / log_k:.0%}")
              or "")]
  for method in methods:
    s = stats.get((name, method, None), {})
    if method == "vae" or "mi" not in s or "nll" not in s:
      continue
    rel = stats_lib.rel(s["nll"][0], vae["nll"][0])
    ours = (fill("gain", gain=f"{s['mi'][0] - vae['mi'][0]:.2f}")
            if stats_lib.gain(s, vae) else fill("no_gain"))
    nll = (fill("nll_within", rel=f"{rel:+.2f}%")
           if abs(rel) <= 100 * stats_lib.NLL_TOLERANCE else f"{rel:+.2f}%")
    ref = paper.get(stats_lib.paper_method(method))
    against = _against_paper(s, vae, ref, paper["vae"]) if ref else ""
    time, vae_time = s.get("train_seconds"), vae.get("train_seconds")
    paper_time = stats_lib.PAPER_STEP_TIME.get(
        stats_lib.paper_method(method))
    took = ""
    if paper_time and time and vae_time:
      epochs = s.get("epochs"), vae.get("epochs")
      took = fill("training_time", ratio=f"{time[0] / vae_time[0]:.1f}",
                  paper=paper_time, epochs=fill(
                      "epochs_pair", ours=f"{epochs[0][0]:.0f}",
                      vae=f"{epochs[1][0]:.0f}") if all(epochs) else "")
    out.append(fill("reading_method", method=method, ours=ours, nll=nll,
                    paper=against, time=took))
  return out


def worth_section(name: str, rows: list, stats: dict, methods) -> list[str]:
  """What the readings of setup `name` are worth: the noise floor, the
  controls, the probes and the IW-NLL's convergence (rows: its (run,
  record) pairs)."""
  by_method = {}
  for run, record in rows:
    if run.part == "table" and run.setup == name:
      by_method.setdefault(run.family, []).append(record)
  vae = stats.get((name, "vae", None), {})
  if "mi_noise_std" not in vae:
    return []
  mean = lambda key: vae[key][0]
  out = lines("worth", setup=name, std=f"{mean('mi_noise_std'):.3f}",
              hi=f"{mean('mi_noise_hi'):.3f}",
              n=f"{mean('num_examples'):.0f}")
  if "length_only_mi" in vae:
    per_batch = mean("length_only_mi")
    out += lines("length_only", batch=f"{per_batch:.2f}",
                 full=f"{mean('length_only_mi_full'):.2f}", where=fill(
                     "one_length" if per_batch < 1e-9 else "mixed_lengths"))
  if "log_k" in vae:
    out += lines("batch_size", size=f"{mean('mean_batch_size'):.1f}",
                 log_k=f"{mean('log_k'):.2f}")
  header = fill("worth_columns")
  has_probe, beyond = "probe_r2" in vae, "probe_r2_length" in vae
  labels = [k[len("probe_acc_z_"):] for k in stats_lib.METRICS
            if k.startswith("probe_acc_z_") and k in vae]
  header += (fill("probe_columns") if has_probe else "") + (
      fill("beyond_columns") if beyond else "") + "".join(
          fill("label_columns", label=label) for label in labels)
  out += ["", header, "|" + "---|" * (header.count("|") - 1)]
  for method in methods:
    s = stats.get((name, method, None), {})
    if not s:
      continue
    records = by_method.get(method, [])
    row = (f"| {method} | {s['mi'][2]} | "
           f"{stats_lib.takes_effect(records)} | "
           f"{stats_lib.settles(records) or '—'} | {cell(s.get('mi'))} "
           f"| {cell(s.get('mi_full'))} | {cell(s.get('au'), 1)} | "
           f"{cell(s.get('z_reliance'))} |")
    if has_probe:
      row += f" {cell(s.get('probe_r2'))} | {cell(s.get('probe_r2_z'))} |"
    if beyond:
      row += f" {cell(s.get('probe_r2_z_beyond_length'))} |"
    for label in labels:
      row += (f" {cell(s.get(f'probe_acc_{label}'))} | "
              f"{cell(s.get(f'probe_acc_z_{label}'))} |")
    out.append(row)
  out += ["", fill("worth_notes", epochs=stats_lib.SETTLE_EPOCHS,
                   swing=f"{stats_lib.SETTLE_SWING:g}"), ""]
  if beyond:
    out += [fill("beyond_note", r2=cell(vae.get("probe_r2_length"))), ""]
  for label in labels:
    out += [fill("label_note", label=label, majority=cell(vae.get(
        f"probe_acc_{label}_majority")), chance=cell(vae.get(
            f"probe_acc_{label}_chance"), 3)), ""]
  convergence = []
  for method in methods:
    found = [r["iw_convergence"] for r in by_method.get(method, [])
             if r.get("iw_convergence")]
    if found:
      c = found[0]
      convergence.append(
          f"| {method} | {c['num_examples']} | {c['nll_iw20']:.3f} | "
          f"{c['nll_iw100']:.3f} | {c['nll_iw500']:.3f} | "
          f"{c['nll_iw500'] - c['nll_iw20']:+.3f} | "
          f"{c['nll_iw500'] - c['nll_iw100']:+.3f} |")
  if convergence:
    out += lines("iw_convergence", rows=convergence) + [""]
  return out


def defaults_section(choice: dict, stats: dict) -> list[str]:
  """The chosen defaults in words (see stats.choose_defaults)."""
  tolerance = f"{100 * stats_lib.NLL_TOLERANCE:g}%"
  nll, mi = stats_lib.CHOOSE_NLL, stats_lib.CHOOSE_MI
  out = [fill("defaults_rule", tolerance=tolerance), ""]
  for critic, c in choice.items():
    for setup, pick in c["per_setup"].items():
      vae = stats.get((setup, "vae", None), {})
      if pick is None or mi not in vae:
        out.append(fill("setup_no_default", critic=critic, setup=setup,
                        tolerance=tolerance))
        continue
      key, s = pick
      weak = s[mi][0] - vae[mi][0] <= stats_lib.MI_GAIN
      out.append(fill(
          "setup_default", critic=critic, setup=setup,
          setting=stats_lib.describe_setting(*key), mi=f"{s[mi][0]:.2f}",
          vae=f"{vae[mi][0]:.2f}",
          rel=f"{stats_lib.rel(s[nll][0], vae[nll][0]):+.2f}%",
          weak=fill("weak") if weak else ""))
    for kind, overall in c["overall"].items():
      gain = c["gain"][kind]
      if overall is None:
        out.append(fill("kind_no_setting", critic=critic, kind=kind))
      elif gain <= stats_lib.MI_GAIN:
        out.append(fill("kind_weak", critic=critic, kind=kind,
                        setting=stats_lib.describe_setting(*overall),
                        gain=f"{gain:.2f}"))
      else:
        out.append(fill("kind_default", critic=critic, kind=kind,
                        setting=stats_lib.describe_setting(*overall),
                        gain=f"{gain:+.2f}"))
  return out + [""]


def _defaults_in_force() -> list[str]:
  """The critics' defaults the library applies, for a report without the
  sweep that chooses them."""
  out = lines("defaults_in_force") + [""]
  for kind, by_critic in critics.DEFAULTS.items():
    for critic, (weight, target) in by_critic.items():
      if critic == "none":
        continue
      held = None if target == critics.NO_TARGET else target
      out.append(fill("default_in_force", critic=critic, kind=kind,
                      setting=stats_lib.describe_setting(
                          weight, held, "lagrangian")))
  return out + [""]


def sweep_section(setup: str, stats: dict, families: list,
                  png: str) -> list[str]:
  """Every sweep point of a setup, then each family's summary in words."""
  rows, summary = [], []
  for family in families:
    vae = stats_lib.vae_of(stats, setup, families, family)
    found = stats_lib.points(stats, setup, family.label)
    for knob, s in found:
      rel = (f"{stats_lib.rel(s['nll'][0], vae['nll'][0]):+.2f}%"
             if "nll" in vae else "-")
      rows.append(
          f"| {family.label} | {'-' if knob is None else f'{knob:g}'} | "
          f"{cell(s.get('nll'))} | {rel} | " + " | ".join(
              cell(s.get(m), 1 if m == "au" else 2)
              for m in ("kl", "mi", "mi_full", "au", "infonce_bound"))
          + " |")
    if family.knob and found and "nll" in vae:
      summary.append(_summary(family, found, vae))
  return (lines("sweep_setup", setup=setup, png=png, rows=rows) + [""]
          + summary + [""])


def _summary(family, found, vae) -> str:
  """Where MI first rises by CLIFF_GAIN, and the most MI within 1% NLL."""
  rel = lambda s: stats_lib.rel(s["nll"][0], vae["nll"][0])
  gain = f"{stats_lib.CLIFF_GAIN:g}"
  tolerance = f"{100 * stats_lib.NLL_TOLERANCE:g}%"
  cliff = next(((k, s) for k, s in found
                if s["mi"][0] - vae["mi"][0] >= stats_lib.CLIFF_GAIN), None)
  within = [(k, s) for k, s in found
            if rel(s) <= 100 * stats_lib.NLL_TOLERANCE]
  if cliff:
    rises = fill("cliff", gain=gain, knob=f"{cliff[0]:g}",
                 mi=f"{cliff[1]['mi'][0]:.2f}", rel=f"{rel(cliff[1]):+.2f}%")
  else:
    rises = fill("no_cliff", gain=gain, vae=f"{vae['mi'][0]:.2f}",
                 best=f"{max(s['mi'][0] for _, s in found):.2f}")
  if within:
    k, s = max(within, key=lambda p: p[1]["mi"][0])
    most = fill("most_within", tolerance=tolerance, mi=f"{s['mi'][0]:.2f}",
                knob=f"{k:g}", rel=f"{rel(s):+.2f}%")
  else:
    most = fill("none_within", tolerance=tolerance)
  return fill("summary", label=family.label, knob=family.knob, cliff=rises,
              within=most)


def _targets(setup: str, stats: dict, families: list) -> list[str]:
  """Target asked for against the InfoNCE bound achieved (test and
  validation splits, last weights), lambda where the multiplier ended, and
  the NLL against the plain VAE's."""
  rows, held = [], 0
  for family in families:
    if family.knob != "critic_target":
      continue
    vae = stats_lib.vae_of(stats, setup, families, family)
    for knob, s in stats_lib.points(stats, setup, family.label):
      bound = s.get("infonce_bound")
      within = bound is not None and abs(
          bound[0] - knob) <= stats_lib.TARGET_TOLERANCE
      held += within
      rel = (f"{stats_lib.rel(s['nll'][0], vae['nll'][0]):+.2f}%"
             if "nll" in vae else "-")
      answer = fill("yes" if within else "no")
      rows.append(
          f"| {family.method} | {knob:g} | {cell(bound)} | "
          f"{cell(s.get('valid:infonce_bound'))} | {answer} | "
          f"{cell(s.get('critic_lambda'))} | {cell(s.get('mi'))} | "
          f"{cell(s.get('au'), 1)} | {rel} |")
  if not rows:
    return []
  return lines("targets", tolerance=f"{stats_lib.TARGET_TOLERANCE:g}",
               rows=rows, held=held, total=len(rows)) + [""]


def _k(setup: str, stats: dict, families: list, batch_size: int,
       png: str) -> list[str]:
  """MI, MI full and the InfoNCE bound against K, beside log K."""
  rows = []
  for family in families:
    for knob, s in stats_lib.points(stats, setup, family.label):
      k = stats_lib.k_value(family, knob, batch_size)
      rows.append(f"| {family.label} | {k} | {math.log(k):.2f} | " + " | ".join(
          cell(s.get(m)) for m in ("mi", "mi_full", "infonce_bound", "nll"))
                  + " |")
  return lines("k_setup", setup=setup, png=png, rows=rows) + [""]
