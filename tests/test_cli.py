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
  assert re.fullmatch(r"quickstart +The main job: plain VAE, self-critic VAE "
                      r"and BN-VAE on the embedded synthetic text\.",
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
  # Training longer, evaluating otherwise, logging or saving more often:
  # the same run.
  for change in (dict(epochs=config.epochs + 1), dict(max_steps=8),
                 dict(eval=dataclasses.replace(config.eval, iw_samples=7)),
                 dict(log_every=3, checkpoint_every=9)):
    assert config_lib.default_run_name(
        dataclasses.replace(config, **change)) == name, change
  other = dataclasses.replace(config, batch_size=config.batch_size + 1)
  assert config_lib.default_run_name(other)[:-8] == name[:-8]
  assert config_lib.default_run_name(other) != name


def test_a_config_mismatch_names_every_field_with_both_values(tmp_path):
  saved = config_lib.TrainConfig(out_dir=str(tmp_path))
  config_lib.write_json(str(tmp_path / "config.json"),
                        dataclasses.asdict(saved))
  mine = dataclasses.replace(
      saved, batch_size=7, model=dataclasses.replace(saved.model,
                                                     latent_dim=16))
  with pytest.raises(errors.InputError) as refused:
    config_lib.check_resumable(str(tmp_path), dataclasses.asdict(mine))
  message = str(refused.value)
  assert f"latent_dim 16 vs {saved.model.latent_dim}" in message
  assert f"batch_size 7 vs {saved.batch_size}" in message
  assert "different model, batch_size" in message and "\n" not in message
  # The same files named relative to the working directory: the same run.
  config_lib.check_resumable(str(tmp_path), dataclasses.asdict(saved))


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
  text = provenance.run_flagfile(config)
  assert f"--out_dir={os.path.abspath(config.out_dir)}\n" in text
  assert "--preset" not in text
  path = _write(tmp_path / "flags.cfg", text)
  assert train_flags_parsed(f"--flagfile={path}") == dataclasses.replace(
      config, out_dir=os.path.abspath(config.out_dir))
  # The same flags give the same run directory: rerunning resumes.
  assert train_flags_parsed("--iw_report=", "--noaggressive",
                            "--preset=quickstart", "--critic_target=inf",
                            "--epochs=2").out_dir == config.out_dir
  # A preset overrides the flags before it (its epochs=12 here); a longer
  # run is the same run, in the same directory.
  before = train_flags_parsed("--epochs=2", "--preset=quickstart",
                              "--critic_target=inf", "--iw_report=")
  assert before.epochs == 12 and before.out_dir == config.out_dir
  other = train_flags_parsed("--preset=quickstart", "--critic_target=inf",
                             "--iw_report=", "--epochs=2", "--seed=1")
  assert other.out_dir != config.out_dir


@pytest.mark.slow
def test_help_lists_the_commands_own_flags_quietly(tmp_path):
  result = _command("train", "--help", cwd=str(tmp_path))
  assert result.returncode == 0, result.stderr
  for needle in ("--critic_weight: lambda", "--batch_size: Batch size K",
                 "(default: '32')", "--preset: Read the flags of a preset",
                 "--[no]verbose", "tf-cvae-train --preset=quickstart"):
    assert needle in result.stdout, result.stdout
  assert not [line for line in result.stderr.splitlines()
              if any(c in line for c in CHATTER)], result.stderr
  loud = _command("train", "--help", "--verbose", cwd=str(tmp_path))
  assert any(c in loud.stderr for c in CHATTER), loud.stderr
  # A bad flag in a fresh process: its one line alone, no start-up lines.
  bad = _command("train", "--dataset=nope", cwd=str(tmp_path))
  assert bad.returncode == 2
  assert bad.stderr.splitlines() == [BAD_DATASET], bad.stderr


def test_preset_list_and_an_unknown_preset(tmp_path, run_runner):
  listed = run_runner("train.py", "--preset=list", cwd=tmp_path)
  assert listed.returncode == 0, listed.stderr
  assert listed.stdout.splitlines() == presets.listing().splitlines()
  unknown = run_runner("quickstart.py", "--preset=nope", cwd=tmp_path)
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
  with pytest.raises(errors.InputError, match="batch_size 32 vs 7"):
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
  script = ("import runpy, sys; sys.modules['matplotlib'] = None; "
            "sys.argv = ['experiments/reproduce.py', '--only=table']; "
            f"runpy.run_path({os.path.join(_REPO_ROOT, 'experiments', 'reproduce.py')!r},"
            " run_name='__main__')")
  result = subprocess.run([sys.executable, "-c", script], capture_output=True,
                          text=True, cwd=str(tmp_path), env=env, timeout=600)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      "error: experiments/reproduce.py draws its figures with matplotlib: "
      "pip install \"tf_cvae[plots]\""]


COMMANDS = ("train", "evaluate", "export", "encode", "sample", "compare",
            "benchmark", "quickstart")


def test_every_command_s_help_exits_0(tmp_path, run_runner, run_experiment):
  for name in COMMANDS:
    result = run_runner(f"{name}.py", "--help", cwd=tmp_path)
    assert result.returncode == 0, (name, result.stderr[-2000:])
    assert f"tf-cvae-{name}" in result.stdout or "--" in result.stdout, name
  for script in ("reproduce.py", "matched_mi.py"):      # not installed
    result = run_experiment(script, "--help")
    assert result.returncode == 0, (script, result.stderr[-2000:])
    assert "--" in result.stdout, script


@pytest.mark.parametrize("argv, line", [
    (["--batch_size=0"], "error: --batch_size: 0 is not a positive integer"),
    (["--batch_size=x"], "error: --batch_size: invalid literal for int() "
     "with base 10: 'x'"),
    (["--dataset=nope"], "error: --dataset: 'nope': value should be one of "
     "<binarized_mnist|"),
    (["--batch_siz=4"], "error: --batch_siz: unknown flag (did you mean "
     "batch_size?)"),
    (["--iw_report=0,3"], "error: --iw_report: '0,3': give positive integers "
     "separated by commas, e.g. 20,100"),
])
def test_a_bad_flag_is_one_line_and_exit_2(argv, line, train_flags_parsed,
                                           capsys):
  from tf_cvae_runners import launch
  flags.FLAGS.unparse_flags()
  with pytest.raises(SystemExit) as done:
    launch.parse_flags(["prog", *argv])
  assert done.value.code == 2
  err = capsys.readouterr().err
  assert len(err.splitlines()) == 1 and err.startswith(line), err


BAD_DATASET = (
    "error: --dataset: 'nope': value should be one of <binarized_mnist|images|"
    "mnist|omniglot|ptb|synthetic_images|synthetic_text|text|yahoo|yelp>")


def test_a_bad_flag_from_the_command_line(tmp_path, run_runner):
  result = run_runner("train.py", "--dataset=nope", cwd=tmp_path)
  assert result.returncode == 2
  assert result.stderr.splitlines() == [BAD_DATASET]
  missing = run_runner("evaluate.py", cwd=tmp_path)
  assert (missing.returncode, missing.stderr.splitlines()) == (
      2, ["error: --run_dir: required, and not given"])


TINY_TEXT = ("--dataset=text", "--train_file=corpus/train.txt",
             "--valid_file=corpus/valid.txt", "--test_file=corpus/test.txt",
             "--embed_dim=8", "--hidden_dim=8", "--latent_dim=2",
             "--iw_samples=2", "--iw_chunk_size=2", "--iw_report=",
             "--eval_examples=16", "--log_every=2")


def _run_dir(stderr: str) -> str:
  found = re.search(r"\] run directory (\S+); resume with: ", stderr)
  assert found, stderr[-3000:]
  return found.group(1)


@pytest.mark.slow
def test_training_longer_continues_the_run_from_any_folder(tmp_path,
                                                           text_files,
                                                           run_runner):
  work = tmp_path / "work"
  for split in ("train", "valid", "test"):
    _write(work / "corpus" / f"{split}.txt",
           open(text_files[f"{split}_file"], encoding="utf-8").read())
  first = run_runner("train.py", *TINY_TEXT, "--max_steps=4", cwd=str(work))
  assert first.returncode == 0, first.stderr[-3000:]
  run = work / _run_dir(first.stderr)
  assert json.loads((run / "metrics.json").read_text())["steps"] == 4
  # A larger --max_steps: the same run directory, resumed at step 4.
  longer = run_runner("train.py", *TINY_TEXT, "--max_steps=8", cwd=str(work))
  assert longer.returncode == 0, longer.stderr[-3000:]
  assert work / _run_dir(longer.stderr) == run
  assert re.search(r"resumed from \S+ckpt-4 at step 4", longer.stderr)
  assert json.loads((run / "metrics.json").read_text())["steps"] == 8
  # flags.cfg holds absolute paths: from another folder it continues too.
  cfg = (run / "flags.cfg").read_text()
  assert f"--train_file={work / 'corpus' / 'train.txt'}\n" in cfg
  assert f"--out_dir={run}\n" in cfg
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  again = run_runner("train.py", f"--flagfile={run / 'flags.cfg'}",
                   "--max_steps=10", cwd=str(elsewhere))
  assert again.returncode == 0, again.stderr[-3000:]
  assert re.search(r"resumed from \S+ckpt-8 at step 8", again.stderr)
  assert json.loads((run / "metrics.json").read_text())["steps"] == 10
  assert not os.listdir(elsewhere)
  # A refusal is the refusal alone (in a fresh process: no start-up lines
  # either): another run's flags on this directory, and missing data, which
  # leaves no run directory behind.
  clash = _command("train", f"--flagfile={run / 'flags.cfg'}",
                   "--latent_dim=3", cwd=str(elsewhere))
  assert clash.returncode == 2
  assert clash.stderr.splitlines() == [
      f"error: --out_dir: {run} holds a run with a different model: "
      f"latent_dim 3 vs 2 (this command vs {run / 'config.json'}); pass a "
      "new --out_dir or delete the old run"], clash.stderr
  missing = _command("train", *TINY_TEXT, "--train_file=corpus/gone.txt",
                     "--out_dir=fresh", cwd=str(work))
  assert missing.returncode == 2
  errors_ = [l for l in missing.stderr.splitlines() if l.startswith("error:")]
  assert len(errors_) == 1 and "gone.txt" in errors_[0], missing.stderr
  assert "resume with" not in missing.stderr
  assert not (work / "fresh").exists()
