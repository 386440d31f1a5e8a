"""python runners/reproduce.py: the tf-cvae-reproduce command (tf_cvae/cli/reproduce.py)."""
from absl import app

from tf_cvae.cli import reproduce

if __name__ == "__main__":
  app.run(reproduce.main)
