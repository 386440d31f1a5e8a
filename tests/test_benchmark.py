"""The benchmark runner on a tiny size: its JSON, its markdown, its FLOPs."""

import json
import re
import time
from types import SimpleNamespace as ns

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import benchmarking
from tf_cvae.models import registry
from tf_cvae.training import build

TINY = ["--batch_size=4", "--seq_len=8", "--vocab_size=50", "--embed_dim=8",
        "--hidden_dim=16", "--latent_dim=4", "--steps=2", "--repeats=2",
        "--iw_samples=20"]


@pytest.mark.slow
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
  plain = rows["none"]
  # TINY's plain step by hand (B 4, T 8, E 8, H 16, Z 4, V 50): LSTM cells
  # 2 B (inputs + H) 4H a token, forward only; 3 x forward trained.
  encoder = 2 * 4 * 8 * (8 + 16) * 64 + 2 * 4 * 16 * 8
  decoder = 2 * 4 * 7 * ((8 + 4 + 16) * 64 + 16 * 50) + 2 * 4 * 4 * 16
  assert plain["flops_per_step"] == 3 * (encoder + decoder)
  assert plain["ratio_to_plain"] == 1.0
  assert plain["evaluation"]["examples_per_second"] > 0
  assert plain["evaluation"]["examples_per_second_before"] > 0
  assert set(plain["evaluation"]["peak_memory_mb_by_iw_samples"]) == {
      "50", "200", "500"}
  # The self critic's own clipped gradient is a second encoder backward.
  assert rows["self"]["flops_per_step"] == plain["flops_per_step"] + 2 * encoder
  evaluation = plain["evaluation"]
  shape = [evaluation["examples"],
           evaluation["tokens"] // evaluation["examples"]]
  assert evaluation["flops"] == benchmarking.iw_flops(
      sizes_stub(), {"tokens": np.zeros(shape)}, 20)["shared"]
  assert 0 < evaluation["fraction_of_peak"] == pytest.approx(
      evaluation["achieved_gflops"] / evaluation["peak_gflops"])
  assert plain["pipeline"]["examples_per_second"] > 0
  text = markdown.read_text()
  assert "so sharing saves at most" in text
  assert benchmarking.cpu_name() in text
  assert "## paper\n\nkept as it was" in text
  assert "## small" in text and "| aggressive |" in text


@pytest.mark.slow
def test_bookkeeping_rows_compare_the_loop_around_one_step(tmp_path,
                                                          run_runner):
  markdown = tmp_path / "BENCHMARKS.md"
  result = run_runner("benchmark.py", "--size=small", *TINY, "--bookkeeping",
                      "--log_every=5", f"--markdown_out={markdown}")
  assert result.returncode == 0, result.stderr[-3000:]
  text = markdown.read_text()
  assert "## small, lstm: non-finite steps counted on the device" in text
  rows = dict(re.findall(r"\| (plain step|host read every step|device "
                         r"count) \| ([0-9.]+) \|", text))
  assert set(rows) == {"plain step", "host read every step", "device count"}
  assert all(float(seconds) > 0 for seconds in rows.values())


def test_graph_flops_follow_the_closed_form_of_matmuls_and_convolutions():
  m, k, n = 3, 5, 7
  dense = keras.layers.Dense(n)
  inputs = tf.zeros([m, k])
  dense(inputs)
  assert benchmarking._graph_flops(dense, inputs) == 2 * m * n * k
  transposed = lambda a, b: tf.matmul(a, b, transpose_a=True)
  assert benchmarking._graph_flops(transposed, tf.zeros([k, m]),
                                   tf.zeros([k, n])) == 2 * m * n * k
  conv = keras.layers.Conv2D(4, 3, padding="same")
  images = tf.zeros([2, 6, 6, 3])
  conv(images)      # each of 2 x 6 x 6 x 4 outputs: a 3 x 3 x 3 window
  assert benchmarking._graph_flops(conv, images) == 2 * (2 * 6 * 6 * 4) * 27


def test_mlp_step_flops_match_a_hand_count():
  hidden, latent, batch_size, pixels = 8, 2, 4, 28 * 28
  config = benchmarking.BenchConfig(
      model=registry.ModelConfig(name="mlp", hidden_dim=hidden,
                                 latent_dim=latent), batch_size=batch_size)
  assert config.data_kind == "image"
  dataset = benchmarking.synthetic_dataset(config, 8)
  batch = benchmarking.bench_batch(config, dataset)
  step = build.build_train_step(
      benchmarking._train_config(config, "none"), dataset)
  step.build(batch)
  flops = benchmarking.count_flops(step, batch, "none")
  # Encoder: pixels -> hidden -> hidden -> (mu, logvar); decoder: z ->
  # hidden -> hidden -> pixel logits. 2 m n k a dense layer.
  encoder = 2 * batch_size * (pixels * hidden + hidden * hidden
                              + hidden * 2 * latent)
  decoder = 2 * batch_size * (latent * hidden + hidden * hidden
                              + hidden * pixels)
  assert flops["encoder"] == encoder and flops["decoder"] == decoder
  assert flops["critic"] == 0 and flops["step"] == 3 * (encoder + decoder)


def test_image_models_time_their_iw_nll_without_token_counts():
  # The image sizes' IW-NLL timing read batch["tokens"] and stopped there.
  config = benchmarking.BenchConfig(
      model=registry.ModelConfig(name="mlp", hidden_dim=8, latent_dim=2),
      iw_samples=4, iw_chunk_size=2, iw_repeats=1, eval_examples=2,
      memory_iw_samples=(2, 4))
  dataset = benchmarking.synthetic_dataset(config, 8)
  step = build.build_train_step(
      benchmarking._train_config(config, "none"), dataset)
  step.build(benchmarking.bench_batch(config, dataset))
  evaluation = benchmarking.measure_evaluation(step.vae, dataset, config,
                                               peak=100.0)
  assert evaluation["examples"] == 2
  assert evaluation["examples_per_second"] > 0
  assert set(evaluation["peak_memory_mb_by_iw_samples"]) == {"2", "4"}
  # Nothing shared across samples: no before/after pair, no token count.
  assert not {"tokens", "flops", "speedup", "examples_per_second_before"
              } & set(evaluation)


def test_bench_config_holds_a_model_config():
  config = benchmarking.BenchConfig()
  assert config.model == registry.ModelConfig(name="lstm", embed_dim=256,
                                              hidden_dim=512)
  assert config.data_kind == "text"
  train_config = benchmarking._train_config(config, "self")
  assert train_config.model == config.model and train_config.critic == "self"


def test_lstm_flops_follow_the_shapes():
  config = benchmarking.BenchConfig(
      batch_size=2, seq_len=5, vocab_size=30, model=registry.ModelConfig(
          name="lstm", embed_dim=3, hidden_dim=4, latent_dim=2))
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
  # The self critic's gradient, clipped apart, is a second encoder backward.
  step = build.build_train_step(
      benchmarking._train_config(config, "self"), dataset)
  step.build(batch)
  flops = benchmarking.count_flops(step, batch, "self")
  assert flops["step"] == 3 * (encoder + decoder + flops["critic"]) + 2 * encoder


def sizes_stub(e=8, h=16, z=4, vocab=50):
  """An object with the LSTM VAE's sizes, as iw_flops reads them."""
  lstm = ns(units=h)
  return ns(latent_dim=z, encoder=ns(embedding=ns(output_dim=e), lstm=lstm),
            decoder=ns(embedding=ns(output_dim=e), lstm=lstm,
                       to_vocab=ns(units=vocab), sample_log_likelihood=None))


def test_iw_flops_follow_the_shapes():
  # B 2, T 5 (4 predicted positions), E 3, H 4, Z 2, V 30, S 10 samples.
  flops = benchmarking.iw_flops(sizes_stub(3, 4, 2, 30),
                                {"tokens": np.zeros([2, 5])}, 10)
  encoder = 2 * 2 * 5 * (3 + 4) * 16 + 2 * 2 * 4 * 4
  rows = 10 * 2
  per_sample = 4 * (2 * rows * 4 * 16 + 2 * rows * 4 * 30)  # recurrence, vocab
  z_in = 2 * rows * 2 * 16 + 2 * rows * 2 * 4               # gates, cell
  assert flops["shared"] == encoder + per_sample + z_in + 4 * 2 * 2 * 3 * 16
  assert flops["repeated"] == (encoder + per_sample + 4 * 2 * rows * (3 + 2)
                               * 16 + 2 * rows * 2 * 4)
  assert flops["repeated"] > flops["shared"]
  # A decoder without the shared scoring (the image decoders): not counted.
  assert benchmarking.iw_flops(ns(latent_dim=2, decoder=ns()),
                               {"image": None}, 10) is None


def test_the_sections_name_the_cpu(tmp_path):
  cpuinfo = tmp_path / "cpuinfo"
  cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU 9000\n"
                     "flags\t\t: fpu avx2 avx512f fma\n\nprocessor\t: 1\n"
                     "model name\t: Other\n")
  assert benchmarking.cpu_name(str(cpuinfo)) == "Some CPU 9000 with AVX-512"
  cpuinfo.write_text("model name\t: Old CPU\nflags\t: fpu avx2\n")
  assert benchmarking.cpu_name(str(cpuinfo)) == "Old CPU"
  assert benchmarking.cpu_name(str(tmp_path / "absent"))      # a name, not an error


def test_peak_memory_sees_a_large_allocation():
  def allocate():
    block = np.ones(64 * 2**20 // 8)        # 64 MB
    time.sleep(0.05)                        # the sampler runs every 2 ms
    return block.sum()
  assert benchmarking.peak_memory_mb(allocate) > 50


def test_pytorch_reference_row_at_a_tiny_size(tmp_path, run_runner):
  pytest.importorskip("torch", reason="the bench extra (torch) is absent")
  markdown, out = tmp_path / "BENCHMARKS.md", tmp_path / "bench.json"
  result = run_runner("benchmark.py", "--size=small", *TINY,
                      "--critics=none,self", f"--json_out={out}",
                      f"--markdown_out={markdown}")
  assert result.returncode == 0, result.stderr[-3000:]
  rows = json.loads(out.read_text())
  reference = rows[benchmarking.TORCH]
  assert reference["seconds_per_step"] > 0 and reference["torch_threads"] >= 1
  assert reference["flops_per_step"] == rows["none"]["flops_per_step"]
  assert reference["plain_over_reference"] > 0
  text = markdown.read_text()
  assert f"| {benchmarking.TORCH} | off |" in text
  assert "Plain step against the PyTorch reference" in text


def test_pytorch_reference_step_learns_the_batch():
  torch_reference = pytest.importorskip(
      "tf_cvae.torch_reference", reason="the bench extra (torch) is absent")
  rng = np.random.default_rng(0)
  tokens = rng.integers(4, 30, (8, 6))
  tokens[:, 0], tokens[:, -1] = 1, 2            # <s> ... </s>
  step = torch_reference.train_step_fn(tokens, 30, 8, 16, 2, dropout=0.0)
  losses = [step() for _ in range(60)]
  # Untrained, each of 5 words costs about log 30 nats (KL near 0); without
  # using z the best is 4 log 26 (4 uniform words of 26, then </s>).
  start, floor = 5 * np.log(30), 4 * np.log(26)
  assert abs(losses[0] - start) < 0.5
  assert losses[-1] < (start + floor) / 2


def test_without_torch_the_reference_step_is_left_out(monkeypatch):
  monkeypatch.setattr(benchmarking, "torch_available", lambda: False)
  config = benchmarking.BenchConfig(batch_size=2, seq_len=5, vocab_size=30)
  batch = {"tokens": tf.ones([2, 5], tf.int32)}
  assert benchmarking.torch_step(config, batch) is None
