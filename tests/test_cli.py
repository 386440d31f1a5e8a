"""The command line: presets and nested flagfiles, --help, quiet start-up,
the default run directory and what a training command writes before it
trains (flags.cfg, provenance.json)."""

import dataclasses
import glob
import json
import os
import re
import subprocess
import sys

from tf_cvae_runners import presets

from absl import flags
import pytest

from tf_cvae import errors
from tf_cvae.training import config as config_lib

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# TensorFlow's C++ start-up lines that a quiet start drops.
CHATTER = ("oneDNN custom operations", "cpu_feature_guard",
           "absl::InitializeLog()")


def _command(module: str, *args: str, cwd: str):
  """Runs `python -m tf_cvae_runners.<module> args` in cwd with no
  TF_CPP_MIN_LOG_LEVEL in its environment."""
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  return subprocess.run([sys.executable, "-m", f"tf_cvae_runners.{module}", *args],
                        capture_output=True, text=True, cwd=cwd, env=env,
                        timeout=600)


def _write(path, text: str) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)
  return str(path)


def test_nested_flagfiles_resolve_beside_the_including_file(tmp_path,
                                                            monkeypatch):
  _write(tmp_path / "a" / "inner.cfg", "# the base\n--seed=1\n\n--batch_size=8\n")
  _write(tmp_path / "a" / "outer.cfg", "--flagfile=inner.cfg\n--seed=2\n")
  # The old form, relative to the working directory, still reads.
  _write(tmp_path / "a" / "old.cfg", "--flagfile=a/inner.cfg\n")
  monkeypatch.chdir(tmp_path)
  argv = ["prog", "--batch_size=4", "--flagfile=a/outer.cfg", "--seed=5"]
  # In place: what comes later wins, as with absl's --flagfile.
  assert presets.expand_argv(argv) == [
      "prog", "--batch_size=4", "--seed=1", "--batch_size=8", "--seed=2",
      "--seed=5"]
  assert presets.expand_argv(["prog", "--flagfile", "a/old.cfg"]) == [
      "prog", "--seed=1", "--batch_size=8"]
  assert presets.expand_argv(["prog", "--", "--flagfile=x"]) == [
      "prog", "--", "--flagfile=x"]
  monkeypatch.chdir(tmp_path / "a")       # the same from another directory
  assert presets.expand_argv(["prog", "--flagfile=outer.cfg"])[1:] == [
      "--seed=1", "--batch_size=8", "--seed=2"]


def test_bad_flagfiles_and_presets_are_one_error_naming_them(tmp_path):
  missing = _write(tmp_path / "m.cfg", "--flagfile=gone.cfg\n")
  with pytest.raises(errors.InputError, match=r"m\.cfg: --flagfile line: "
                     r"cannot read .*gone\.cfg: No such file"):
    presets.expand_argv(["prog", f"--flagfile={missing}"])
  loop = _write(tmp_path / "loop.cfg", "--flagfile=loop.cfg\n")
  with pytest.raises(errors.InputError, match="cycle"):
    presets.expand_argv(["prog", f"--flagfile={loop}"])
  with pytest.raises(errors.InputError, match=r"^--preset=nope: unknown "
                     r"preset; known: .*quickstart"):
    presets.expand_argv(["prog", "--preset=nope"])


def test_presets_are_the_flagfiles_of_flags(tmp_path):
  shipped = sorted(os.path.basename(p)[:-4] for p in
                   glob.glob(os.path.join(_REPO_ROOT, "flags", "*.cfg")))
  assert presets.names() == shipped and "quickstart" in shipped
  expanded = presets.expand_argv(["prog", "--preset", "ptb_cpu_self",
                                  "--seed=3"])
  assert "--dataset=text" in expanded and "--critic=self" in expanded
  assert expanded[-1] == "--seed=3"
  assert presets.expand_argv(["prog", "--preset=x"], with_presets=False) == [
      "prog", "--preset=x"]
  lines = presets.listing().splitlines()
  assert len(lines) == len(shipped)
  assert re.fullmatch(r"quickstart +The main job: plain VAE vs self-critic "
                      r"VAE on the embedded synthetic text\.",
                      lines[shipped.index("quickstart")])
  assert presets.wants_listing(["prog", "--preset=list"])
  assert presets.wants_listing(["prog", "--preset", "list"])
  assert not presets.wants_listing(["prog", "--", "--preset=list"])


def test_default_run_name_is_a_pure_function_of_the_config():
  config = config_lib.TrainConfig(critic="self", seed=3)
  name = config_lib.default_run_name(config)
  assert re.fullmatch(r"synthetic_text_lstm_self_seed3_[0-9a-f]{8}", name)
  moved = dataclasses.replace(config, out_dir="elsewhere")
  assert config_lib.default_run_name(moved) == name
  longer = dataclasses.replace(config, epochs=config.epochs + 1)
  assert config_lib.default_run_name(longer)[:-8] == name[:-8]
  assert config_lib.default_run_name(longer) != name


@pytest.fixture
def train_flags_parsed(monkeypatch):
  """parse(*argv) -> TrainConfig as tf-cvae-train builds it; the flags are
  unparsed again after the test."""
  from tf_cvae_runners import common
  if "lr_patience" not in flags.FLAGS:
    common.define_train_flags()
  monkeypatch.chdir(_REPO_ROOT)

  def parse(*argv):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(presets.expand_argv(["prog", *argv]))
    return common.train_config_from_flags()

  yield parse
  flags.FLAGS.unparse_flags()


def test_flags_cfg_rebuilds_the_same_config(tmp_path, train_flags_parsed):
  from tf_cvae_runners import provenance
  config = train_flags_parsed("--preset=quickstart", "--critic_target=inf",
                              "--iw_report=", "--epochs=2", "--noaggressive")
  assert config.out_dir == os.path.join("runs",
                                        config_lib.default_run_name(config))
  text = provenance.train_flagfile(out_dir=config.out_dir)
  assert f"--out_dir={config.out_dir}\n" in text and "--preset" not in text
  path = _write(tmp_path / "flags.cfg", text)
  assert train_flags_parsed(f"--flagfile={path}") == config
  # The same flags give the same run directory: rerunning resumes.
  assert train_flags_parsed("--iw_report=", "--noaggressive",
                            "--preset=quickstart", "--critic_target=inf",
                            "--epochs=2").out_dir == config.out_dir
  # A preset overrides the flags before it (its epochs=12 here).
  before = train_flags_parsed("--epochs=2", "--preset=quickstart",
                              "--critic_target=inf", "--iw_report=")
  assert before.epochs == 12 and before.out_dir != config.out_dir


@pytest.mark.slow
def test_help_lists_the_commands_own_flags_quietly(tmp_path):
  result = _command("train", "--help", cwd=str(tmp_path))   # absl: exit 1
  for needle in ("--critic_weight: lambda", "--batch_size: Batch size K",
                 "(default: '32')", "--preset: Read the flags of a preset",
                 "--[no]verbose", "tf-cvae-train --preset=quickstart"):
    assert needle in result.stdout, result.stdout
  assert not [line for line in result.stderr.splitlines()
              if any(c in line for c in CHATTER)], result.stderr
  loud = _command("train", "--help", "--verbose", cwd=str(tmp_path))
  assert any(c in loud.stderr for c in CHATTER), loud.stderr


@pytest.mark.slow
def test_preset_list_and_an_unknown_preset(tmp_path):
  listed = _command("train", "--preset=list", cwd=str(tmp_path))
  assert listed.returncode == 0, listed.stderr
  assert listed.stdout.splitlines() == presets.listing().splitlines()
  unknown = _command("quickstart", "--preset=nope", cwd=str(tmp_path))
  assert unknown.returncode == 2
  assert unknown.stderr.strip().splitlines() == [
      f"error: --preset=nope: unknown preset; known: "
      f"{', '.join(presets.names())} (or list)"]


def test_run_files_record_each_start_and_refuse_another_run(
    tmp_path, train_flags_parsed):
  from tf_cvae_runners import provenance
  config = dataclasses.replace(train_flags_parsed("--preset=quickstart"),
                               out_dir=str(tmp_path / "run"))
  argv = ["/venv/bin/tf-cvae-train", "--preset=quickstart", "--note=a b"]
  provenance.write_run_files(config, argv[:2], "--seed=0\n")
  provenance.write_run_files(config, argv, "--seed=0\n")
  run = tmp_path / "run"
  assert (run / "flags.cfg").read_text() == "--seed=0\n"
  with open(run / "provenance.json", encoding="utf-8") as f:
    record = json.load(f)
  assert record["command"] == "tf-cvae-train --preset=quickstart '--note=a b'"
  assert [start["argv"] for start in record["earlier_starts"]] == [argv[:2]]
  assert set(record["versions"]) == {"python", "tf_cvae", "tensorflow",
                                     "tensorflow_probability", "keras"}
  assert "/physical_device:CPU:0" in record["devices"] and record["hostname"]
  if os.path.isdir(os.path.join(_REPO_ROOT, ".git")):   # a git checkout
    assert re.fullmatch(r"[0-9a-f]{40}", record["git"]["revision"])
    assert isinstance(record["git"]["dirty"], bool)
  assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00",
                      record["started"])
  # A directory holding another run is refused before anything is written.
  config_lib.write_json(str(run / "config.json"), dataclasses.asdict(
      dataclasses.replace(config, batch_size=7)))
  with pytest.raises(errors.InputError, match="different batch_size"):
    provenance.write_run_files(config, argv, "--seed=1\n")
  assert (run / "flags.cfg").read_text() == "--seed=0\n"


def test_resume_command_adds_the_run_directory(tmp_path, train_flags_parsed):
  from tf_cvae_runners import provenance
  train_flags_parsed("--preset=quickstart")
  argv = ["/venv/bin/tf-cvae-train", "--preset=quickstart", "--note=a b"]
  assert provenance.resume_command(argv, "runs/x") == (
      "tf-cvae-train --preset=quickstart '--note=a b' "
      f"--out_dir={os.path.join(_REPO_ROOT, 'runs', 'x')}")
  train_flags_parsed("--out_dir=mine")        # given: the command as typed
  assert provenance.resume_command(argv[:2], "mine") == (
      "tf-cvae-train --preset=quickstart")


@pytest.mark.slow
def test_reproduce_without_matplotlib_names_the_extra(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  script = ("import sys; sys.modules['matplotlib'] = None; "   # not installed
            "sys.argv = ['tf-cvae-reproduce', '--only=table']; "
            "from tf_cvae_runners import reproduce; reproduce.main()")
  result = subprocess.run([sys.executable, "-c", script], capture_output=True,
                          text=True, cwd=str(tmp_path), env=env, timeout=600)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      "error: tf-cvae-reproduce draws its figures with matplotlib: "
      "pip install \"tf_cvae[plots]\""]
