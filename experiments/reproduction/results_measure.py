"""RESULTS.md's measurement section of a setup: what each MI reading is worth.

For every setup of the table it shows, from the runs' own metrics.json:
the noise floor of the MI estimate (what a posterior that ignores x reads on
the same split), the length-only control (what a code holding only the
sentence length reads), the linear probe of a known latent and the decoder's
use of z, how the IW-NLL converges with the number of samples, and the same
runs read as the earlier protocol read them.
"""

import numpy as np

from experiments.reproduction import results_report as report

cell = report.cell


def _mean(stats: dict, key: str) -> float | None:
  return stats[key][0] if key in stats else None


def takes_effect(records: list) -> str:
  """"k of n": seeds whose test MI and full MI both lie above the noise
  floor's 97.5% point (the run holds information an estimate can see)."""
  done = [r["metrics"] for r in records if r.get("metrics")]
  above = [m for m in done if "mi_noise_hi" in m
           and m["mi"] > m["mi_noise_hi"] and m["mi_full"] > m["mi_noise_hi"]]
  return f"{len(above)} of {len(done)}"


# A multiplier has settled when the validation bound of the run's last
# SETTLE_EPOCHS epochs spans at most SETTLE_SWING nats (half the 1-nat
# default target; a cycling run swings between ~0 and twice its target).
SETTLE_EPOCHS, SETTLE_SWING = 6, 0.5


def settles(records: list) -> str:
  """"k of n": finished runs with a Lagrange multiplier whose validation
  bound swung by at most SETTLE_SWING nats over the last SETTLE_EPOCHS
  epochs of history; "" when no run has a multiplier and that many
  epochs (a shorter run cannot show whether it settled)."""
  swings = []
  for record in records:
    history = [h for h in record.get("history") or []
               if "critic_lambda" in h and "valid_infonce_bound" in h]
    if record.get("metrics") and len(history) >= SETTLE_EPOCHS:
      bounds = [h["valid_infonce_bound"] for h in history[-SETTLE_EPOCHS:]]
      swings.append(max(bounds) - min(bounds))
  if not swings:
    return ""
  return f"{sum(s <= SETTLE_SWING for s in swings)} of {len(swings)}"


def section(name: str, rows: list, stats: dict, methods) -> list[str]:
  """The measurement lines of setup `name` (rows: its (run, record) pairs)."""
  by_method = {}
  for run, record in rows:
    if run.part == "table" and run.setup == name:
      by_method.setdefault(run.family, []).append(record)
  vae = stats.get((name, "vae", None), {})
  if "mi_noise_std" not in vae:
    return []
  lines = [f"#### {name}: what the readings are worth", ""]
  n = _mean(vae, "num_examples")
  lines.append(
      f"- **Noise floor.** A posterior that ignores x reads MI 0 ± "
      f"{_mean(vae, 'mi_noise_std'):.3f} nats (standard deviation; 97.5% "
      f"point {_mean(vae, 'mi_noise_hi'):.3f}) on these {n:.0f} test "
      "examples, for the batch estimate and the full one alike. A reading "
      "below that point is not distinguishable from zero at this size.")
  if "length_only_mi" in vae:
    per_batch = _mean(vae, "length_only_mi")
    where = ("every batch holds one length, so the length cannot score "
             "there" if per_batch < 1e-9 else "batches mix lengths, so a "
             "batch MI up to that much can be the length alone")
    lines.append(
        f"- **Length-only control.** A code that holds only the sentence "
        f"length reads {per_batch:.2f} nats as batch MI ({where}) "
        f"and {_mean(vae, 'length_only_mi_full'):.2f} nats as full MI: a "
        "full MI up to that much can be the length alone.")
  if "log_k" in vae:
    lines.append(
        f"- **Batch size read at.** Test batches held "
        f"{_mean(vae, 'mean_batch_size'):.1f} examples on average: batch MI "
        f"and the InfoNCE bound are capped at log K = "
        f"{_mean(vae, 'log_k'):.2f} nats (size-weighted).")
  header = ("| method | seeds | MI above the floor | multiplier settled | "
            "MI | MI full | AU | z reliance (nats) |")
  has_probe = "probe_r2" in vae
  if has_probe:
    header += " probe R² (means) | probe R² (z samples) |"
  beyond = "probe_r2_length" in vae
  if beyond:
    header += " probe R² beyond length (z samples) |"
  labels = [k[len("probe_acc_z_"):] for k in report.METRICS
            if k.startswith("probe_acc_z_") and k in vae]
  for label in labels:
    header += f" {label} accuracy (means) | {label} accuracy (z samples) |"
  lines += ["", header, "|" + "---|" * (header.count("|") - 1)]
  for method in methods:
    s = stats.get((name, method, None), {})
    if not s:
      continue
    records = by_method.get(method, [])
    row = (f"| {method} | {s['mi'][2]} | {takes_effect(records)} | "
           f"{settles(records) or '—'} | {cell(s.get('mi'))} "
           f"| {cell(s.get('mi_full'))} | {cell(s.get('au'), 1)} | "
           f"{cell(s.get('z_reliance'))} |")
    if has_probe:
      row += f" {cell(s.get('probe_r2'))} | {cell(s.get('probe_r2_z'))} |"
    if beyond:
      row += f" {cell(s.get('probe_r2_z_beyond_length'))} |"
    for label in labels:
      row += (f" {cell(s.get(f'probe_acc_{label}'))} | "
              f"{cell(s.get(f'probe_acc_z_{label}'))} |")
    lines.append(row)
  lines += ["", f"Multiplier settled: the validation bound of the last "
            f"{SETTLE_EPOCHS} epochs stayed within {SETTLE_SWING:g} nats "
            "(a cycling multiplier swings between a collapsed code and "
            "about twice its target). "
            "z reliance: how much worse each sentence or image is "
            "predicted when its z is swapped for another example's of the "
            "same batch (same length for text). The probe fits the known "
            "latent from the codes of the training split, linearly, and "
            "scores R² on the test split; on means it also counts variations "
            "far smaller than the posterior's noise, on samples it does not.",
            ""]
  if beyond:
    lines += [
        f"Sentence length alone gives the VAE's probe R² "
        f"{cell(vae.get('probe_r2_length'))} (a one-hot of the length, fit on "
        "train); beyond length probes the latent less what length explains.",
        ""]
  for label in labels:
    lines += [
        f"{label}: a linear classifier of the codes fit on train; the test "
        f"split's majority rate is {cell(vae.get(f'probe_acc_{label}_majority'))}"
        f" and chance {cell(vae.get(f'probe_acc_{label}_chance'), 3)}.", ""]
  lines += _convergence(by_method, methods) + _before_after(
      name, stats, methods) + clipping(rows, name)
  return lines


def _stat(values: list) -> tuple:
  """(mean, standard deviation, n) of `values`, the form `cell` reads."""
  return (float(np.mean(values)), float(np.std(values, ddof=1)), len(values))


def _seed_values(rows: list, name: str, method: str, key: str) -> dict:
  """seed -> metrics[key] of the finished table runs of `method`."""
  return {run.seed: record["metrics"][key] for run, record in rows
          if run.part == "table" and run.setup == name
          and run.family == method and record.get("metrics")}


def clipping(rows: list, name: str, method: str = "self",
             joint: str = "self_joint_clip") -> list[str]:
  """The critic's NLL cost with the ELBO's and the critic's gradients
  clipped apart (`method`) and together (`joint`), paired by seed."""
  separate = _seed_values(rows, name, method, "nll")
  together = _seed_values(rows, name, joint, "nll")
  vae = _seed_values(rows, name, "vae", "nll")
  seeds = sorted(set(separate) & set(together) & set(vae))
  if len(seeds) < 2:
    return []
  def pct(values):
    return [100 * (values[s] / vae[s] - 1) for s in seeds]
  diff = [together[s] - separate[s] for s in seeds]
  mi = {m: _seed_values(rows, name, m, "mi") for m in (method, joint)}
  return [
      f"**One clip or two** ({len(seeds)} seeds, paired). With the critic's "
      "gradient clipped together with the ELBO's (one global norm), the "
      f"{method} critic's NLL is {cell(_stat(pct(together)))}% "
      f"above the plain VAE's; clipped apart (the default), "
      f"{cell(_stat(pct(separate)))}%. Joint minus separate, seed "
      f"by seed: {cell(_stat(diff))} nats. MI: joint "
      f"{cell(_stat([mi[joint][s] for s in seeds]))}, separate "
      f"{cell(_stat([mi[method][s] for s in seeds]))} nats. A "
      "shared clip shrinks the decoder's step whenever the critic's "
      "gradient is large, which reads as an NLL cost of the critic.", ""]


def _convergence(by_method: dict, methods) -> list[str]:
  """IW-NLL at 20, 100 and 500 samples (the same draws; seed 0, the last
  weights, a fixed subset of the test split)."""
  lines = ["IW-NLL by importance samples (nats; seed 0, the last weights, the "
           "same draws; a fixed subset of the test split):", "",
           "| method | examples | 20 | 100 | 500 | 500 - 20 | 500 - 100 |",
           "|---|---|---|---|---|---|---|"]
  for method in methods:
    found = [r["iw_convergence"] for r in by_method.get(method, [])
             if r.get("iw_convergence")]
    if not found:
      continue
    c = found[0]
    lines.append(
        f"| {method} | {c['num_examples']} | {c['nll_iw20']:.3f} | "
        f"{c['nll_iw100']:.3f} | {c['nll_iw500']:.3f} | "
        f"{c['nll_iw500'] - c['nll_iw20']:+.3f} | "
        f"{c['nll_iw500'] - c['nll_iw100']:+.3f} |")
  return lines + [""] if len(lines) > 4 else []


def _before_after(name: str, stats: dict, methods) -> list[str]:
  """The same runs read by the earlier protocol and by this one."""
  lines = ["The same runs read as the earlier protocol read them (best "
           "checkpoint by validation negative ELBO, text in mixed-length "
           "buckets, fewer test examples, 20 importance samples) and as "
           "this one does (the last weights, one length a batch, the whole "
           "test split, the samples above):", "",
           "| method | earlier NLL | earlier MI | earlier MI full | earlier AU "
           "| NLL | MI | MI full | AU |", "|" + "---|" * 9]
  for method in methods:
    s = stats.get((name, method, None), {})
    if "old:mi" not in s:
      continue
    lines.append(
        f"| {method} | {cell(s.get('old:nll'))} | {cell(s.get('old:mi'))} | "
        f"{cell(s.get('old:mi_full'))} | {cell(s.get('old:au'), 1)} | "
        f"{cell(s.get('nll'))} | {cell(s.get('mi'))} | "
        f"{cell(s.get('mi_full'))} | {cell(s.get('au'), 1)} |")
  return lines + [""] if len(lines) > 4 else []



def stopped_by_rule(run, record: dict) -> bool:
  """Whether a finished run ended on the learning-rate rule (its last
  halving), not on its step or epoch cap."""
  history = record.get("history") or [{}]
  decays, cap = history[-1].get("lr_decays"), run.config.max_lr_decays
  return bool(cap) and decays is not None and decays >= cap


def caveats(setups: dict, rows: list, methods) -> list[str]:
  """What a reader should not conclude from the table: how its runs ended
  (the learning-rate rule or the cap; `rows` are (Run, record) pairs) and
  at which critic settings (`methods`)."""
  budgets = ", ".join(
      f"{name} {s.max_steps} steps" if s.max_steps else
      f"{name} {s.epochs} epochs" for name, s in setups.items())
  finished = [(run, rec) for run, rec in rows if rec.get("metrics")]
  by_rule = sum(stopped_by_rule(run, rec) for run, rec in finished)
  if finished and by_rule == len(finished):
    ended = (f"Every run trained until the learning-rate rule stopped it "
             f"(caps: {budgets}).")
  else:
    ended = (f"Caps: {budgets}. {by_rule} of {len(finished)} finished runs "
             "ended on the learning-rate rule, the rest at the cap, so a "
             "row may still be moving and a method that gains MI late can "
             "read as collapsed; the MI-per-epoch figures show where each "
             "stood.")
  settings = ("The critics run at the library's defaults (the _default "
              "rows; the defaults' section says which)."
              if any(m.endswith("_default") for m in methods) else
              "The critics run at the fixed settings of the earlier table "
              "(self: lambda 3, hybrid: lambda 10, no target), not at the "
              "library's defaults.")
  return [
      f"**What not to conclude.** {ended} {settings} An NLL difference "
      "smaller than about "
      "two standard errors is no difference. MI below the noise floor's "
      "97.5% point is not distinguishable from zero at this size, and a "
      "full MI up to the length-only "
      "control may be the sentence length alone; on the synthetic text, MI "
      "without a higher probe R² on z samples and without z reliance is "
      "information the decoder does not use. Text runs are not "
      "bit-reproducible without --deterministic (likely the word embedding's "
      "sparse gradient sums in a thread-dependent order), so a seed of one "
      "row is not paired with the same seed of another: read the seeds' "
      "spread, not seed-by-seed differences. Wall times include whatever "
      "else the machine ran meanwhile, so a time ratio between rows is "
      "indicative, not a benchmark. The IW-NLL by importance samples is "
      "read on seed 0 only.", ""]
