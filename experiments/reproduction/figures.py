"""The reproduction's figures (PNG, matplotlib's Agg backend): MI per epoch
and NLL against MI per table setup, the trade-off of every swept knob, and
MI against K. Each function returns the path it wrote."""

import collections
import math
import os

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt
from matplotlib import ticker
import numpy as np

from experiments.reproduction import stats as stats_lib


def _legend(ax, **kwargs) -> None:
  """A legend where something is labelled (a report with no runs has none)."""
  if ax.get_legend_handles_labels()[0]:
    ax.legend(**kwargs)


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return path


def mi_per_epoch(setup: str, rows: list, methods, log_k: float,
                 path: str) -> str:
  """Validation MI (nats) at each validation (epoch ends and the final
  step; x in epochs, fractions included), mean ± standard error over seeds,
  one line per method."""
  curves = collections.defaultdict(list)
  for run, record in rows:
    if run.part == "table" and run.setup == setup and record.get("history"):
      curves[run.family].append([
          (h.get("epoch_fraction", h["epoch"]), h["valid_mi"])
          for h in record["history"]])
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for method in methods:
    if not curves.get(method):
      continue
    length = min(len(c) for c in curves[method])
    points = np.array([c[:length] for c in curves[method]])  # [seeds, t, 2]
    epochs, values = points[0, :, 0], points[:, :, 1]
    mean = values.mean(axis=0)
    ax.plot(epochs, mean, marker="o", ms=3, label=method)
    if len(values) > 1:
      se = values.std(axis=0, ddof=1) / np.sqrt(len(values))
      ax.fill_between(epochs, mean - se, mean + se, alpha=0.15)
  if not curves:
    ax.text(0.5, 0.5, "no finished epoch yet", ha="center",
            transform=ax.transAxes)
  ax.axhline(log_k, color="grey", ls=":", lw=1, label=f"log K = {log_k:.2f}")
  ax.set(xlabel="epoch", ylabel="validation MI (nats)",
         title=f"{setup}: validation MI (mean ± s.e. over seeds)")
  ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))  # whole epochs
  _legend(ax, fontsize=7, ncol=2)
  return _save(fig, path)


def nll_vs_mi(setup: str, stats: dict, methods, path: str) -> str:
  """Test NLL against test MI, mean ± s.e. over seeds, one point a method."""
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for method in methods:
    s = stats.get((setup, method, None), {})
    if "nll" not in s or "mi" not in s:
      continue
    ax.errorbar(s["mi"][0], s["nll"][0], xerr=s["mi"][1] / np.sqrt(
        s["mi"][2]), yerr=s["nll"][1] / np.sqrt(s["nll"][2]), fmt="o",
                capsize=3, label=method)
    ax.annotate(method, (s["mi"][0], s["nll"][0]), fontsize=7,
                xytext=(4, 4), textcoords="offset points")
  ax.set(xlabel="MI (nats)", ylabel="NLL (nats per example)",
         title=f"{setup}: NLL against MI (lower right is better)")
  _legend(ax, fontsize=7, ncol=2)
  return _save(fig, path)


def trade_off(setup: str, stats: dict, families: list, path: str) -> str:
  """NLL change against the VAE (%) vs MI and MI full, one line a family."""
  fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
  for index, family in enumerate(families):
    vae = stats.get((setup, stats_lib.reference(families, family), None), {})
    found = stats_lib.points(stats, setup, family.label)
    if not found or "nll" not in vae:
      continue
    rel = [stats_lib.rel(s["nll"][0], vae["nll"][0]) for _, s in found]
    critic = family.knob == "critic_weight"
    style = dict(marker="*" if not family.knob else "o" if critic else "s",
                 ms=4 if family.knob else 12, ls="-" if family.knob else "",
                 color=plt.cm.tab20(index % 20), label=family.label)
    for ax, metric in zip(axes, ("mi", "mi_full")):
      mi = [s[metric][0] for _, s in found]
      line, = ax.plot(mi, rel, **style)
      for (knob, _), x, y in zip(found, mi, rel):
        if knob is not None:
          ax.annotate(f"{knob:g}", (x, y), fontsize=6, color=line.get_color(),
                      xytext=(2, 2), textcoords="offset points")
  for ax, name in zip(axes, ("MI (batch; capped at log K)",
                             "MI full (q(z) over the test subset)")):
    ax.axhline(100 * stats_lib.NLL_TOLERANCE, color="grey", ls=":", lw=1)
    ax.set(xlabel=f"{name}, nats")
  axes[0].set(ylabel="NLL vs the plain VAE (%)")
  axes[0].set_title(f"{setup}: what each knob buys (labels: knob values; "
                    "dotted: +1% NLL)", fontsize=9, loc="left")
  _legend(axes[1], fontsize=7, loc="upper left",
          bbox_to_anchor=(1.02, 1.0))
  return _save(fig, path)


def mi_vs_k(setup: str, stats: dict, families: list, batch_size: int,
            path: str) -> str:
  """MI, MI full and the InfoNCE bound against K (log scale), with log K."""
  fig, ax = plt.subplots(figsize=(7, 4.5))
  ks = []
  for index, family in enumerate(families):
    found = stats_lib.points(stats, setup, family.label)
    k = [stats_lib.k_value(family, knob, batch_size) for knob, _ in found]
    ks += k
    for metric, marker, ls in (("mi", "o", "-"), ("mi_full", "s", "--"),
                               ("infonce_bound", "^", "-.")):
      ax.plot(k, [s.get(metric, (math.nan,))[0] for _, s in found],
              marker=marker, ls=ls, color=f"C{index}",
              label=f"{metric}, {family.label}")
  if ks:
    grid = np.array(sorted(set(ks)))
    ax.plot(grid, np.log(grid), color="grey", ls=":", label="log K")
  ax.set_xscale("log", base=2)
  ax.set(xlabel="K (candidates of each z: batch, or batch + queue)",
         ylabel="nats",
         title=f"{setup}: MI against K (self critic)")
  _legend(ax, fontsize=6)
  return _save(fig, path)
