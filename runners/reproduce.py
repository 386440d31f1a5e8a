"""The tf-cvae-reproduce command as a script (tf_cvae/cli/reproduce.py)."""
from tf_cvae.cli import reproduce

if __name__ == "__main__":
  reproduce.main()
