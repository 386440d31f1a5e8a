"""python runners/compare.py: the tf-cvae-compare command (tf_cvae/cli/compare.py)."""
from absl import app

from tf_cvae.cli import compare

if __name__ == "__main__":
  app.run(compare.main)
