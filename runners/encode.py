"""python runners/encode.py: the tf-cvae-encode command (tf_cvae/cli/encode.py)."""
from absl import app

from tf_cvae.cli import encode

if __name__ == "__main__":
  app.run(encode.main)
