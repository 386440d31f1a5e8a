"""python runners/evaluate.py: the tf-cvae-evaluate command (tf_cvae/cli/evaluate.py)."""
from absl import app

from tf_cvae.cli import evaluate

if __name__ == "__main__":
  app.run(evaluate.main)
