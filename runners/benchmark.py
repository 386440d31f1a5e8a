"""Seconds per train step of every critic against the machine's matmul peak.

  tf-cvae-benchmark --size=small      # B32 T40 V5k E256 H512
  tf-cvae-benchmark --size=paper --critics=none,self
  tf-cvae-benchmark --size=small --bookkeeping

Prints and rewrites this size's section of --markdown_out (BENCHMARKS.md),
writes --json_out (critic -> numbers). Flags given override the preset.
--bookkeeping times the training loop's work around the plain step instead.
"""

import dataclasses
import datetime
import json
import os
import platform

import tf_cvae_runners  # first: TensorFlow starts without its chatter
from tf_cvae_runners import launch

from absl import app
from absl import flags
import keras
import tensorflow as tf

from tf_cvae import benchmarking
from tf_cvae.models import fused_lstm
from tf_cvae.models import registry
from tf_cvae.training import checkpointing
from tf_cvae.training import timing
from tf_cvae.training import validation

# Presets: BenchConfig fields, "model" holding ModelConfig fields that
# replace benchmarking.MODEL's.
_IMAGES = dict(batch_size=50, steps=3)
SIZES = {   # the paper's text size is He et al.'s (Yahoo)
    "small": dict(steps=10),
    "paper": dict(seq_len=80, vocab_size=20000, steps=2, eval_examples=2,
                  memory_iw_samples=(50, 500),
                  model=dict(embed_dim=512, hidden_dim=1024)),
    "images": dict(_IMAGES, eval_examples=4, memory_iw_samples=(50, 500),
                   model=dict(name="pixelcnn")),
    "images_small": dict(_IMAGES, model=dict(
        name="pixelcnn", pixelcnn_layers=4, pixelcnn_channels=16,
        resnet_channels=16)),
}
# Flags that set ModelConfig fields: flag name -> field name.
_MODEL_FLAGS = {"model": "name", "embed_dim": "embed_dim",
                "hidden_dim": "hidden_dim", "latent_dim": "latent_dim",
                "lstm_impl": "lstm_impl"}
FLAGS = flags.FLAGS
flags.DEFINE_enum("size", "small", list(SIZES), "Preset sizes.")
flags.DEFINE_enum("model", benchmarking.MODEL.name, list(registry.MODELS),
                  "Model.")
for _name in ("batch_size", "seq_len", "vocab_size", "embed_dim",
              "hidden_dim", "latent_dim", "steps", "repeats"):
  flags.DEFINE_integer(_name, None, f"Overrides the preset's {_name}.",
                       lower_bound=1)
flags.DEFINE_list("critics", list(benchmarking.CRITICS), "Critics to time; "
                  "none is the plain VAE, aggressive He et al.'s training.")
flags.register_validator("critics", lambda v: set(v) <= set(
    benchmarking.CRITICS), f"--critics: known {benchmarking.CRITICS}")
flags.DEFINE_enum("jit_compile", "auto", ["on", "off", "auto"],
                  "XLA for the train step (auto: build.resolve_jit_compile).")
flags.DEFINE_enum("lstm_impl", "auto", list(fused_lstm.IMPLEMENTATIONS),
                  "LSTM layers: fused (CPU), keras (cuDNN) or auto.")
flags.DEFINE_integer("iw_samples", 500, "Importance samples of the timed "
                     "IW-NLL.", lower_bound=1)
flags.DEFINE_integer("iw_repeats", None, "Rounds of the IW-NLL, before and "
                     "after in turn.", lower_bound=1)
flags.DEFINE_bool("compare", None, "Also time the plain step with XLA "
                  "flipped and with Keras LSTMs (default: yes).")
flags.DEFINE_bool("bookkeeping", False, "Time the plain step alone, with "
                  "the non-finite mask read on the host every step, and "
                  "with it counted on the device (read every --log_every).")
flags.DEFINE_integer("log_every", 100, "--bookkeeping: steps between reads.",
                     lower_bound=1)
flags.DEFINE_string("json_out", None, "Write the results here as JSON.")
flags.DEFINE_string("markdown_out", "BENCHMARKS.md", "Regenerate this size's "
                    "section here ('' skips it).")

HEADER = """# Benchmarks

Written by `tf-cvae-benchmark --size=SIZE` (a section per size; with
`--bookkeeping`, a section per size and model), never by hand. FLOPs:
forward matmuls and convolutions from the shapes, 3 x what is trained, and
for the self, hybrid and NN critics their own backward pass through the
encoder (2 x its forward).
Peak: the best fp32 2048^3 `tf.matmul` in the same process. s/step: median
(best) of repeats after warm-up and compilation, rows round-robin in one
process; other processes slow it down (then fewer than 2 cores busy).
vs plain: the median over rounds of the row's time over the plain step's
in the same round. Aggressive: one encoder plus one decoder update.
PyTorch reference (text, with the `bench` extra): He et al.'s LSTM-VAE
written in PyTorch (tf_cvae/torch_reference.py), timed right after the
plain step in every round; its FLOPs are the plain step's.
"""

SKIPPED_TORCH = ("PyTorch reference: skipped, torch is not installed "
                 "(pip install 'tf_cvae[bench]').")


def _override(fields: dict, field: str, flag_name: str) -> None:
  """fields[field] = the flag's value if given, or if the preset lacks it."""
  flag = FLAGS[flag_name]
  if flag.value is not None and (flag.present or field not in fields):
    fields[field] = (tuple(flag.value) if isinstance(flag.value, list)
                     else flag.value)


def bench_config() -> benchmarking.BenchConfig:
  """The preset of --size, with the flags given on the command line."""
  fields = dict(SIZES[FLAGS.size])
  model = dict(fields.pop("model", {}))
  for flag_name, field in _MODEL_FLAGS.items():
    _override(model, field, flag_name)
  for field in dataclasses.fields(benchmarking.BenchConfig):
    if field.name in FLAGS and field.name not in _MODEL_FLAGS:
      _override(fields, field.name, field.name)
  return benchmarking.BenchConfig(
      model=dataclasses.replace(benchmarking.MODEL, **model), **fields)


def describe(config) -> str:
  """The machine, the versions and the model's shapes, as a sentence."""
  model = config.model
  shape = (f"length {config.seq_len}, vocabulary {config.vocab_size}, "
           f"embedding {model.embed_dim}, hidden {model.hidden_dim}, LSTM "
           f"{fused_lstm.resolve_impl(model.lstm_impl)}"
           if config.data_kind == "text" else
           f"ResNet {model.resnet_channels} channels, PixelCNN "
           f"{model.pixelcnn_layers} + 1 layers of {model.pixelcnn_channels}"
           if model.name == "pixelcnn" else f"hidden {model.hidden_dim}")
  gpus = len(tf.config.list_physical_devices("GPU"))
  return (f"{datetime.date.today()}, {platform.machine()} "
          f"{benchmarking.cpu_name()}, {os.cpu_count()} CPU cores, {gpus} "
          f"GPUs; Python {platform.python_version()}, "
          f"TensorFlow {tf.__version__}, Keras {keras.__version__}. "
          f"{model.name}: batch {config.batch_size}, {shape}, latent "
          f"{model.latent_dim}.")


def markdown_section(size: str, config, results: dict) -> str:
  """This size's BENCHMARKS.md section."""
  first = next(iter(results.values()))
  lines = [f"## {size}", "", f"{describe(config)} Peak "
           f"{first['peak_gflops']:.0f} GFLOP/s; the process kept "
           f"{first['cores_busy_while_timing']:.2f} cores busy while timing; "
           f"the 1-minute load average was "
           f"{first['load_average_before_timing']:.1f} before (above "
           f"{os.cpu_count()}: other processes shared the cores, so read the "
           f"ratios, each taken within a round, rather than the seconds).",
           "", "| step | XLA | s/step | vs plain | GFLOP/step | GFLOP/s | "
           "fraction of peak | best s/step | best fraction |",
           "|---|---|---|---|---|---|---|---|---|"]
  for name, row in results.items():
    lines.append(
        f"| {name} | {'on' if row['jit_compile'] else 'off'} | "
        f"{row['seconds_per_step']:.4f} | {row['ratio_to_plain']:.2f} | "
        f"{row['flops_per_step'] / 1e9:.1f} | {row['achieved_gflops']:.0f} | "
        f"{row['fraction_of_peak']:.2f} | {row['best_seconds_per_step']:.4f} "
        f"| {row['best_fraction_of_peak']:.2f} |")
  reference = results.get(benchmarking.TORCH)
  if reference:
    lines += ["", f"Plain step against the PyTorch reference (PyTorch "
              f"{reference['torch_version']}, {reference['torch_threads']} "
              f"threads; He et al.'s LSTM-VAE at the same shapes, SGD, "
              f"timed right after the plain step in each round): "
              f"{reference['plain_over_reference']:.2f}x its time (median "
              f"of the rounds' ratios; below 1: faster)."]
  elif config.data_kind == "text" and "none" in results:
    lines += ["", SKIPPED_TORCH]
  if "evaluation" in results.get("none", {}):
    ev, pipe = results["none"]["evaluation"], results["none"]["pipeline"]
    memory = ", ".join(f"{k} samples {v:.0f} MB" for k, v in
                       ev["peak_memory_mb_by_iw_samples"].items())
    tokens = f", {ev['tokens']} token positions" if "tokens" in ev else ""
    lines += ["", f"IW-NLL ({ev['iw_samples']} samples in chunks of "
              f"{ev['iw_chunk_size']}, {ev['examples']} examples"
              f"{tokens}): {_iw_speed(ev)}{_iw_flops_note(ev)}; peak memory "
              f"({ev['memory_measured_as']}): {memory}. Input pipeline "
              f"alone: {pipe['examples_per_second']:.0f} examples/s; the "
              f"plain step takes {pipe['step_examples_per_second']:.0f}."]
  return "\n".join(lines) + "\n"


def _iw_speed(ev: dict) -> str:
  """Examples/s, against the batch repeated per sample where the decoder
  shares work across samples."""
  if "speedup" not in ev:
    return (f"{ev['examples_per_second']:.3g} examples/s (this decoder "
            f"scores the batch repeated per sample: nothing to share)")
  return (f"{ev['examples_per_second']:.3g} examples/s with the decoder's "
          f"work shared across samples, {ev['examples_per_second_before']:.3g}"
          f" with the batch repeated per sample as before "
          f"({ev['speedup']:.2f}x, median of the rounds' ratios)")


def _iw_flops_note(ev: dict) -> str:
  """The IW-NLL's matmul FLOPs and fraction of peak, where they are known."""
  if "flops" not in ev:
    return ""
  per_example = lambda key: ev[key] / ev["examples"] / 1e9
  return (f"; its matmuls {per_example('flops'):.1f} GFLOP an example "
          f"({per_example('flops_before'):.1f} repeated per sample, so "
          f"sharing saves at most {ev['flops_before'] / ev['flops']:.2f}x), "
          f"{ev['achieved_gflops']:.0f} GFLOP/s, "
          f"{ev['fraction_of_peak']:.2f} of peak")


def bookkeeping_fns(config) -> dict:
  """name -> zero-argument function: the plain train step alone; with the
  loop's work around it as it was, reading the non-finite mask (and the
  update count) on the host every step; and as it is, booked inside the
  step (a second TrainStep, same weights) and read every --log_every."""
  config = dataclasses.replace(config, critics=("none",), compare=False)
  dataset = benchmarking.synthetic_dataset(config, 4 * config.batch_size)
  batch = benchmarking.bench_batch(config, dataset)
  step, booking_step = (benchmarking.timed_fns(config, dataset, batch)[
      "none"][2] for _ in range(2))
  state = checkpointing.LoopState(booking_step, aggressive=False,
                                  max_bad_steps=20)
  booking_step.book_with(state.book)
  step_in_epoch, consecutive = (tf.Variable(0, dtype=tf.int64)
                                for _ in range(2))
  sums = tf.Variable(tf.zeros([len(validation.EPOCH_MEANS)], tf.float64))

  def host_read():
    out = step(batch)
    step_in_epoch.assign_add(1)
    nonfinite, _ = int(out.pop("nonfinite")), step.iterations
    if not nonfinite:
      if int(consecutive):
        consecutive.assign(0)
      sums.assign_add(tf.stack([tf.cast(out.get(k, 0.0), tf.float64)
                                for k in validation.EPOCH_MEANS]))
    _ = step.iterations % FLAGS.log_every     # the schedules' step number
    return out

  calls = [0]
  def device_count():
    out = booking_step(batch)
    calls[0] += 1
    if calls[0] % FLAGS.log_every == 0:
      state.bad_steps.check()
      _ = booking_step.iterations
    return out

  return {"plain step": lambda: step(batch),
          "host read every step": host_read, "device count": device_count}


def bookkeeping_section(size: str, config, seconds: dict, cores: float):
  """The BENCHMARKS.md section of --bookkeeping's timings."""
  plain = seconds["plain step"][0]
  lines = [f"## {size}, {config.model.name}: non-finite steps counted on the "
           "device", "", f"{describe(config)} The loop's work around the "
           "plain step: before, the step's non-finite mask and the update "
           "count were read on the host every step; now they are booked on "
           f"the device and read every {FLAGS.log_every} steps. The process "
           f"kept {cores:.2f} cores busy while timing.", "",
           "| loop | s/step | vs plain step | best s/step |",
           "|---|---|---|---|"]
  for name, (median, best) in seconds.items():
    lines.append(f"| {name} | {median:.5f} | {median / plain:.3f} | "
                 f"{best:.5f} |")
  ratio = seconds["device count"][0] / seconds["host read every step"][0]
  lines += ["", f"Device count against host read: {ratio:.3f} of the step "
            "time (medians, rounds in turn in one process)."]
  return "\n".join(lines) + "\n"


def update_markdown(path: str, size: str, section: str) -> None:
  """Replaces (or appends) the `## size` section of path, keeping others."""
  sections = {}
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      for part in f.read().split("\n## ")[1:]:
        sections[part.split("\n", 1)[0].strip()] = "## " + part.rstrip() + "\n"
  sections[size] = section
  with open(path, "w", encoding="utf-8") as f:
    f.write(HEADER + "".join("\n" + s for s in sections.values()))


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  tf.get_logger().setLevel("ERROR")     # retracing notes: a variant per model
  config = bench_config()
  if FLAGS.bookkeeping:
    rounds, cores = timing.round_robin(bookkeeping_fns(config),
                                       config.steps, config.repeats)
    results = {n: timing.median_and_best(r) for n, r in rounds.items()}
    section = bookkeeping_section(FLAGS.size, config, results, cores)
    title = section.split("\n", 1)[0][3:]
  else:
    if config.data_kind == "text" and not benchmarking.torch_available():
      print(SKIPPED_TORCH)
    results = benchmarking.run(config)
    section = markdown_section(FLAGS.size, config, results)
    title = FLAGS.size
  print(section)
  if FLAGS.json_out:
    with open(FLAGS.json_out, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=2, sort_keys=True)
  if FLAGS.markdown_out:
    update_markdown(FLAGS.markdown_out, title, section)


def main():
  """The tf-cvae-benchmark command: reads the command line, then
  times the train steps."""
  launch.run(_main)


if __name__ == "__main__":
  main()
