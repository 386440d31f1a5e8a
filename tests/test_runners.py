"""The runners as a user calls them: subprocesses, exit codes, files, errors."""

import json

import pytest

TINY = ["--embed_dim=16", "--hidden_dim=16", "--latent_dim=4",
        "--decoder_dropout=0", "--iw_samples=4", "--iw_chunk_size=4",
        "--eval_examples=64", "--log_every=5"]


def _assert_one_clear_error(result, *needles):
  assert result.returncode != 0
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  for needle in needles:
    assert needle in result.stderr, result.stderr[-2000:]


def test_train_runner_writes_metrics(tmp_path, run_runner):
  out = tmp_path / "run"
  result = run_runner("train.py", "--max_steps=10", f"--out_dir={out}", *TINY)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(out / "metrics.json") as f:
    metrics = json.load(f)
  for key in ("nll", "kl", "mi", "au", "infonce_bound", "ppl"):
    assert key in metrics
  assert metrics["steps"] == 10
  assert json.loads(result.stdout)["out_dir"] == str(out)
  assert "step 10" in result.stderr          # progress lines


def test_quickstart_prints_both_rows(tmp_path, run_runner):
  result = run_runner("quickstart.py", "--flagfile=flags/quickstart.cfg",
                "--max_steps=10", f"--quickstart_dir={tmp_path}", *TINY)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  header = next(i for i, l in enumerate(lines) if l.startswith("run "))
  for column in ("nll", "kl", "mi", "au", "infonce_bound"):
    assert column in lines[header]
  assert lines[header + 1].startswith("plain VAE")
  assert lines[header + 2].startswith("self critic")
  assert (tmp_path / "none" / "metrics.json").exists()
  assert (tmp_path / "self" / "metrics.json").exists()


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
