"""The tf-cvae-sample command as a script (tf_cvae/cli/sample.py)."""
from tf_cvae.cli import sample

if __name__ == "__main__":
  sample.main()
