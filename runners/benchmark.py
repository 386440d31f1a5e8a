"""Seconds per train step of every critic against the machine's matmul peak.

  python runners/benchmark.py --size=small      # B32 T40 V5k E256 H512
  python runners/benchmark.py --size=paper --critics=none,self

Prints and rewrites this size's section of --markdown_out (BENCHMARKS.md),
writes --json_out (critic -> numbers). Flags given override the preset.
"""

import dataclasses
import datetime
import json
import os
import platform

from absl import app
from absl import flags
import keras
import tensorflow as tf

from tf_cvae.experiments import benchmarking
from tf_cvae.models import fused_lstm

_IMAGES = dict(model="pixelcnn", batch_size=50, steps=3)
SIZES = {   # the paper's text size is He et al.'s (Yahoo)
    "small": dict(steps=10),
    "paper": dict(seq_len=80, vocab_size=20000, embed_dim=512, hidden_dim=1024,
                  steps=2, eval_examples=2, memory_iw_samples=(50, 500)),
    "images": dict(_IMAGES, eval_examples=4, memory_iw_samples=(50, 500)),
    "images_small": dict(_IMAGES, pixelcnn_layers=4, pixelcnn_channels=16,
                         resnet_channels=16),
}
FLAGS = flags.FLAGS
flags.DEFINE_enum("size", "small", list(SIZES), "Preset sizes.")
flags.DEFINE_enum("model", "lstm", ["lstm", "mlp", "pixelcnn"], "Model.")
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
flags.DEFINE_string("json_out", None, "Write the results here as JSON.")
flags.DEFINE_string("markdown_out", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "BENCHMARKS.md"), "Regenerate this size's section here ('' skips it).")

HEADER = """# Benchmarks

Written by `runners/benchmark.py --size=SIZE` (a section per size), never by
hand. FLOPs: forward matmuls and convolutions from the shapes, 3 x what is
trained. Peak: the best fp32 2048^3 `tf.matmul` in the same process. s/step:
median (best) of repeats after warm-up and compilation, rows round-robin in
one process; other processes slow it down (then fewer than 2 cores busy).
Aggressive: one encoder plus one decoder update.
"""


def bench_config() -> benchmarking.BenchConfig:
  """The preset of --size, with the flags given on the command line."""
  fields = dict(SIZES[FLAGS.size])
  for field in dataclasses.fields(benchmarking.BenchConfig):
    flag = FLAGS[field.name] if field.name in FLAGS else None
    if flag is not None and flag.value is not None and (
        flag.present or field.name not in fields):
      fields[field.name] = (tuple(flag.value) if isinstance(flag.value, list)
                            else flag.value)
  return benchmarking.BenchConfig(**fields)


def markdown_section(size: str, config, results: dict) -> str:
  """This size's BENCHMARKS.md section."""
  shape = {"lstm": f"length {config.seq_len}, vocabulary {config.vocab_size}"
           f", embedding {config.embed_dim}, hidden {config.hidden_dim}, LSTM "
           f"{fused_lstm.resolve_impl(config.lstm_impl)}",
           "mlp": f"hidden {config.hidden_dim}", "pixelcnn":
           f"ResNet {config.resnet_channels} channels, PixelCNN "
           f"{config.pixelcnn_layers} + 1 layers of {config.pixelcnn_channels}"
           }[config.model]
  first = next(iter(results.values()))
  gpus = len(tf.config.list_physical_devices("GPU"))
  lines = [f"## {size}", "", f"{datetime.date.today()}, {platform.machine()} "
           f"{os.cpu_count()} CPU cores, {gpus} GPUs; Python "
           f"{platform.python_version()}, TensorFlow {tf.__version__}, Keras "
           f"{keras.__version__}. {config.model}: batch {config.batch_size}, "
           f"{shape}, latent {config.latent_dim}. Peak "
           f"{first['peak_gflops']:.0f} GFLOP/s; the process kept "
           f"{first['cores_busy_while_timing']:.2f} cores busy while timing.",
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
  if "evaluation" in results.get("none", {}):
    ev, pipe = results["none"]["evaluation"], results["none"]["pipeline"]
    memory = ", ".join(f"{k} samples {v:.0f} MB" for k, v in
                       ev["peak_memory_mb_by_iw_samples"].items())
    lines += ["", f"IW-NLL ({ev['iw_samples']} samples in chunks of "
              f"{ev['iw_chunk_size']}, {ev['examples']} examples): "
              f"{ev['examples_per_second']:.2f} examples/s; peak memory "
              f"({ev['memory_measured_as']}): {memory}. Input pipeline "
              f"alone: {pipe['examples_per_second']:.0f} examples/s; the "
              f"plain step takes {pipe['step_examples_per_second']:.0f}."]
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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  tf.get_logger().setLevel("ERROR")     # retracing notes: a variant per model
  config = bench_config()
  results = benchmarking.run(config)
  section = markdown_section(FLAGS.size, config, results)
  print(section)
  if FLAGS.json_out:
    with open(FLAGS.json_out, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=2, sort_keys=True)
  if FLAGS.markdown_out:
    update_markdown(FLAGS.markdown_out, FLAGS.size, section)


if __name__ == "__main__":
  app.run(main)
