"""python runners/train.py: the tf-cvae-train command (tf_cvae/cli/train.py)."""
from absl import app

from tf_cvae.cli import train

if __name__ == "__main__":
  app.run(train.main)
