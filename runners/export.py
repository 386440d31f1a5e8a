"""Exports a trained run's encoder q(z|x) as a SavedModel.

  tf-cvae-export --run_dir=runs/quickstart/self
  tf-cvae-encode --export_dir=runs/quickstart/self/export \
      --input=sentences.txt --output=means.npy

The SavedModel's signatures `serving_default` and `encode` (one function,
also the loaded object's `encode`) take raw input: `sentences`, string
[batch] of whitespace-tokenized sentences (text runs), or `images`, float32
[batch, 28, 28, 1] in [0, 1] (image runs), and return `mean`,
`log_variance` and `sample`, each [batch, latent]. Loading it needs only
TensorFlow: tf.saved_model.load(export_dir).encode(...); `saved_model_cli
run --signature_def=encode` (or serving_default) serves it too.
EXPORT_DIR/tf_cvae_export.json names the run and the checkpoint exported
(--checkpoint: the last by default, as metrics.json, tf-cvae-evaluate and
tf-cvae-sample).
"""

import os
import sys

import tf_cvae_runners  # first: TensorFlow starts without its chatter
from tf_cvae_runners import common
from tf_cvae_runners import launch

from absl import app
from absl import flags

from tf_cvae import errors
from tf_cvae.trained import export
from tf_cvae.trained import restore

flags.DEFINE_string("run_dir", None, "Run directory written by "
                    "tf-cvae-train.", required=True)
flags.DEFINE_string("export_dir", None, "Where to write the SavedModel "
                    "(default: RUN_DIR/export); an existing one is replaced "
                    "once the new one is complete.")
flags.DEFINE_enum("checkpoint", restore.DEFAULT_CHECKPOINT,
                  list(restore.CHECKPOINTS), restore.CHECKPOINT_HELP)

FLAGS = flags.FLAGS


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  common.setup_logging()
  export_dir = FLAGS.export_dir or os.path.join(FLAGS.run_dir, "export")
  try:
    run = restore.restore_run(FLAGS.run_dir, FLAGS.checkpoint,
                              with_data=False)
  except errors.InputError as error:
    print(f"error: --run_dir={FLAGS.run_dir}: {error}", file=sys.stderr)
    sys.exit(2)
  print(export.export_encoder(run.vae, export_dir, run.vocab,
                              metadata=run.checkpoint_record()))


def main():
  """The tf-cvae-export command: reads the command line, then
  exports a run's encoder."""
  launch.run(_main)


if __name__ == "__main__":
  main()
