"""The tf-cvae-quickstart command as a script (tf_cvae/cli/quickstart.py)."""
from tf_cvae.cli import quickstart

if __name__ == "__main__":
  quickstart.main()
