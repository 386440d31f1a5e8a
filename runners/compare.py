"""The tf-cvae-compare command as a script (tf_cvae/cli/compare.py)."""
from tf_cvae.cli import compare

if __name__ == "__main__":
  compare.main()
