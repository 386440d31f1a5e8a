"""The sweep and K parts of RESULTS.md: the MI / NLL trade-off of every
swept knob, the library defaults it selects, and MI against K.

Each family's points are compared with the plain VAE trained for as long
(the "vae" family, or "vae, Nx steps" for longer training).
"""

import collections
import math

import numpy as np

from experiments.reproduction import results_report as report

CLIFF_GAIN = 1.0          # nats of MI above the VAE that mark the cliff


def reference(families: list, family) -> str:
  """The label of the VAE family trained as long as `family`."""
  return next(f.label for f in families if f.method == "vae"
              and not f.knob and f.steps_factor == family.steps_factor)


def points(stats: dict, setup: str, label: str) -> list:
  """[(knob, stats)] of one family on one setup, by knob value."""
  found = [(k[2], s) for k, s in stats.items()
           if k[0] == setup and k[1] == label and "nll" in s]
  return sorted(found, key=lambda p: (p[0] is None, p[0] or 0))


def _vae(stats, setup, families, family) -> dict:
  return stats.get((setup, reference(families, family), None), {})


def sweep_section(setup: str, stats: dict, families: list) -> list[str]:
  """Every sweep point of a setup, then each family's summary in words."""
  lines = ["| family | knob | NLL | NLL vs VAE | KL | MI | MI full | AU | "
           "InfoNCE bound |", "|" + "---|" * 9]
  summary = []
  for family in families:
    vae = _vae(stats, setup, families, family)
    found = points(stats, setup, family.label)
    for knob, s in found:
      rel = (f"{report._rel(s['nll'][0], vae['nll'][0]):+.2f}%"
             if "nll" in vae else "-")
      lines.append(
          f"| {family.label} | {'-' if knob is None else f'{knob:g}'} | "
          + " | ".join([report.cell(s.get("nll")), rel] + [
              report.cell(s.get(m), 1 if m == "au" else 2)
              for m in ("kl", "mi", "mi_full", "au", "infonce_bound")])
          + " |")
    if family.knob and found and "nll" in vae:
      summary.append(_summary(family, found, vae))
  return lines + [""] + summary + [""]


def _summary(family, found, vae) -> str:
  """Where MI first rises by CLIFF_GAIN, and the most MI within 1% NLL."""
  rel = lambda s: report._rel(s["nll"][0], vae["nll"][0])
  cliff = next(((k, s) for k, s in found
                if s["mi"][0] - vae["mi"][0] >= CLIFF_GAIN), None)
  within = [(k, s) for k, s in found
            if rel(s) <= 100 * report.NLL_TOLERANCE]
  words = [f"- {family.label} ({family.knob}):"]
  words.append(
      f"MI rises {CLIFF_GAIN:g} nat above the VAE first at {cliff[0]:g} "
      f"(MI {cliff[1]['mi'][0]:.2f}, NLL {rel(cliff[1]):+.2f}%)" if cliff
      else f"MI never rises {CLIFF_GAIN:g} nat above the VAE's "
      f"{vae['mi'][0]:.2f} (at most {max(s['mi'][0] for _, s in found):.2f})")
  if within:
    k, s = max(within, key=lambda p: p[1]["mi"][0])
    words.append(f"; the most MI within {100 * report.NLL_TOLERANCE:g}% NLL "
                 f"is {s['mi'][0]:.2f} at {k:g} ({rel(s):+.2f}%).")
  else:
    words.append(f"; no point within {100 * report.NLL_TOLERANCE:g}% NLL.")
  return " ".join(words[:2]) + "".join(words[2:])


# The defaults are chosen on the validation split, never the test split.
CHOOSE_NLL, CHOOSE_MI = "valid:nll", "valid:mi"


def setting(family, knob) -> tuple:
  """(lambda, target or None, constraint) of a sweep point: the family's
  fixed changes with its knob at `knob`."""
  changes = dict(family.changes)
  if family.knob:
    changes[family.knob] = knob
  return (changes.get("critic_weight"), changes.get("critic_target"),
          changes.get("critic_constraint", "hinge"))


def choose_defaults(stats: dict, families: list, setups: list,
                    kinds: dict) -> dict:
  """critic -> {"per_setup": {setup: (setting, stats) or None},
  "overall": {kind: setting or None}, "gain": {kind: nats}}, read on the
  validation split (CHOOSE_NLL, CHOOSE_MI): per setup, the setting of the
  `defaults` families with the most MI (ties within 0.01 nats by MI full)
  whose NLL is within NLL_TOLERANCE of the plain VAE's; per kind of data
  (`kinds`: setup -> "text" or "image"), the setting
  within it on every setup of that kind with the most mean MI, and its
  mean MI above the VAE's. A setting is setting()'s (lambda, target,
  constraint)."""
  out = {}
  nll, mi = CHOOSE_NLL, CHOOSE_MI
  for critic in sorted({f.method for f in families if f.defaults}):
    per_setup = {}
    qualify = collections.defaultdict(lambda: collections.defaultdict(list))
    for setup in setups:
      best = None
      for family in families:
        if not (family.defaults and family.method == critic):
          continue
        vae = _vae(stats, setup, families, family)
        for knob, s in points(stats, setup, family.label):
          if nll not in vae or nll not in s or s[nll][0] > (
              1 + report.NLL_TOLERANCE) * vae[nll][0]:
            continue
          key = setting(family, knob)
          qualify[kinds[setup]][key].append(
              (s[mi][0], s[mi][0] - vae[mi][0]))
          rank = (round(s[mi][0], 2), s.get("valid:mi_full", (0,))[0])
          if best is None or rank > best[0]:
            best = (rank, (key, s))
      per_setup[setup] = best and best[1]
    overall, gain = {}, {}
    for kind in sorted(set(kinds[setup] for setup in setups)):
      count = sum(kinds[setup] == kind for setup in setups)
      full = {k: np.mean(v, axis=0) for k, v in qualify[kind].items()
              if len(v) == count}
      overall[kind] = max(full, key=lambda k: full[k][0]) if full else None
      gain[kind] = float(full[overall[kind]][1]) if full else 0.0
    out[critic] = {"per_setup": per_setup, "overall": overall, "gain": gain}
  return out


def describe_setting(weight, target, constraint="hinge") -> str:
  """A setting in words: lambda and how a target (nats) is held."""
  if target is None:
    return f"lambda {weight:g}, no target"
  if constraint == "lagrangian":
    return f"target {target:g} nats (the multiplier, lambda from {weight:g})"
  return f"lambda {weight:g}, hinge at {target:g} nats"


def defaults_section(choice: dict, stats: dict) -> list[str]:
  """The chosen defaults in words (see choose_defaults)."""
  tolerance = f"{100 * report.NLL_TOLERANCE:g}%"
  nll, mi = CHOOSE_NLL, CHOOSE_MI
  lines = [f"Rule, read on the validation split (the last weights, the "
           f"test split's IW samples): the setting with the most MI whose "
           f"IW-NLL is within {tolerance} of the plain VAE's at the same "
           "budget; the default for a kind of data (text, image) is the one "
           "within it on every swept setup of that kind with the most mean "
           "MI. The test split plays no part. Each setup is read at its "
           "budget: where its runs end at the epoch cap rather than on the "
           "learning-rate rule, they may still be moving, and a choice read "
           "there is provisional.", ""]
  for critic, c in choice.items():
    for setup, pick in c["per_setup"].items():
      vae = stats.get((setup, "vae", None), {})
      if pick is None or mi not in vae:
        lines.append(f"- {critic} on {setup}: no setting keeps validation "
                     f"NLL within {tolerance} of the VAE.")
        continue
      key, s = pick
      weak = s[mi][0] - vae[mi][0] <= report.MI_GAIN
      lines.append(
          f"- {critic} on {setup}: {describe_setting(*key)}: validation MI "
          f"{s[mi][0]:.2f} (VAE {vae[mi][0]:.2f}), NLL "
          f"{report._rel(s[nll][0], vae[nll][0]):+.2f}%"
          + (": the effect does not show here (MI not above the VAE's)"
             if weak else "") + ".")
    for kind, overall in c["overall"].items():
      gain, name = c["gain"][kind], f"{critic} on {kind} data"
      if overall is None:
        lines.append(f"- **{name}**: no setting is within the rule on "
                     f"every swept {kind} setup; no default is chosen from "
                     "this evidence.")
      elif gain <= report.MI_GAIN:
        lines.append(f"- **{name}**: no default from this evidence: the "
                     f"rule's pick ({describe_setting(*overall)}) keeps "
                     f"only {gain:.2f} nats of MI above the VAE on "
                     "average.")
      else:
        lines.append(f"- **{name}: {describe_setting(*overall)}** "
                     f"(validation MI {gain:+.2f} nats over the VAE on "
                     "average).")
  return lines + [""]


TARGET_TOLERANCE = 0.5    # nats: a target counts as held within this


def target_section(setup: str, stats: dict, families: list) -> list[str]:
  """Target asked for against the InfoNCE bound achieved (test and
  validation splits, last weights), lambda where the multiplier ended, and
  the NLL against the plain VAE's."""
  lines = ["| critic | target | bound, test | bound, valid | within "
           f"±{TARGET_TOLERANCE:g} | lambda at the end | MI | AU | NLL vs "
           "VAE |", "|" + "---|" * 9]
  held, total = 0, 0
  for family in families:
    if family.knob != "critic_target":
      continue
    vae = _vae(stats, setup, families, family)
    for knob, s in points(stats, setup, family.label):
      bound = s.get("infonce_bound")
      within = bound is not None and abs(
          bound[0] - knob) <= TARGET_TOLERANCE
      held, total = held + within, total + 1
      rel = (f"{report._rel(s['nll'][0], vae['nll'][0]):+.2f}%"
             if "nll" in vae else "-")
      lines.append(
          f"| {family.method} | {knob:g} | {report.cell(bound)} | "
          f"{report.cell(s.get('valid:infonce_bound'))} | "
          f"{'yes' if within else 'no'} | "
          f"{report.cell(s.get('critic_lambda'))} | "
          f"{report.cell(s.get('mi'))} | {report.cell(s.get('au'), 1)} | "
          f"{rel} |")
  if not total:
    return []
  return lines + ["", f"{held} of {total} targets land within "
                  f"±{TARGET_TOLERANCE:g} nats on the test split.", ""]


def k_value(family, knob, batch_size: int) -> int:
  """The critic's K of a K-part point: the batch, or batch + queue."""
  return int(knob) if family.knob == "batch_size" else batch_size + int(knob)


def k_section(setup: str, stats: dict, families: list,
              batch_size: int) -> list[str]:
  """MI, MI full and the InfoNCE bound against K, beside log K."""
  lines = ["| family | K | log K | MI | MI full | InfoNCE bound | NLL |",
           "|" + "---|" * 7]
  for family in families:
    for knob, s in points(stats, setup, family.label):
      k = k_value(family, knob, batch_size)
      cells = [report.cell(s.get(m))
               for m in ("mi", "mi_full", "infonce_bound", "nll")]
      lines.append(f"| {family.label} | {k} | {math.log(k):.2f} | "
                   + " | ".join(cells) + " |")
  return lines + ["", "The MI column is estimated over test batches of the "
                  "training batch size, so it is capped at log(batch), not "
                  "log K, in the queue rows.", ""]
