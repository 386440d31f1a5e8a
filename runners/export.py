"""python runners/export.py: the tf-cvae-export command (tf_cvae/cli/export.py)."""
from absl import app

from tf_cvae.cli import export

if __name__ == "__main__":
  app.run(export.main)
