"""The tf-cvae-encode command as a script (tf_cvae/cli/encode.py)."""
from tf_cvae.cli import encode

if __name__ == "__main__":
  encode.main()
