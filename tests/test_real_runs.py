"""Short training runs on the real data through runners/train.py."""

import json
import math
import os

import pytest

# Both train through the command.
pytestmark = pytest.mark.slow

SMALL = ["--embed_dim=32", "--hidden_dim=64", "--latent_dim=8",
         "--iw_samples=5", "--iw_chunk_size=5", "--eval_examples=200",
         "--valid_examples=200", "--log_every=20"]


def _metrics(out):
  with open(os.path.join(out, "metrics.json")) as f:
    return json.load(f)


def test_ptb_short_run_writes_metrics(tmp_path, data_file, run_runner):
  out = tmp_path / "ptb"
  result = run_runner("train.py", "--dataset=text",
                f"--train_file={data_file('ptb/ptb.valid.txt')}",
                f"--valid_file={data_file('ptb/ptb.valid.txt')}",
                f"--test_file={data_file('ptb/ptb.test.txt')}",
                "--max_steps=40", "--critic=self", f"--out_dir={out}", *SMALL)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = _metrics(out)
  with open(out / "vocab.txt") as f:
    vocab_size = len(f.read().split("\n")) - 1
  assert vocab_size > 5000
  assert all(math.isfinite(metrics[k]) for k in ("nll", "kl", "mi", "ppl"))
  # 40 SGD steps already beat a uniform guess over the vocabulary.
  assert metrics["ppl"] < vocab_size / 4
  assert metrics["steps"] == 40 and metrics["num_examples"] == 200


def test_binarized_mnist_short_run_writes_metrics(tmp_path, data_dir,
                                                  run_runner):
  out = tmp_path / "mnist"
  result = run_runner("train.py", "--dataset=binarized_mnist",
                      f"--data_dir={data_dir}",
                "--batch_size=50", "--max_steps=40", "--critic=hybrid",
                f"--out_dir={out}", *SMALL)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = _metrics(out)
  assert "ppl" not in metrics
  # Coin flips cost 784 log 2 = 543 nats; 40 Adam steps learn the strokes.
  assert 50.0 < metrics["nll"] < 400.0
  assert metrics["au"] >= 1
