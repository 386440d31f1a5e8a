"""Decodes from a trained run: prior samples, reconstructions, interpolations.

  tf-cvae-sample --run_dir=runs/quickstart/self --num_samples=5
  tf-cvae-sample --run_dir=RUN --mode=reconstruct --input=lines.txt
  tf-cvae-sample --run_dir=RUN --mode=interpolate --input=test:0,1

Restores the VAE of --run_dir (--checkpoint; by default the last, as
metrics.json, tf-cvae-evaluate and tf-cvae-export; no data files needed
unless --input names a split). --mode=prior
decodes z ~ N(0, I); reconstruct decodes the posterior means of the inputs;
interpolate decodes --num_steps evenly spaced points from one input's mean
to the next's, for the pairs (1st, 2nd), (3rd, 4th), ... --input is a text
file (one sentence a line, no blank line), a .npy file of images [N, 28,
28(, 1)] in [0, 1], or split:indices of the run's data set (default: the
first test examples). Text goes to stdout and to OUTPUT_DIR/<mode>.txt (a
reconstruction: "< input" over "> decoded"; an interpolation: the second
input's weight, then the sentence); images to OUTPUT_DIR/<mode>.png, a grid
(1 is drawn white): reconstructions as rows of inputs over rows of their
decodings, interpolations one pair a row, framed by the two inputs.
--decoding=beam (text only) decodes the most probable sentence a beam of
--beam_size hypotheses finds. OUTPUT_DIR/<mode>.json names the run and
the checkpoint decoded (also logged).
"""

import json
import os

import tf_cvae_runners  # first: TensorFlow starts without its chatter
from tf_cvae_runners import common
from tf_cvae_runners import launch

from absl import app
from absl import flags
from absl import logging
import numpy as np

from tf_cvae import errors
from tf_cvae.trained import restore
from tf_cvae.trained import sampling

flags.DEFINE_string("run_dir", None, "Run directory written by "
                    "tf-cvae-train.", required=True)
flags.DEFINE_enum("mode", "prior", ["prior", "reconstruct", "interpolate"],
                  "What to decode.")
flags.DEFINE_enum("decoding", "greedy", list(sampling.DECODINGS),
                  "greedy: the most probable word or pixel at each step; "
                  "sample: ancestral sampling; beam (text only): the most "
                  "probable sentence a beam of --beam_size finds.")
flags.DEFINE_integer("beam_size", sampling.DEFAULT_BEAM_SIZE,
                     "--decoding=beam: hypotheses kept at each step (1 is "
                     "greedy decoding).", lower_bound=1)
flags.DEFINE_bool("beam_normalize_length", False, "--decoding=beam: rank "
                  "sentences by log-probability per word (</s> counted), "
                  "not in total, which favours short sentences less.")
flags.DEFINE_integer("num_samples", 10, "--mode=prior: how many samples; "
                     "reconstruct: how many test examples by default.",
                     lower_bound=1)
flags.DEFINE_string("input", None, "Text file, .npy file of images, or "
                    "split:i,j,... (default: the first test examples).")
flags.DEFINE_integer("num_steps", 8, "--mode=interpolate: points per pair, "
                     "the two means included.", lower_bound=2)
flags.DEFINE_integer("max_words", 40, "Text: words per decoded sentence at "
                     "most.", lower_bound=1)
flags.DEFINE_integer("columns", 10, "Images: tiles per row of the grid.",
                     lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of z ~ p(z) and of --decoding=sample.")
flags.DEFINE_enum("checkpoint", restore.DEFAULT_CHECKPOINT,
                  list(restore.CHECKPOINTS), restore.CHECKPOINT_HELP)
flags.DEFINE_string("output_dir", None, "Where the .txt / .png go (default: "
                    "RUN_DIR/samples).")
FLAGS = flags.FLAGS


def _inputs(vae, vocab, default_count: int):
  source = FLAGS.input or "test:" + ",".join(map(str, range(default_count)))
  return sampling.read_inputs(vae, source, FLAGS.run_dir, vocab)


def check_beam_flags():
  """Raises errors.InputError for a beam flag without --decoding=beam."""
  for name in ("beam_size", "beam_normalize_length"):
    if FLAGS[name].present and FLAGS.decoding != "beam":
      raise errors.InputError(f"--{name} is for --decoding=beam only")


def decode_run():
  """Decodes as the flags say: (text lines, or None; images [N, 28, 28, 1]
  for the grid, or None; the grid's columns; run.checkpoint_record())."""
  run = restore.restore_run(FLAGS.run_dir, FLAGS.checkpoint, with_data=False)
  return _decode(run) + (run.checkpoint_record(),)


def _decode(run):
  """decode_run's decoding, from a restored run."""
  vae, vocab = run.vae, run.vocab
  if FLAGS.decoding == "beam" and vocab is None:
    raise errors.InputError("--decoding=beam decodes text; this run's model "
                            "decodes images (use greedy or sample)")
  options = dict(decoding=FLAGS.decoding, seed=FLAGS.seed, vocab=vocab,
                 max_words=FLAGS.max_words, beam_size=FLAGS.beam_size,
                 normalize_length=FLAGS.beam_normalize_length)
  if FLAGS.mode == "prior":
    z = sampling.prior_latents(vae.latent_dim, FLAGS.num_samples, FLAGS.seed)
    decoded = sampling.decode(vae, z, **options)
    return (decoded, None, FLAGS.columns) if vocab is not None else (
        None, decoded, FLAGS.columns)
  if FLAGS.mode == "reconstruct":
    batch, given = _inputs(vae, vocab, FLAGS.num_samples)
    _, decoded = sampling.reconstruct(vae, batch, **options)
    if vocab is not None:
      return [f"{mark} {sentence}" for pair in zip(given, decoded)
              for mark, sentence in zip(("<", ">"), pair)], None, 0
    columns = min(FLAGS.columns, len(decoded))
    return None, sampling.paired_rows(given, decoded, columns), columns
  batch, given = _inputs(vae, vocab, 2)
  _, decoded = sampling.interpolate(vae, batch, FLAGS.num_steps, **options)
  if vocab is not None:
    weights = np.linspace(0.0, 1.0, FLAGS.num_steps)
    return [f"{w:.2f} {sentence}" for path in decoded
            for w, sentence in zip(weights, path)], None, 0
  return None, sampling.framed_interpolations(
      given, decoded), FLAGS.num_steps + 2


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  common.setup_logging()
  common.run_or_explain(check_beam_flags,
                        context=f"--decoding={FLAGS.decoding}")
  lines, images, columns, record = common.run_or_explain(
      decode_run, context=f"--run_dir={FLAGS.run_dir}")
  output_dir = FLAGS.output_dir or os.path.join(FLAGS.run_dir, "samples")
  os.makedirs(output_dir, exist_ok=True)
  path = os.path.join(output_dir, FLAGS.mode)
  with open(path + ".json", "w", encoding="utf-8") as f:
    json.dump(dict(record, mode=FLAGS.mode, decoding=FLAGS.decoding), f,
              indent=2, sort_keys=True)
  logging.info("decoding the %s checkpoint %s", record["checkpoint"],
               record["checkpoint_path"])
  if images is not None:
    print(sampling.write_png(path + ".png", images, columns))
    return
  with open(path + ".txt", "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))
  logging.info("wrote %s.txt", path)


def main():
  """The tf-cvae-sample command: reads the command line, then
  decodes from a run."""
  launch.run(_main)


if __name__ == "__main__":
  main()
