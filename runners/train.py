"""The tf-cvae-train command as a script (tf_cvae/cli/train.py)."""
from tf_cvae.cli import train

if __name__ == "__main__":
  train.main()
