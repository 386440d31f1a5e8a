"""The tf-cvae-benchmark command as a script (tf_cvae/cli/benchmark.py)."""
from tf_cvae.cli import benchmark

if __name__ == "__main__":
  benchmark.main()
