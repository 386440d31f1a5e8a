"""python runners/benchmark.py: the tf-cvae-benchmark command (tf_cvae/cli/benchmark.py)."""
from absl import app

from tf_cvae.cli import benchmark

if __name__ == "__main__":
  app.run(benchmark.main)
