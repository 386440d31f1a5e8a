"""The sizes of the reproduction at each scale, and what they cost here.

`SCALES["cpu"]` is sized so that the table part (4 setups x 9 methods, 3
seeds; aggressive training and MNIST's PixelCNN 1) takes about 90 minutes
on 2 idle CPU cores;
`SCALES["paper"]` has the paper's networks and protocol (for a GPU);
`SCALES["smoke"]` runs the cpu grid for a few steps. `calibrate` measures,
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

from tf_cvae import aggressive as aggressive_lib
from tf_cvae.experiments import methods as methods_lib
from tf_cvae.experiments import reproduction as repro
from tf_cvae.training import build
from tf_cvae.training import evaluation
from tf_cvae.training import timing

_TABLE_METHODS = ("vae", "kl_annealing", "beta_0.5", "free_bits_0.25",
                  "aggressive", "self", "hybrid", "nn", "model")
_MEASURED_METHODS = ("vae", "kl_annealing", "free_bits_0.25", "self",
                     "self_joint_clip", "hybrid")
# The measurement's text runs: their hybrid critic shared the word embedding.
_MEASURED_TEXT = dict(hybrid_features="embedding")
# The whole test split. IW samples as 2 cores allow (PTB's 3,761 sentences
# at 100 samples take about 5 minutes a checkpoint); RESULTS.md shows how
# far 20 and 100 are from 500 on seed 0 of every method (rereadings.py).
_EVAL_TEXT = dict(iw_samples=100, iw_chunk_size=100, iw_report=(20,))
_EVAL_PTB = dict(iw_samples=20, iw_chunk_size=20, iw_report=())
_EVAL_IMAGES = dict(iw_samples=100, iw_chunk_size=50, iw_report=(20,))
# How the earlier protocol tested: 300 sentences (images: the split), IW 20.
_OLD_EVAL_300 = dict(iw_samples=20, iw_chunk_size=20, max_examples=300)
_SMALL_PIXELCNN = dict(name="pixelcnn", latent_dim=32, resnet_channels=16,
                       pixelcnn_layers=4, pixelcnn_channels=16)

SCALES = {
    "cpu": repro.Scale(
        setups={
            "synthetic_text": repro.Setup(
                "synthetic_text", dict(embed_dim=64, hidden_dim=128,
                                       latent_dim=16, decoder_dropout=0.0,
                                       **_MEASURED_TEXT),
                batch_size=32, max_steps=None, epochs=4,
                eval=_EVAL_TEXT, old_eval=_OLD_EVAL_300),
            "ptb": repro.Setup(
                "ptb", dict(embed_dim=64, hidden_dim=128, latent_dim=16,
                            decoder_dropout=0.5, **_MEASURED_TEXT),
                batch_size=32, max_steps=300, epochs=3,
                eval=_EVAL_PTB, paper="Yahoo", old_eval=_OLD_EVAL_300,
                skip=("self_joint_clip",)),
            "mnist_mlp": repro.Setup(
                "binarized_mnist", dict(name="mlp", hidden_dim=256,
                                        latent_dim=32),
                batch_size=50, max_steps=2000, epochs=2, valid_examples=1000,
                eval=dict(iw_samples=50, iw_chunk_size=50,
                          max_examples=1000)),
            # The model critic samples x ~ p(x|z) pixel by pixel: 784
            # PixelCNN passes a step, too slow for 2 cores. One seed: MNIST
            # has no row in the paper, and Omniglot has the same networks.
            "mnist_pixelcnn": repro.Setup(
                "binarized_mnist", _SMALL_PIXELCNN, batch_size=50,
                max_steps=200, epochs=1, valid_examples=200,
                eval=dict(iw_samples=20, iw_chunk_size=20, max_examples=200),
                skip=("model",), seeds=1),
            "omniglot": repro.Setup(
                "omniglot", _SMALL_PIXELCNN, batch_size=50, max_steps=200,
                epochs=5, eval=_EVAL_IMAGES, paper="Omniglot",
                skip=("model", "self_joint_clip"),
                old_eval=dict(iw_samples=20, iw_chunk_size=20)),
        },
        # The measurement's table: the methods whose readings the earlier
        # protocol got wrong, on the setups where the plain VAE collapses.
        table=("synthetic_text", "ptb", "omniglot"),
        methods=_MEASURED_METHODS, seeds=3, sweep=("ptb", "mnist_mlp"),
        k=("ptb", "mnist_mlp"),
        # Six lambdas and 2x longer training keep the sweep near an hour.
        lambdas=(0.5, 1.0, 2.0, 3.0, 5.0, 10.0), long_factor=2),
    "paper": repro.Scale(
        setups={
            "ptb": repro.Setup(
                "ptb", dict(embed_dim=512, hidden_dim=1024, latent_dim=32,
                            decoder_dropout=0.5),
                batch_size=32, max_steps=None, epochs=100,
                eval=dict(iw_samples=500, iw_chunk_size=100),
                paper="Yahoo", extra=(("lr_warmup_epochs", 15),)),
            "mnist_mlp": repro.Setup(
                "binarized_mnist", dict(name="mlp", hidden_dim=512,
                                        latent_dim=32),
                batch_size=50, max_steps=None, epochs=100,
                eval=dict(iw_samples=500, iw_chunk_size=100)),
            "mnist_pixelcnn": repro.Setup(
                "binarized_mnist", dict(name="pixelcnn", latent_dim=32),
                batch_size=50, max_steps=None, epochs=100,
                eval=dict(iw_samples=500, iw_chunk_size=50)),
            "omniglot": repro.Setup(
                "omniglot", dict(name="pixelcnn", latent_dim=32),
                batch_size=50, max_steps=None, epochs=100,
                eval=dict(iw_samples=500, iw_chunk_size=50),
                paper="Omniglot"),
        },
        table=("ptb", "mnist_mlp", "mnist_pixelcnn", "omniglot"),
        methods=_TABLE_METHODS, seeds=5,
        sweep=("ptb", "mnist_mlp", "omniglot"),
        k=("ptb", "mnist_mlp", "omniglot")),
}

# A few steps of every run of the cpu grid on small subsets: minutes, to
# check the whole pipeline (the numbers mean nothing).
SCALES["smoke"] = dataclasses.replace(
    SCALES["cpu"], setups={
        name: dataclasses.replace(
            setup, max_steps=4, epochs=1, valid_examples=64,
            eval=dict(iw_samples=4, iw_chunk_size=4, max_examples=64))
        for name, setup in SCALES["cpu"].setups.items()},
    seeds=2, lambdas=(1.0, 3.0), lambda_subset=(3.0,),
    anneal_fractions=(0.5,), betas=(0.5,), floors=(0.25,),
    batch_sizes=(16, 64), queue_sizes=(0, 32), long_factor=2)


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


def describe(scale: repro.Scale, runs: list, calibration: dict,
             finished: set) -> list[str]:
  """The plan as lines: per part and setup, runs to train (and finished
  ones), their methods' step times and the estimated minutes."""
  lines = [f"{'part':<6} {'setup':<15} {'to run':>6} {'done':>5} "
           f"{'est. min':>8}  step seconds by kind (eval s)"]
  total, seen = 0.0, set()
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
          seconds += estimate(scale, run, calibration)
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
  lines.append(f"total: {total / 60:.1f} minutes to train and evaluate "
               f"{len(seen) - len(finished & seen)} runs")
  return lines
