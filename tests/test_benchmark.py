"""The benchmark runner on a tiny size: its JSON, its markdown, its FLOPs."""

import json
import time

import numpy as np
import pytest
import tensorflow as tf

from tf_cvae.experiments import benchmarking
from tf_cvae.training import build

TINY = ["--batch_size=4", "--seq_len=8", "--vocab_size=50", "--embed_dim=8",
        "--hidden_dim=16", "--latent_dim=4", "--steps=2", "--repeats=2",
        "--iw_samples=20"]


def test_runner_writes_json_and_keeps_other_markdown_sections(tmp_path,
                                                              run_runner):
  markdown = tmp_path / "BENCHMARKS.md"
  markdown.write_text("# Benchmarks\n\n## paper\n\nkept as it was\n")
  out = tmp_path / "bench.json"
  result = run_runner("benchmark.py", "--size=small", *TINY,
                      f"--json_out={out}", f"--markdown_out={markdown}")
  assert result.returncode == 0, result.stderr[-3000:]
  rows = json.loads(out.read_text())
  assert set(benchmarking.CRITICS) <= set(rows)
  for row in rows.values():
    for key in ("seconds_per_step", "flops_per_step", "achieved_gflops",
                "peak_gflops", "fraction_of_peak", "ratio_to_plain",
                "best_seconds_per_step", "best_fraction_of_peak"):
      assert row[key] > 0, key
    assert row["best_seconds_per_step"] <= row["seconds_per_step"]
    assert row["achieved_gflops"] * 1e9 == pytest.approx(
        row["flops_per_step"] / row["seconds_per_step"])
  plain = rows["none"]
  assert plain["ratio_to_plain"] == 1.0
  assert plain["evaluation"]["examples_per_second"] > 0
  assert set(plain["evaluation"]["peak_memory_mb_by_iw_samples"]) == {
      "50", "200", "500"}
  assert plain["pipeline"]["examples_per_second"] > 0
  text = markdown.read_text()
  assert "## paper\n\nkept as it was" in text
  assert "## small" in text and "| aggressive |" in text


def test_lstm_flops_follow_the_shapes():
  config = benchmarking.BenchConfig(batch_size=2, seq_len=5, vocab_size=30,
                                    embed_dim=3, hidden_dim=4, latent_dim=2)
  dataset = benchmarking.synthetic_dataset(config, 8)
  step = build.build_train_step(
      benchmarking._train_config(config, "none"), dataset)
  batch = {"tokens": tf.constant(np.stack([np.pad(s, (0, 5 - len(s)))
                                           for s in dataset.splits["train"][:2]]))}
  step.build(batch)
  flops = benchmarking.count_flops(step, batch, "none")
  encoder = 2 * 2 * 5 * (3 + 4) * 16 + 2 * 2 * 4 * 4
  decoder = 2 * 2 * 4 * ((3 + 2 + 4) * 16 + 4 * 30) + 2 * 2 * 2 * 4
  assert flops["encoder"] == encoder and flops["decoder"] == decoder
  assert flops["step"] == 3 * (encoder + decoder)


def test_peak_memory_sees_a_large_allocation():
  def allocate():
    block = np.ones(64 * 2**20 // 8)        # 64 MB
    time.sleep(0.05)                        # the sampler runs every 2 ms
    return block.sum()
  assert benchmarking.peak_memory_mb(allocate) > 50
