"""The tf-cvae-export command as a script (tf_cvae/cli/export.py)."""
from tf_cvae.cli import export

if __name__ == "__main__":
  export.main()
