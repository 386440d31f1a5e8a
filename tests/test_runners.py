"""The runners as a user calls them: subprocesses, exit codes, files, errors."""

import json
import math
import re

import pytest

TINY = ["--embed_dim=16", "--hidden_dim=16", "--latent_dim=4",
        "--decoder_dropout=0", "--iw_samples=4", "--iw_chunk_size=4",
        "--eval_examples=64", "--log_every=5"]


def _assert_one_clear_error(result, *needles):
  assert result.returncode != 0
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  for needle in needles:
    assert needle in result.stderr, result.stderr[-2000:]


def _assert_plausible(metrics, latent_dim=4, vocab_size=None):
  """The test metrics of a run, within the ranges they are defined in."""
  for key in ("nll", "rec", "kl", "mi", "mi_full", "infonce_bound", "ppl"):
    assert math.isfinite(metrics[key]), key
  assert metrics["rec"] > 0 and metrics["kl"] >= 0
  assert metrics["elbo"] == pytest.approx(-(metrics["rec"] + metrics["kl"]))
  # The IW-NLL lies under the one-sample bound -ELBO (4 samples: up to noise).
  assert 0 < metrics["nll"] <= -metrics["elbo"] + 1.0
  # Per-word perplexity of the same IW-NLL.
  assert metrics["ppl"] == pytest.approx(math.exp(
      metrics["nll"] * metrics["num_examples"] / metrics["tokens"]), rel=1e-6)
  if vocab_size:   # no worse than a uniform guess over the vocabulary
    assert 1 < metrics["ppl"] < vocab_size
  # Batches of 32 but the last: log K is their size-weighted mean log size.
  n = metrics["num_examples"]
  sizes = [32] * (n // 32) + ([n % 32] if n % 32 else [])
  log_k = sum(s * math.log(s) for s in sizes) / n
  assert metrics["log_k"] == pytest.approx(log_k)
  assert metrics["mean_batch_size"] == pytest.approx(n / len(sizes))
  # MI and the InfoNCE bound are capped at log K; MI reads below 0 by
  # sampling noise only.
  assert -metrics["mi_noise_hi"] <= metrics["mi"] <= log_k + 1e-6
  assert metrics["infonce_bound"] <= log_k + 1e-6
  assert (-metrics["mi_noise_hi"] <= metrics["mi_full"]
          <= math.log(metrics["num_examples"]) + 1e-6)
  assert metrics["au"] == int(metrics["au"]) and 0 <= metrics["au"] <= latent_dim


@pytest.mark.slow
def test_train_runner_writes_metrics(tmp_path, run_runner):
  out = tmp_path / "run"
  result = run_runner("train.py", "--max_steps=10", f"--out_dir={out}",
                      "--json", *TINY)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(out / "metrics.json") as f:
    metrics = json.load(f)
  print({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
  assert metrics["steps"] == 10 and metrics["skipped_steps"] == 0
  assert metrics["num_examples"] == 64          # --eval_examples
  vocab_size = len((out / "vocab.txt").read_text().splitlines())
  _assert_plausible(metrics, vocab_size=vocab_size)
  assert metrics["test_last"]["nll"] == metrics["nll"]
  assert json.loads(result.stdout)["out_dir"] == str(out)
  # Progress lines every --log_every=5 steps (and every 30 s on a slow
  # machine), with finite losses.
  found = re.findall(r"epoch 1: (\d+)/10 steps \(.*?, loss=([-\d.e+]+)",
                     result.stderr)
  losses = {int(step): float(loss) for step, loss in found}
  assert {5, 10} <= set(losses) and all(0 < l < 1e3 for l in losses.values())


@pytest.mark.slow
def test_quickstart_prints_its_three_rows(tmp_path, run_runner):
  result = run_runner("quickstart.py", "--flagfile=flags/quickstart.cfg",
                "--max_steps=10", f"--quickstart_dir={tmp_path}", *TINY)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  header = next(i for i, l in enumerate(lines) if l.startswith("run "))
  columns = lines[header].split()[1:]
  for column in ("nll", "kl", "mi", "au", "infonce_bound"):
    assert column in columns
  read = {}
  for row, name, run_dir in ((1, "plain VAE", "none"),
                             (2, "self critic", "self"),
                             (3, "BN-VAE 0.7", "bn_vae")):
    line = lines[header + row]
    assert line.startswith(name)
    cells = line[len(name):].split()
    assert len(cells) == len(columns)
    with open(tmp_path / run_dir / "metrics.json") as f:
      metrics = json.load(f)
    _assert_plausible(metrics)
    read[run_dir] = metrics
    # The table prints the run's own metrics.json, to its precision.
    for column, cell in zip(columns, cells):
      value = metrics.get(column)
      if cell == "-":
        assert value is None, column
      else:
        assert float(cell) == pytest.approx(value, abs=0.0051), column
  # Ten steps leave the code near collapse: the self critic's bound is 0 up
  # to float rounding (about 2e-6 nats either side), never clearly below.
  assert read["self"]["infonce_bound"] > -1e-5
  with open(tmp_path / "bn_vae" / "flags.cfg") as f:
    flagfile = f.read().splitlines()
  assert "--bn_gamma=0.7" in flagfile and "--critic=none" in flagfile


def test_bad_dataset_name_names_the_flag(run_runner):
  _assert_one_clear_error(run_runner("train.py", "--dataset=nope"),
                          "--dataset")


def test_non_positive_batch_size_names_the_flag(run_runner):
  _assert_one_clear_error(run_runner("train.py", "--batch_size=0"),
                          "--batch_size")


def test_missing_data_file_is_one_clear_line(tmp_path, run_runner):
  result = run_runner("train.py", "--dataset=text",
                f"--train_file={tmp_path}/absent.txt",
                f"--valid_file={tmp_path}/absent.txt",
                f"--test_file={tmp_path}/absent.txt",
                f"--out_dir={tmp_path}/run")
  _assert_one_clear_error(result, "--dataset=text", "absent.txt")
  assert len([l for l in result.stderr.splitlines()
              if l.startswith("error:")]) == 1


def test_flagfile_with_unknown_flag_is_refused(tmp_path, run_runner):
  flagfile = tmp_path / "bad.cfg"
  flagfile.write_text("--critic=self\n--no_such_flag=3\n")
  _assert_one_clear_error(run_runner("train.py", f"--flagfile={flagfile}"),
                          "no_such_flag")


@pytest.mark.parametrize("flag", ["--critic=nope", "--jit_compile=maybe"])
def test_bad_enum_values_name_the_flag(flag, run_runner):
  _assert_one_clear_error(run_runner("train.py", flag), flag.split("=")[0])


@pytest.mark.slow
def test_training_ends_with_the_table_and_the_metrics_path(tmp_path,
                                                          run_runner):
  out = tmp_path / "run"
  result = run_runner("train.py", "--max_steps=3", f"--out_dir={out}", *TINY)
  assert result.returncode == 0, result.stderr[-3000:]
  header, row, path = result.stdout.strip("\n").split("\n")
  assert path == f"metrics: {out / 'metrics.json'}"
  with open(out / "metrics.json") as f:
    metrics = json.load(f)
  assert row.startswith(f"{out} (last, test) ")
  columns, cells = header.split()[1:], row.split()[-len(header.split()[1:]):]
  assert "nll" in columns and "mi" in columns
  for column, cell in zip(columns, cells):
    if cell != "-":
      assert float(cell) == pytest.approx(metrics[column], abs=0.0051), column
