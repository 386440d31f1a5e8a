"""python runners/sample.py: the tf-cvae-sample command (tf_cvae/cli/sample.py)."""
from absl import app

from tf_cvae.cli import sample

if __name__ == "__main__":
  app.run(sample.main)
