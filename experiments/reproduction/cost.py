"""What the reproduction's runs cost here, before they run.

The sizes themselves are in experiments/scales.py. `calibrate` measures,
on this machine, the seconds a run's parts take (startup, a training step
of each kind of method, a validation pass, the test evaluation) and
`estimate` turns them into the seconds of a plan.
"""

import dataclasses
import itertools
import json
import math
import os
import tempfile
import time

import keras

from experiments.reproduction import reproduction as repro
from experiments.reproduction import stats as stats_lib
from tf_cvae import aggressive as aggressive_lib
from tf_cvae import methods as methods_lib
from tf_cvae.training import build
from tf_cvae.training import evaluation
from tf_cvae.training import timing


def cost_class(config) -> str:
  """What a step costs like: aggressive, model, a critic name, or vae."""
  if config.aggressive:
    return "aggressive"
  if config.critic_side != "inference":
    return "model"
  return config.critic if config.critic != "none" else "vae"


def measure(config, steps: int = 10, warmup: int = 6,
            aggressive_steps: int = 2, evaluate: bool = True) -> dict:
  """Seconds of a run's parts on this machine, nothing written.

  Returns {"startup": data, networks and the first `warmup` steps (tracing),
  "step": one training step (an aggressive one with its inner loop, after
  one untimed),
  "inner_steps": encoder updates per aggressive step, and with `evaluate`:
  "eval": the test evaluation, "valid": one validation pass,
  "steps_per_epoch"}.
  """
  started = time.perf_counter()
  keras.utils.set_random_seed(config.seed)
  dataset = build.load_data(config, config.out_dir, save_vocab=False)
  step_fn = build.build_train_step(config, dataset)
  batches = build.inner_loop_batches(dataset, config)
  first = next(batches)
  step_fn.build(first)
  for batch in itertools.islice(batches, warmup):
    float(step_fn(batch)["loss"])
  out = {"startup": time.perf_counter() - started, "inner_steps": 0}
  # An aggressive step untimed first: it traces the encoder update.
  timer = timing.StepTimer(warmup_steps=1 if config.aggressive else 0)
  if config.aggressive:
    inner_batches = build.inner_loop_batches(dataset, config)
    for i, batch in enumerate(itertools.islice(batches,
                                               aggressive_steps + 1)):
      _, inner = aggressive_lib.aggressive_step(
          step_fn, batch, inner_batches, config.aggressive_max_inner)
      timer.tick()
      out["inner_steps"] += inner / aggressive_steps if i else 0
  else:
    for batch in itertools.islice(batches, steps):
      float(step_fn(batch)["loss"])
      timer.tick()
  out["step"] = timer.seconds_per_step()
  if evaluate:
    evaluator = evaluation.Evaluator(step_fn.vae, step_fn.critic)
    valid = dataclasses.replace(
        config.eval, split="valid", batch_size=config.batch_size,
        iw_samples=0, max_examples=config.valid_examples)
    out["valid"] = timing.seconds(lambda: evaluator(dataset, valid))
    test = dataclasses.replace(config.eval, batch_size=config.batch_size)
    out["eval"] = timing.seconds(lambda: evaluator(dataset, test))
    out["steps_per_epoch"] = (dataset.num_examples("train")
                              // config.batch_size)
  keras.backend.clear_session()
  return out


def calibrate(scale: repro.Scale, runs: list, data_dir: str,
              path: str | None = None, log=print) -> dict:
  """setup -> {"base": measure() of its plain VAE with evaluation, cost
  class -> measure() of its steps} for the setups and cost classes of
  `runs`. Read from `path` (JSON) where it holds them for the same setup,
  written there after."""
  saved = {}
  if path and os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      saved = json.load(f)
  result = {}
  for run in runs:
    setup = scale.setups[run.setup]
    key = json.dumps([run.setup, setup.dataset, setup.model,
                      setup.batch_size, setup.eval, setup.valid_examples],
                     sort_keys=True)
    times = result.setdefault(key, saved.get(key, {}))
    base = dataclasses.replace(    # measure() writes nothing to out_dir
        repro.base_config(setup, 0, data_dir),
        out_dir=os.path.join(tempfile.gettempdir(), "unused"))
    for kind in ("base", cost_class(run.config)):
      if kind not in times:
        log(f"calibrating {run.setup}: {kind}")
        method = "vae" if kind == "base" else kind
        times[kind] = measure(methods_lib.method_config(base, method),
                              evaluate=kind == "base")
  if path:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      json.dump(dict(saved, **result), f, indent=2, sort_keys=True)
  return {json.loads(key)[0]: times for key, times in result.items()}


def estimate(scale: repro.Scale, run, calibration: dict) -> float:
  """Seconds `run` should take here: startup, steps, validations, test.

  Steps cost in proportion to the batch size; a run sized in epochs is
  counted at all its epochs (the schedule may stop it sooner).
  """
  times, c = calibration[run.setup], run.config
  base, kind = times["base"], times[cost_class(c)]
  batch = scale.setups[run.setup].batch_size
  per_epoch = max(1, base["steps_per_epoch"] * batch // c.batch_size)
  steps = c.max_steps or c.epochs * per_epoch
  return (kind["startup"] + steps * kind["step"] * c.batch_size / batch
          + math.ceil(steps / per_epoch) * base["valid"] + base["eval"])


def finished_walls(runs: list, records: dict) -> dict:
  """out_dir -> (setup, cost class, wall seconds: training plus test
  evaluation) of the finished runs among `runs` (records: out_dir ->
  {"metrics"}), once per run directory."""
  out = {}
  for run in runs:
    wall = stats_lib.value(records.get(run.config.out_dir) or {}, "wall")
    if wall is not None:
      out[run.config.out_dir] = (run.setup, cost_class(run.config), wall)
  return out


def measured(runs: list, records: dict) -> dict:
  """(setup, cost class) -> mean wall seconds of its finished runs: what a
  run of that kind took here, early stops included."""
  walls = {}
  for setup, kind, wall in finished_walls(runs, records).values():
    walls.setdefault((setup, kind), []).append(wall)
  return {key: sum(v) / len(v) for key, v in walls.items()}


def describe(scale: repro.Scale, runs: list, calibration: dict,
             records: dict) -> list[str]:
  """The plan as lines: per part and setup, runs to train (and finished
  ones, records: out_dir -> {"metrics"}), their methods' step times and the
  estimated minutes: a run whose setup and kind have finished runs counts
  their mean wall time, any other its calibrated estimate (every epoch)."""
  finished = {d for d, r in records.items() if r.get("metrics")}
  walls = measured(runs, records)
  lines = [f"{'part':<6} {'setup':<15} {'to run':>6} {'done':>5} "
           f"{'est. min':>8}  step seconds by kind (eval s)"]
  total, seen, by_wall = 0.0, set(), 0
  for part in repro.PARTS:
    part_total = total
    for setup in dict.fromkeys(r.setup for r in runs if r.part == part):
      todo, done, seconds = 0, 0, 0.0
      for run in runs:
        out = run.config.out_dir
        if run.part != part or run.setup != setup or out in seen:
          continue
        seen.add(out)
        if out in finished:
          done += 1
        else:
          todo += 1
          wall = walls.get((setup, cost_class(run.config)))
          by_wall += wall is not None
          seconds += (estimate(scale, run, calibration) if wall is None
                      else wall)
      times = calibration[setup]
      kinds = " ".join(f"{k} {v['step']:.3f}" for k, v in sorted(
          times.items()) if k != "base")
      lines.append(f"{part:<6} {setup:<15} {todo:>6} {done:>5} "
                   f"{seconds / 60:>8.1f}  {kinds} "
                   f"({times['base']['eval']:.0f})")
      total += seconds
    if total > part_total:
      lines.append(f"{part:<6} {'(all)':<15} {'':>12} "
                   f"{(total - part_total) / 60:>8.1f}")
  todo = len(seen) - len(finished & seen)
  spent = sum(wall for *_, wall in finished_walls(runs, records).values())
  lines.append(f"total: {total / 60:.1f} minutes to train and evaluate "
               f"{todo} runs, one at a time ({by_wall} of them timed by "
               "finished runs of their setup and kind, the rest by the "
               "calibrated step times to their epoch cap); finished runs "
               f"took {spent / 60:.1f} minutes")
  return lines
