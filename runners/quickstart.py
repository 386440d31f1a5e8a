"""python runners/quickstart.py: the tf-cvae-quickstart command (tf_cvae/cli/quickstart.py)."""
from absl import app

from tf_cvae.cli import quickstart

if __name__ == "__main__":
  app.run(quickstart.main)
