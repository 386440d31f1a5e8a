"""--deterministic: two runs with one seed write the same metrics.json.

Three tiny training runs (runners/train.py in subprocesses, run side by
side): seeds 1, 1 and 2. Every key of metrics.json must match byte for byte
between the first two, except the wall-clock timings TIMING_KEYS
(train_seconds, eval_seconds, seconds_per_step: they measure the machine,
not the model); the third must differ. (On CPU the runs also repeat
without the flag; enable_op_determinism matters on GPU.)
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMING_KEYS = frozenset({"train_seconds", "eval_seconds", "seconds_per_step"})
# 10 steps an epoch: one validation pass (the best checkpoint is evaluated).
TINY = ["--embed_dim=16", "--hidden_dim=16", "--latent_dim=4",
        "--batch_size=8", "--max_steps=12", "--iw_samples=5",
        "--iw_chunk_size=5", "--eval_examples=16", "--valid_examples=16",
        "--critic=self", "--log_every=10", "--checkpoint_every=10",
        "--deterministic"]


def _corpus(folder) -> list[str]:
  """--{train,valid,test}_file flags of a small random corpus.

  Every sentence has 6 words: one batch shape, so tracing stays short.
  """
  rng = np.random.default_rng(0)
  words = [f"w{i}" for i in range(40)]
  flags = []
  for split, count in (("train", 80), ("valid", 16), ("test", 16)):
    path = folder / f"{split}.txt"
    path.write_text("".join(" ".join(rng.choice(words, 6)) + "\n"
                            for _ in range(count)))
    flags.append(f"--{split}_file={path}")
  return flags


def _run_all(runs: dict[str, list[str]]) -> dict[str, dict]:
  """Runs train.py once per entry, side by side: name -> its metrics.json."""
  procs = {name: subprocess.Popen(
      [sys.executable, os.path.join(_REPO_ROOT, "runners", "train.py"), *args],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=_REPO_ROOT)
      for name, args in runs.items()}
  results = {}
  for name, proc in procs.items():
    try:
      _, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
      for other in procs.values():
        other.kill()
      raise
    assert proc.returncode == 0, stderr[-3000:]
    assert "deterministic ops on" in stderr, stderr[-3000:]
    out_dir = next(a.split("=", 1)[1] for a in runs[name]
                   if a.startswith("--out_dir="))
    with open(os.path.join(out_dir, "metrics.json")) as f:
      results[name] = json.load(f)
  return results


def _without_timings(metrics: dict) -> str:
  """The metrics as JSON without timings, also inside test_last and
  test_best."""
  def strip(values):
    return {k: strip(v) if isinstance(v, dict) else v
            for k, v in values.items() if k not in TIMING_KEYS}
  return json.dumps(strip(metrics), sort_keys=True)


def test_same_seed_same_metrics_other_seed_other_metrics(tmp_path):
  data = ["--dataset=text", *_corpus(tmp_path)]
  runs = {name: [*TINY, *data, f"--seed={seed}",
                 f"--out_dir={tmp_path / name}"]
          for name, seed in (("a", 1), ("b", 1), ("c", 2))}
  metrics = _run_all(runs)
  assert {"nll", "kl", "mi", "mi_full", "au", "elbo"} <= set(metrics["a"])
  assert set(metrics["a"]) == set(metrics["b"])
  # Only timings are left out, and only the names above.
  assert {k for k in metrics["a"] if "seconds" in k} <= TIMING_KEYS
  assert _without_timings(metrics["a"]) == _without_timings(metrics["b"])
  assert metrics["a"]["nll"] != metrics["c"]["nll"]
  assert _without_timings(metrics["a"]) != _without_timings(metrics["c"])

