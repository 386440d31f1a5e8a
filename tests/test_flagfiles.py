"""Every flagfile in flags/ parses with the train runner's flags, and says
what its name promises. Parsing only: nothing trains here."""

import dataclasses
import glob
import os

from tf_cvae_runners import presets

from absl import flags
import pytest

from tf_cvae import critics
from tf_cvae import data as data_lib
from tf_cvae.models import registry

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGFILES = sorted(os.path.relpath(p, REPO_ROOT) for p in
                   glob.glob(os.path.join(REPO_ROOT, "flags", "*.cfg")))
PAPER_DATA = ("yahoo", "yelp", "omniglot")
PAPER_METHODS = ("vae", "anneal", "aggressive", "self", "hybrid", "nn")
PAPER = [f"flags/{d}_{m}.cfg" for d in PAPER_DATA for m in PAPER_METHODS]
CPU = {"flags/ptb_cpu.cfg": "text", "flags/mnist_cpu.cfg": "binarized_mnist",
       "flags/synthetic_images_cpu.cfg": "synthetic_images"}


@pytest.fixture(scope="module")
def common():
  """runners/common.py with the train flags defined in absl's FLAGS."""
  from tf_cvae_runners import common as common_module
  if "lr_patience" not in flags.FLAGS:
    common_module.define_train_flags()
  return common_module


@pytest.fixture
def parse(common, monkeypatch):
  """parse(*argv) -> TrainConfig, as train.py would build it from argv
  (flagfiles and presets read by tf_cvae_runners.presets, then absl)."""
  monkeypatch.chdir(REPO_ROOT)

  def parse_argv(*argv):
    try:
      flags.FLAGS(presets.expand_argv(["train.py", *argv]))
      return common.train_config_from_flags(out_dir="unused")
    finally:
      flags.FLAGS.unparse_flags()

  return parse_argv


def test_the_experiments_have_their_flagfiles():
  missing = sorted((set(PAPER) | set(CPU)) - set(FLAGFILES))
  assert not missing
  for base in CPU:
    assert base.replace(".cfg", "_self.cfg") in FLAGFILES


@pytest.mark.parametrize("path", FLAGFILES)
def test_flagfile_lines_are_flags_or_comments(path):
  with open(os.path.join(REPO_ROOT, path), encoding="utf-8") as f:
    lines = [l.strip() for l in f if l.strip() and not l.startswith("#")]
  assert lines
  for line in lines:
    # absl keeps anything after the value, a trailing comment included.
    assert line.startswith("--") and "#" not in line and " " not in line, line


@pytest.mark.parametrize("path", FLAGFILES)
def test_flagfile_parses_into_a_train_config(path, parse):
  config = parse(f"--flagfile={path}")
  kind = data_lib.kind(config.data.name)
  model = registry.resolve_model_name(config.model, kind)
  assert model in (("lstm",) if kind == "text" else ("pixelcnn", "mlp"))
  assert config.critic in critics.CRITICS


@pytest.mark.parametrize("path", PAPER)
def test_paper_flagfiles_follow_the_papers_protocol(path, parse):
  config = parse(f"--flagfile={path}")
  data, method = os.path.basename(path)[:-len(".cfg")].split("_")
  assert config.data.name == data
  assert config.eval.iw_samples == 500
  assert (config.lr_patience, config.max_lr_decays,
          config.lr_warmup_epochs) == (2, 5, 15)
  assert config.model.latent_dim == 32
  if data == "omniglot":
    assert (config.model.name, config.optimizer, config.learning_rate,
            config.batch_size) == ("pixelcnn", "adam", 1e-3, 50)
    assert (config.model.resnet_channels, config.model.pixelcnn_layers,
            config.model.pixelcnn_channels) == (64, 12, 32)
  else:
    assert (config.model.name, config.optimizer, config.learning_rate,
            config.clip_norm, config.batch_size) == ("lstm", "sgd", 1.0, 5.0,
                                                     32)
    assert (config.model.embed_dim, config.model.hidden_dim,
            config.model.decoder_dropout) == (512, 1024, 0.5)
  objective = config.objective
  assert config.aggressive == (method == "aggressive")
  assert (objective.kl_anneal_steps > 0) == (method == "anneal")
  assert objective.kl_weight == 1.0 and objective.free_bits == 0.0
  if method in ("self", "hybrid", "nn"):
    assert config.critic == method and objective.critic_weight > 0
  else:
    assert config.critic == "none"


@pytest.mark.parametrize("base", sorted(CPU))
def test_cpu_flagfiles_and_their_self_critic_twins(base, parse):
  plain = parse(f"--flagfile={base}")
  critic = parse(f"--flagfile={base.replace('.cfg', '_self.cfg')}")
  assert plain.data.name == CPU[base] and plain.critic == "none"
  assert critic.critic == "self" and critic.objective.critic_weight > 0
  # The twin changes the critic and its objective settings, nothing else.
  assert dataclasses.replace(critic, critic="none",
                             objective=plain.objective) == plain


def test_command_line_flags_after_a_flagfile_override_it(parse):
  config = parse("--flagfile=flags/yahoo_self.cfg", "--critic_weight=2",
                 "--seed=3", "--critic_target=inf")
  assert (config.objective.critic_weight, config.seed) == (2.0, 3)
  assert config.objective.critic_target == critics.NO_TARGET  # inf: no hinge


@pytest.mark.parametrize("argv, critic, kind", [
    (("--critic=self",), "self", "text"),
    (("--critic=hybrid",), "hybrid", "text"),
    (("--critic=nn",), "nn", "text"),
    (("--critic_side=model",), "model", "text"),
    (("--critic=self", "--critic_side=both"), "self", "text"),
    (("--critic=self", "--dataset=omniglot"), "self", "image"),
    (("--critic=hybrid", "--dataset=binarized_mnist"), "hybrid", "image")])
def test_a_critic_without_lambda_flags_takes_the_chosen_defaults(
    parse, argv, critic, kind):
  chosen = critics.DEFAULTS[kind][critic]
  objective = parse(*argv).objective
  assert (objective.critic_weight, objective.critic_target) == chosen
  assert objective.critic_lambda_kp == 1.0   # the proportional damper
  plain = parse().objective
  assert (plain.critic_weight, plain.critic_target) == (0.0, critics.NO_TARGET)
  # Each flag alone overrides its half of the default.
  assert parse(*argv, "--critic_weight=0.5").objective.critic_target == (
      chosen[1])
  assert parse(*argv, "--critic_target=2").objective.critic_weight == (
      chosen[0])


def test_unknown_flag_in_a_flagfile_is_refused(tmp_path, parse):
  bad = tmp_path / "bad.cfg"
  bad.write_text("--flagfile=flags/ptb_cpu.cfg\n--critic=self\n"
                 "--no_such_flag=3\n")
  with pytest.raises(flags.UnrecognizedFlagError, match="no_such_flag"):
    parse(f"--flagfile={bad}")
  outer = tmp_path / "outer.cfg"            # also when nested one level down
  outer.write_text(f"--flagfile={bad}\n")
  with pytest.raises(flags.UnrecognizedFlagError, match="no_such_flag"):
    parse(f"--flagfile={outer}")


def test_nested_flagfile_paths_are_relative_to_the_including_file(
    tmp_path, parse, monkeypatch):
  # Data files resolve against the data folder, the same from any folder
  # when it is given as an absolute path (as .ci/run and users give it).
  monkeypatch.setenv("TF_CVAE_DATA", os.path.abspath(os.environ.get(
      "TF_CVAE_DATA", os.path.join(REPO_ROOT, "..", "shared", "data"))))
  from_root = parse("--flagfile=flags/ptb_cpu_self.cfg")
  monkeypatch.chdir(tmp_path)
  elsewhere = parse(
      f"--flagfile={os.path.join(REPO_ROOT, 'flags/ptb_cpu_self.cfg')}")
  assert elsewhere == from_root and from_root.data.name == "text"
  assert parse("--preset=ptb_cpu_self") == from_root


def test_train_runner_reports_an_unknown_flag_in_one_line(tmp_path,
                                                          run_runner):
  bad = tmp_path / "bad.cfg"
  bad.write_text("--flagfile=flags/synthetic_images_cpu.cfg\n"
                 "--no_such_flag=3\n")
  result = run_runner("train.py", f"--flagfile={bad}")
  assert result.returncode == 2
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  assert "error: --no_such_flag: unknown flag" in result.stderr.splitlines()


@pytest.mark.parametrize("data", ["yahoo", "omniglot"])
def test_stronger_baseline_flagfiles_change_only_their_knob(data, parse):
  plain = parse(f"--flagfile=flags/{data}_vae.cfg")
  bn = parse(f"--flagfile=flags/{data}_bn_vae.cfg")
  assert bn.model.bn_gamma == 0.6
  assert dataclasses.replace(bn, model=plain.model) == plain
  cyclical = parse(f"--flagfile=flags/{data}_cyclical.cfg")
  pretrain = parse(f"--flagfile=flags/{data}_pretrain_fb.cfg")
  steps = 31250 if data == "yahoo" else 5190       # 10 epochs
  assert (cyclical.objective.kl_cycle_steps,
          cyclical.objective.kl_cycle_ratio) == (steps, 0.5)
  assert (pretrain.objective.pretrain_steps,
          pretrain.objective.free_bits) == (steps, 0.5)
  for config in (cyclical, pretrain):
    assert dataclasses.replace(config, objective=plain.objective) == plain
