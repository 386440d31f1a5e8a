"""The reproduction: a tiny grid on real Omniglot end to end (RESULTS.md, PNGs,
finished runs skipped), run naming, the defaults rule and the estimate."""

import dataclasses
import os
import re
import shutil
import time

from matplotlib import image as mpimg
import numpy as np
import pytest

from experiments.reproduction import cost
from experiments.reproduction import families as families_lib
from experiments.reproduction import report
from experiments.reproduction import reproduction as repro
from experiments.reproduction import scales
from experiments.reproduction import stats as stats_lib
from tf_cvae import critics
from tf_cvae import methods
from tf_cvae.training import config as config_lib

TINY = repro.Setup(
    "omniglot", dict(name="mlp", hidden_dim=16, latent_dim=4),
    batch_size=16, max_steps=3, epochs=1, valid_examples=32,
    eval=dict(iw_samples=2, iw_chunk_size=2, max_examples=32),
    paper="Omniglot")
# long_factor 1: the long-training reference is the plain VAE's directory.
TINY_SCALE = repro.Scale(
    setups={"omni": TINY}, table=("omni",), methods=("vae", "self"), seeds=2,
    sweep=("omni",), k=("omni",), lambdas=(2.0,), lambda_subset=(),
    anneal_fractions=(), betas=(), floors=(), batch_sizes=(8,),
    queue_sizes=(16,), long_factor=1)


@pytest.fixture(scope="module")
def grid(tmp_path_factory, data_dir):
  """The tiny grid trained once: (folder, runs, records)."""
  root = tmp_path_factory.mktemp("reproduce")
  runs = repro.plan(TINY_SCALE, data_dir=data_dir, out_dir=str(root / "runs"))
  records = {}
  for part in repro.PARTS:
    records.update(repro.execute([r for r in runs if r.part == part]))
  return root, runs, records


def test_tiny_grid_writes_results_and_plots(grid):
  root, runs, records = grid
  assert len(records) == 9            # 4 table + 3 sweep + 2 K directories
  assert {r["status"] for r in records.values()} <= {"done", "skipped"}
  md, png = root / "RESULTS.md", root / "png"
  choice = report.write("tiny", TINY_SCALE, runs, records, str(md), str(png))
  text = md.read_text()
  assert "| vae | 2 |" in text and "| self | 2 |" in text
  assert " ± " in text                      # mean ± s.e. over the 2 seeds
  # What each reading is worth, and how far 2 IW samples are from 500.
  assert "what the readings are worth" in text and "Noise floor" in text
  assert "| vae | 2 | " in text.split("what the readings are worth")[1]
  assert "IW-NLL by importance samples" in text
  for run in [r for r in runs if r.part == "table" and r.seed == 0]:
    c = records[run.config.out_dir]["iw_convergence"]
    assert c["nll_iw500"] <= c["nll_iw100"] + 0.5  # the bound tightens
    assert records[run.config.out_dir]["valid"]["num_examples"] == 32
  assert "89.41 / 1.51 / 1.43 / 3" in text  # the paper's Omniglot VAE row
  assert "Reading: the plain VAE" in text
  assert "## MI against K" in text and "### Chosen defaults" in text
  assert set(choice) == {"hybrid", "self"}
  pngs = sorted(os.listdir(png))
  assert pngs == ["omni_mi_per_epoch.png", "omni_mi_vs_k.png",
                  "omni_nll_vs_mi.png", "omni_tradeoff.png"]
  for name in pngs:
    assert (png / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert mpimg.imread(png / name).shape[0] > 100
    assert f"({os.path.relpath(png / name, root)})" in text


def test_second_invocation_skips_finished_runs(grid):
  _, runs, records = grid
  started = time.time()
  again = repro.execute(runs)
  assert {r["status"] for r in again.values()} == {"skipped"}
  assert time.time() - started < 10
  assert again.keys() == records.keys()


def test_table_seed_zero_reads_iw_convergence(grid, tmp_path):
  """A table run read with fewer than 500 IW samples gets its IW-NLL at 20,
  100 and 500 samples on seed 0; other seeds and the sweep's runs are not
  measured again."""
  _, runs, _ = grid
  def copied(run, name):
    out = str(tmp_path / name)
    shutil.copytree(run.config.out_dir, out)
    if os.path.exists(os.path.join(out, repro.CONVERGENCE_FILE)):
      os.remove(os.path.join(out, repro.CONVERGENCE_FILE))
    return dataclasses.replace(
        run, config=dataclasses.replace(run.config, out_dir=out))
  table = [r for r in runs if r.part == "table" and r.family == "self"]
  first = copied(next(r for r in table if r.seed == 0), "seed0")
  c = repro.readings(first)["iw_convergence"]
  assert 0 < c["num_examples"] <= 500
  assert c["nll_iw500"] <= c["nll_iw20"] + 0.5     # the bound tightens
  assert os.path.exists(os.path.join(first.config.out_dir,
                                     repro.CONVERGENCE_FILE))
  second = copied(next(r for r in table if r.seed == 1), "seed1")
  assert "iw_convergence" not in repro.readings(second)
  sweep = copied(next(r for r in runs if r.part == "sweep" and r.seed == 0),
                 "sweep")
  assert "iw_convergence" not in repro.readings(sweep)


def test_changed_config_in_a_finished_directory_is_refused(grid):
  _, runs, _ = grid
  other = dataclasses.replace(runs[0].config, max_steps=4)
  with pytest.raises(ValueError, match="another config"):
    repro.read_finished(other)


def test_equal_configs_share_a_directory():
  runs = repro.plan(scales.SCALES["paper"], data_dir="/data", out_dir="r")
  by_dir = {}
  for run in runs:
    by_dir.setdefault(run.config.out_dir, run.config)
    assert by_dir[run.config.out_dir] == run.config
  names = {os.path.basename(os.path.dirname(d)) for d in by_dir}
  # The table's self critic (lambda 3) is the sweep's lambda-3 point.
  assert {"self_w3", "self_w3_t1", "hybrid_w10", "hybrid_w10_t1", "beta0.5",
          "fb0.25", "anneal250", "anneal1000", "self_w3_b64", "self_w3_q224",
          "vae_epochs300"} <= names
  table = [(r.setup, r.family, r.seed) for r in runs if r.part == "table"]
  # The paper's table: 9 methods on 4 setups, 5 seeds each.
  assert len(table) == 4 * 9 * 5 and len(set(table)) == len(table)
  assert ("ptb", "hybrid", 4) in table
  assert ("omniglot", "free_bits_0.25", 0) in table


def test_method_config_step_fractions():
  base = repro.base_config(TINY, 0, "/data")
  config = methods.method_config(
      dataclasses.replace(base, max_steps=400), "self",
      {"objective": {"critic_warmup_steps": 0.25}, "num_negatives": 32})
  assert config.objective.critic_warmup_steps == 100
  assert config.num_negatives == 32 and config.critic == "self"
  annealed = methods.method_config(dataclasses.replace(base, max_steps=401),
                                   "kl_annealing")
  assert annealed.objective.kl_anneal_steps == 200


def _stats(nll, mi, test_nll=None):
  """Sweep stats read the same on validation and test (unless test_nll)."""
  stat = lambda v: (v, 0.0, 1)
  return {"nll": stat(nll if test_nll is None else test_nll), "mi": stat(mi),
          "mi_full": stat(mi), "valid:nll": stat(nll), "valid:mi": stat(mi),
          "valid:mi_full": stat(mi)}


def test_defaults_pick_most_mi_within_one_percent():
  families = families_lib.sweep_families(TINY_SCALE)
  stats = {("omni", "vae", None): _stats(100.0, 0.1),
           ("omni", "self", 1.0): _stats(100.5, 1.5),
           ("omni", "self", 4.0): _stats(104.0, 3.4),     # over 1%
           ("omni", "self, target 1 nat", 4.0): _stats(100.9, 2.0),
           ("omni", "hybrid", 1.0): _stats(102.0, 0.2)}
  choice = stats_lib.choose_defaults(stats, families, ["omni"],
                                    {"omni": "image"})
  assert choice["self"]["overall"] == {"image": (4.0, 1.0, "hinge")}
  assert choice["hybrid"]["overall"] == {"image": None}
  text = "\n".join(report.defaults_section(choice, stats))
  assert "self on image data: lambda 4, hinge at 1 nats" in text
  # The test split plays no part: a test NLL far over 1% changes nothing,
  # a validation NLL over 1% rules the point out.
  stats[("omni", "self, target 1 nat", 4.0)] = _stats(100.9, 2.0, 150.0)
  as_text = {"omni": "text"}
  assert stats_lib.choose_defaults(stats, families, ["omni"], as_text)["self"][
      "overall"]["text"] == (4.0, 1.0, "hinge")
  stats[("omni", "self, target 1 nat", 4.0)] = _stats(101.1, 2.0, 100.0)
  assert stats_lib.choose_defaults(stats, families, ["omni"], as_text)["self"][
      "overall"]["text"] == (1.0, None, "hinge")
  summary = "\n".join(report.sweep_section("omni", stats, families,
                                            "omni.png"))
  assert "first at 1 (MI 1.50, NLL +0.50%)" in summary
  assert "MI never rises" in summary             # hybrid


def test_defaults_are_chosen_per_kind_of_data():
  """Text and images choose apart: a setting need only be within the rule
  on every setup of its own kind."""
  families = families_lib.sweep_families(TINY_SCALE)
  stats = {}
  for setup, vae_nll, self_1, self_4 in (
      ("text_a", 100.0, (100.5, 1.5), (104.0, 3.4)),
      ("text_b", 50.0, (50.2, 1.2), (52.0, 3.0)),
      ("images", 80.0, (80.9, 0.9), (80.4, 3.1))):
    stats.update({(setup, "vae", None): _stats(vae_nll, 0.1),
                  (setup, "self", 1.0): _stats(*self_1),
                  (setup, "self", 4.0): _stats(*self_4)})
  kinds = {"text_a": "text", "text_b": "text", "images": "image"}
  choice = stats_lib.choose_defaults(stats, families, list(kinds), kinds)
  assert choice["self"]["overall"] == {"text": (1.0, None, "hinge"),
                                       "image": (4.0, None, "hinge")}
  np.testing.assert_allclose(choice["self"]["gain"]["text"], 1.25)
  np.testing.assert_allclose(choice["self"]["gain"]["image"], 3.0)
  # Pooled as one kind, no setting is within the rule everywhere.
  assert choice["self"]["overall"]["text"] != stats_lib.choose_defaults(
      stats, families, list(kinds), dict.fromkeys(kinds, "text"))["self"][
          "overall"]["text"]
  text = "\n".join(report.defaults_section(choice, stats))
  assert "- **self on image data: lambda 4, no target**" in text


def test_cell_and_estimate():
  assert stats_lib.cell((1.0, 0.5, 4)) == "1.00 ± 0.25"   # std / sqrt(n)
  assert stats_lib.cell((1.0, 0.0, 1)) == "1.00"
  run = repro.plan(TINY_SCALE, ("table",), 1, "/data", "r")[1]
  base = dict(startup=2.0, step=0.5, valid=1.0, eval=3.0, steps_per_epoch=2,
              inner_steps=0)
  calibration = {"omni": {"base": base, "vae": base,
                         "self": dict(base, step=1.0)}}
  # 3 steps of 1 s, 2 epochs of validation, startup 2 s, test 3 s.
  assert cost.estimate(TINY_SCALE, run, calibration) == 2 + 3 + 2 + 3


def test_the_plan_times_a_run_by_finished_runs_of_its_kind():
  """A run whose setup and kind have finished runs counts their mean wall
  time (training plus test), not the calibrated steps to its epoch cap."""
  runs = [r for r in repro.plan(TINY_SCALE, ("table",), 3, "/data", "r")
          if r.family in ("vae", "self")]
  base = dict(startup=2.0, step=0.5, valid=1.0, eval=3.0, steps_per_epoch=2,
              inner_steps=0)
  calibration = {"omni": {"base": base, "vae": base,
                         "self": dict(base, step=1.0)}}
  wall = lambda train: {"metrics": {"train_seconds": train,
                                    "eval_seconds": 30.0}}
  vaes = [r for r in runs if r.family == "vae"]
  records = {vaes[0].config.out_dir: wall(90.0),
             vaes[1].config.out_dir: wall(150.0)}
  lines = cost.describe(TINY_SCALE, runs, calibration, records)
  selfs = sum(r.family == "self" for r in runs)
  # One VAE left at (120 + 180) / 2 = 150 s; the self runs at 10 s each.
  expected = (150.0 + 10.0 * selfs) / 60
  assert f"total: {expected:.1f} minutes to train and evaluate " \
         f"{1 + selfs} runs" in lines[-1]
  assert "(1 of them timed by finished runs" in lines[-1]
  assert "finished runs took 5.0 minutes" in lines[-1]


def test_runner_refuses_an_unknown_part(run_experiment):
  result = run_experiment("reproduce.py", "--only=table,nope")
  assert result.returncode != 0
  assert "--only: unknown ['nope']" in result.stderr, result.stderr[-2000:]
  result = run_experiment("reproduce.py", "--methods=vae,selfish")
  assert result.returncode != 0
  assert "--methods: unknown ['selfish']" in result.stderr, (
      result.stderr[-2000:])


def test_report_only_writes_the_report_of_what_finished(tmp_path, data_dir,
                                                       run_experiment):
  md = tmp_path / "R.md"
  result = run_experiment("reproduce.py", "--scale=smoke", "--report_only",
                      "--only=table", "--methods=vae,self_default,nn_default",
                      f"--out_dir={tmp_path / 'runs'}",
                      f"--data_dir={data_dir}", f"--results_md={md}",
                      f"--plots_dir={tmp_path / 'png'}")
  assert result.returncode == 0, result.stderr[-2000:]
  text = md.read_text()
  assert "re-measured (incomplete: 0 of" in text      # nothing trained
  assert "| vae | 0 | not run yet |" in text
  assert "| self_default | 0 | not run yet |" in text
  assert "| hybrid_default |" not in text         # --methods leaves it out
  assert "Table seeds: 2 per method (mnist_mlp 1: fewer, for their " \
         "cost); the sweep: 1 per point" in text
  assert "--methods=vae,self_default,nn_default" in text   # the command
  assert "## The critics' defaults" in text          # no sweep in it
  assert not (tmp_path / "runs").exists()
  assert "ptb_mi_per_epoch.png" in os.listdir(tmp_path / "png")


def test_the_library_defaults_are_the_ones_results_md_chose():
  """critics.DEFAULTS holds what the committed RESULTS.md's "Chosen
  defaults" picked per kind of data; a critic it chose nothing for keeps
  its own, and the report says so for each swept critic and kind."""
  path = os.path.join(os.path.dirname(os.path.dirname(__file__)),
                      "RESULTS.md")
  with open(path, encoding="utf-8") as f:
    text = f.read()
  chosen = re.findall(r"^- \*\*(\w+) on (\w+) data: (.*?)\*\*", text,
                      re.MULTILINE)
  unchosen = re.findall(r"^- \*\*(\w+) on (\w+) data\*\*: no ", text,
                        re.MULTILINE)
  said = {(c, k) for c, k, _ in chosen} | set(unchosen)
  assert said >= {(c, k) for c in ("self", "hybrid")
                  for k in ("text", "image")}, (
      "RESULTS.md does not say what it chose for each critic and kind")
  for critic, kind, words in chosen:
    weight, target = critics.DEFAULTS[kind][critic]
    held = None if target == critics.NO_TARGET else target
    assert words in (stats_lib.describe_setting(weight, held, constraint)
                     for constraint in ("hinge", "lagrangian")), (
        critic, kind)


def test_how_a_target_is_held_matters_only_with_a_target():
  base = repro.base_config(scales.SCALES["cpu"].setups["ptb"], 0, "/data")
  plain = dataclasses.replace(base, objective=dataclasses.replace(
      base.objective, critic_target=critics.NO_TARGET))
  hinged = dataclasses.replace(plain, objective=dataclasses.replace(
      plain.objective, critic_constraint="hinge", critic_lambda_step=0.5))
  assert config_lib.same_run(plain, hinged) and plain != hinged
  with_target = [dataclasses.replace(c, objective=dataclasses.replace(
      c.objective, critic_target=2.0)) for c in (plain, hinged)]
  assert not config_lib.same_run(*with_target)


def test_a_run_name_spells_how_its_multiplier_differs():
  """Runs with other dampers or ceilings never share a directory: t1dual0.01
  is plain dual ascent, then max<ceiling>, p<gain> (the default's 1 too,
  so the runs from before it was the default keep their names) and lr (the
  step follows the learning rate) as they are set; a hinge spells none of
  them."""
  base = repro.base_config(scales.SCALES["cpu"].setups["ptb"], 0, "/data")
  def name(**objective):
    config = dataclasses.replace(base, critic="self", objective=(
        dataclasses.replace(base.objective, critic_weight=1.0,
                            critic_target=1.0, **objective)))
    return repro.run_name(config, base)
  assert name() == "self_w1_t1dual0.01p1"             # the defaults
  assert name(critic_lambda_kp=0.0) == "self_w1_t1dual0.01"
  assert name(critic_lambda_kp=0.0, critic_lambda_follows_lr=True) == (
      "self_w1_t1dual0.01lr")
  assert name(critic_lambda_max=10.0, critic_lambda_kp=1.0,
              critic_lambda_follows_lr=True) == "self_w1_t1dual0.01max10p1lr"
  assert name(critic_constraint="hinge", critic_lambda_kp=1.0) == "self_w1_t1"
