"""The tf-cvae-evaluate command as a script (tf_cvae/cli/evaluate.py)."""
from tf_cvae.cli import evaluate

if __name__ == "__main__":
  evaluate.main()
