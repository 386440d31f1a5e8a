"""RESULTS.md from the records of a reproduction (see reproduction.execute).

Tables give mean ± standard error over seeds (the seeds' std, ddof 1, over
sqrt(n); NLL, KL, MI in nats per example) beside the paper's numbers; the readings in plain words are
generated from the same numbers, so nothing in the file is typed by hand but
the paper's reference table below.
"""

import collections
import datetime
import math
import os

import numpy as np

# The paper's Tables 1-3 (mean of 5 runs): NLL, KL, MI, AU. The reference,
# not our measurement.
PAPER = {
    "Yahoo": {"vae": (328.9, 0.0, 0.0, 0), "aggressive": (328.2, 5.6, 3.0, 8),
              "self": (328.7, 3.6, 2.6, 3), "hybrid": (328.2, 4.3, 2.8, 11),
              "nn": (338.9, 17.5, 3.3, 8)},
    "Yelp": {"vae": (358.3, 0.0, 0.0, 0), "aggressive": (356.9, 3.4, 2.4, 7.4),
             "hybrid": (357.7, 4.0, 2.8, 7)},
    "Omniglot": {"vae": (89.41, 1.51, 1.43, 3),
                 "aggressive": (89.05, 2.51, 2.19, 5.6),
                 "self": (89.18, 6.30, 3.75, 11),
                 "hybrid": (89.16, 6.41, 3.78, 13),
                 "nn": (89.24, 7.66, 3.82, 28)},
}
# Table 3: training time relative to the VAE on Yahoo.
PAPER_STEP_TIME = {"aggressive": 3.6, "hybrid": 1.06}
METRICS = ("nll", "kl", "mi", "mi_full", "au", "infonce_bound", "wall",
           "nll_iw20", "nll_iw100", "probe_r2", "probe_r2_z", "z_reliance",
           "mi_noise_std", "mi_noise_hi", "length_only_mi",
           "length_only_mi_full", "num_examples", "old:nll", "old:mi",
           "old:mi_full", "old:kl", "old:au", "test_best:mi", "test_best:nll",
           "valid:nll", "valid:kl", "valid:mi", "valid:mi_full", "valid:au",
           "valid:infonce_bound", "critic_lambda", "train_seconds", "epochs",
           "log_k", "mean_batch_size", "z_reliance_unpaired",
           "probe_r2_length", "probe_r2_beyond_length",
           "probe_r2_z_beyond_length", "nll_iw500_subset") + tuple(
               f"probe_acc{side}_{label}{rate}"
               for label in ("alphabet", "character")
               for side, rate in (("", ""), ("_z", ""), ("", "_majority"),
                                  ("", "_chance")))
NLL_TOLERANCE = 0.01          # the defaults: most MI within 1% of the VAE
MI_GAIN = 0.3                 # nats above the VAE that count as a gain


def value(record: dict, key: str) -> float | None:
  """A metric of a finished record; wall: train plus test seconds;
  old:<name>: as the earlier protocol read it; valid:<name>: the last
  weights on the validation split; test_best:<name>: of the best
  checkpoint."""
  metrics = record.get("metrics") or {}
  if key.startswith("old:"):
    return (record.get("old_protocol") or {}).get(key[4:])
  if key.startswith("valid:"):
    return (record.get("valid") or {}).get(key[6:])
  if key.startswith("test_best:"):
    return (metrics.get("test_best") or {}).get(key[10:])
  if key == "wall":
    parts = [metrics.get("train_seconds"), metrics.get("eval_seconds")]
    return sum(parts) if None not in parts else None
  return metrics.get(key)


def aggregate(rows: list) -> dict:
  """(setup, family, knob) -> {metric: (mean, std, n)} over seeds, for the
  finished (run, record) pairs of `rows`; also "step" (seconds per step)."""
  groups = collections.defaultdict(list)
  for run, record in rows:
    if record.get("metrics"):
      groups[(run.setup, run.family, run.knob)].append(record)
  out = {}
  for key, records in groups.items():
    stats = {}
    for metric in METRICS + ("seconds_per_step",):
      values = [v for v in (value(r, metric) for r in records) if v is not None]
      if values:
        stats[metric] = (float(np.mean(values)), float(np.std(
            values, ddof=1)) if len(values) > 1 else 0.0, len(values))
    out[key] = stats
  return out


def cell(stat, digits: int = 2) -> str:
  """mean ± standard error (n > 1), or the mean alone (one seed), or -."""
  if not stat:
    return "-"
  mean, std, n = stat
  return f"{mean:.{digits}f} ± {std / math.sqrt(n):.{digits}f}" if n > 1 else (
      f"{mean:.{digits}f}")


def _rel(nll, reference) -> float:
  """NLL change against a reference, in percent."""
  return 100.0 * (nll - reference) / reference


def _paper(setup) -> tuple[str, str]:
  """The paper's data set compared with a setup, and what it is."""
  return setup.paper or "", setup.paper or "none (the paper has no such run)"


def table_section(name, setup, stats, methods, log_k) -> list[str]:
  """The table of one setup, its paper rows and the generated reading."""
  paper_name, paper_label = _paper(setup)
  paper = PAPER.get(paper_name, {})
  vae = stats.get((name, "vae", None), {})
  lines = [f"### {name}", "",
           f"Paper rows: {paper_label}. MI is He et al.'s batch estimate "
           f"(capped at log K = {log_k:.2f}); MI full takes q(z) over the "
           "whole test split. Mean ± standard error over seeds.", "",
           "| method | seeds | NLL | NLL vs VAE | KL | MI | MI full | AU | "
           "InfoNCE bound | wall s | step vs VAE | paper NLL / KL / MI / AU | "
           "paper NLL vs VAE |", "|" + "---|" * 13]
  for method in methods:
    s = stats.get((name, method, None), {})
    if not s:
      why = ("not run on this setup at this scale" if method in setup.skip
             else "not run yet")
      lines.append(f"| {method} | 0 | {why} |" + " |" * 10)
      continue
    rel = _rel_cell(s, vae)
    step = (f"{s['seconds_per_step'][0] / vae['seconds_per_step'][0]:.2f}x"
            if "seconds_per_step" in s and "seconds_per_step" in vae else "-")
    ref = paper.get(paper_method(method))
    ref_cells = ("-", "-") if not ref else (
        " / ".join(f"{v:g}" for v in ref),
        f"{_rel(ref[0], paper['vae'][0]):+.2f}%")
    lines.append(
        f"| {method} | {s['nll'][2] if 'nll' in s else 0} | "
        f"{cell(s.get('nll'))} | {rel} | {cell(s.get('kl'))} | "
        f"{cell(s.get('mi'))} | {cell(s.get('mi_full'))} | "
        f"{cell(s.get('au'), 1)} | {cell(s.get('infonce_bound'))} | "
        f"{cell(s.get('wall'), 0)} | {step} | {ref_cells[0]} | "
        f"{ref_cells[1]} |")
  return lines + [""] + reading(name, stats, methods, paper, log_k) + [""]


def _rel_cell(s: dict, vae: dict) -> str:
  """NLL change against the VAE in percent, ± its standard error."""
  if "nll" not in s or "nll" not in vae:
    return "-"
  (a, sa, na), (b, sb, nb) = s["nll"], vae["nll"]
  se = 100.0 * math.hypot(sa / math.sqrt(na), sb / math.sqrt(nb)) / b
  return f"{_rel(a, b):+.2f} ± {se:.2f}%" if max(na, nb) > 1 else (
      f"{_rel(a, b):+.2f}%")


def _gain(s, vae) -> bool:
  """Whether MI is above the VAE's by MI_GAIN and by two standard errors."""
  spread = math.hypot(s["mi"][1] / math.sqrt(s["mi"][2]),
                      vae["mi"][1] / math.sqrt(vae["mi"][2]))
  return s["mi"][0] - vae["mi"][0] > max(MI_GAIN, 2 * spread)


def paper_method(method: str) -> str:
  """The paper's row of a method: "self_default" reads as "self"."""
  return method.removesuffix("_default")


def _interval(mean: float, ses: tuple, n: int) -> tuple | None:
  """mean ± 2 standard errors (ses: the parts' standard errors, added in
  quadrature), or None with a single seed (no interval)."""
  return None if n < 2 else (mean - 2 * math.hypot(*ses),
                             mean + 2 * math.hypot(*ses))


def _against_paper(s, vae, ref, paper_vae) -> str:
  """Our MI gain and NLL change over the VAE against the paper's: the paper
  agrees only where its value lies inside our seeds' interval (mean ± 2
  s.e.)."""
  se = lambda stat: stat[1] / math.sqrt(stat[2])
  n = min(s["mi"][2], vae["mi"][2], s["nll"][2], vae["nll"][2])
  ours_gain = s["mi"][0] - vae["mi"][0]
  ours_rel = _rel(s["nll"][0], vae["nll"][0])
  gain_band = _interval(ours_gain, (se(s["mi"]), se(vae["mi"])), n)
  rel_band = _interval(ours_rel, (100 * se(s["nll"]) / vae["nll"][0],
                                  100 * se(vae["nll"]) / vae["nll"][0]), n)
  p_gain, p_rel = ref[2] - paper_vae[2], _rel(ref[0], paper_vae[0])
  words = f"paper MI {p_gain:+.2f} nats, NLL {p_rel:+.2f}%"
  if gain_band is None:
    return f"one seed, so no interval to compare with the paper ({words})"
  inside = [(what, lo <= value <= hi) for what, value, (lo, hi) in (
      ("MI", p_gain, gain_band), ("NLL", p_rel, rel_band))]
  bands = (f"ours MI [{gain_band[0]:+.2f}, {gain_band[1]:+.2f}], NLL "
           f"[{rel_band[0]:+.2f}, {rel_band[1]:+.2f}]%")
  if all(ok for _, ok in inside):
    return f"agrees with the paper ({words}, inside {bands})"
  outside = " and ".join(what for what, ok in inside if not ok)
  return f"differs from the paper on {outside} ({words}; {bands})"


def reading(name, stats, methods, paper, log_k) -> list[str]:
  """Where we agree with the paper and where not, in words, from numbers."""
  vae = stats.get((name, "vae", None), {})
  if "mi" not in vae or "nll" not in vae:
    return ["Reading: no plain VAE result yet."]
  collapsed, capped = vae["mi"][0] < 0.5, vae["mi"][0] > 0.75 * log_k
  state = "collapses" if collapsed else "does not collapse"
  lines = [f"Reading: the plain VAE {state} here (KL {vae['kl'][0]:.2f}, "
           f"MI {vae['mi'][0]:.2f} nats)"
           + ("" if not capped else
              f"; its MI is already {vae['mi'][0] / log_k:.0%} of the log K "
              "cap, so the batch MI cannot show much gain (see MI full)")
           + ". Agreement with the paper means its MI gain and NLL change "
           "lie inside our seeds' interval (mean ± 2 standard errors)."]
  for method in methods:
    s = stats.get((name, method, None), {})
    if method == "vae" or "mi" not in s or "nll" not in s:
      continue
    rel = _rel(s["nll"][0], vae["nll"][0])
    ours = ("raises MI by {:.2f} nats".format(s["mi"][0] - vae["mi"][0])
            if _gain(s, vae) else "does not raise MI above the VAE")
    within = abs(rel) <= 100 * NLL_TOLERANCE
    line = (f"- {method}: {ours}, NLL " + ("within 1% " if within else "")
            + (f"({rel:+.2f}%)" if within else f"{rel:+.2f}%"))
    ref = paper.get(paper_method(method))
    if ref:
      line += "; " + _against_paper(s, vae, ref, paper["vae"])
    time, vae_time = s.get("train_seconds"), vae.get("train_seconds")
    if paper_method(method) in PAPER_STEP_TIME and time and vae_time:
      epochs = s.get("epochs"), vae.get("epochs")
      line += (f"; training to the end of the schedule took "
               f"{time[0] / vae_time[0]:.1f}x the VAE's time"
               + (f" ({epochs[0][0]:.0f} vs {epochs[1][0]:.0f} epochs)"
                  if all(epochs) else "")
               + f" (paper, Yahoo: {PAPER_STEP_TIME[paper_method(method)]}x"
               " the VAE's training time)")
    lines.append(line + ".")
  return lines


def header(scale_name: str, setups: dict, parts, counts: dict,
           command: str | None = None) -> list[str]:
  """Title, provenance (`command`, default the plain one of the scale) and
  the setups' sizes."""
  stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
  lines = [
      "# Reproduction results", "",
      "Written by `" + (command or f"python experiments/reproduce.py "
                        f"--scale={scale_name}") + "` on "
      f"{stamp} (parts: {', '.join(parts)}; runs finished "
      f"{counts.get('finished', 0)}, failed {counts.get('failed', 0)}, not "
      f"run {counts.get('missing', 0)}). Every number and figure below comes "
      "from that run, except the paper's published rows. Rerun the "
      "command to regenerate; finished runs are read, not trained again.", "",
      "| setup | data | model | batch K | steps | test examples x IW "
      "samples |", "|---|---|---|---|---|---|"]
  for name, s in setups.items():
    model = ", ".join(f"{k} {v}" for k, v in s.model.items())
    steps = s.max_steps or f"{s.epochs} epochs"
    examples = s.eval.get("max_examples") or "all"
    data = ("ptb (train and validation: ptb.valid; test: ptb.test)"
            if s.dataset == "ptb" else s.dataset)
    lines.append(f"| {name} | {data} | {model} | {s.batch_size} | "
                 f"{steps} | {examples} x {s.eval.get('iw_samples')} |")
  return lines + [""]


def image(path: str, results_md: str, alt: str) -> str:
  """A markdown image link from RESULTS.md's folder to `path`."""
  relative = os.path.relpath(path, os.path.dirname(os.path.abspath(
      results_md)))
  return f"![{alt}]({relative})"
