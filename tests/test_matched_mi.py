"""The matched-MI study's choices: a knob chosen on validation MI, the runs'
configs, and the report's paired comparison (experiments/matched_mi.py)."""

import importlib.util
import json
import os
import sys
import types

import numpy as np
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def mm():
  name = "matched_mi"
  if name not in sys.modules:
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(REPO_ROOT, "experiments", "matched_mi.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
  return sys.modules[name]


def _write(study, point, what, payload):
  path = os.path.join(study.results_dir, f"{point.name}.{what}.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump(payload, f)


def _calibrated(mm, tmp_path, method, readings):
  study = mm.Study("synthetic_text", str(tmp_path / "runs"),
                   str(tmp_path / "results"))
  for knob, mi in readings:
    _write(study, mm.Point(method, knob, 0), "train",
           dict(method=method, knob=knob, seed=0, valid_mi=mi, valid_kl=mi,
                valid_au=1, valid_rec=10.0, steps=100, train_seconds=60.0))
  return study


def test_a_knob_is_chosen_on_validation_mi(mm, tmp_path, monkeypatch):
  monkeypatch.setitem(mm.KNOBS, "bn_vae", ("bn_vae", "model.bn_gamma",
                                            (0.2, 0.35, 0.5)))
  study = _calibrated(mm, tmp_path, "bn_vae",
                      [(0.2, 0.4), (0.35, 1.2), (0.5, 2.8)])
  # 1 nat: 0.35 lands within 0.3 nats (1.2), so it is matched as it is.
  assert study.choose("bn_vae", 1.0) == 0.35
  # 2 nats: no value within 0.3; half-way from 0.35's 1.2 to 0.5's 2.8.
  assert study.choose("bn_vae", 2.0) == pytest.approx(0.35 + 0.5 * 0.15)
  # Beyond every calibrated value: the nearest within 0.3 nats, else none.
  assert study.choose("bn_vae", 3.0) == 0.5
  assert study.choose("bn_vae", 3.5) is None
  points = study.matched_points(["bn_vae"], (2.0, 3.5), seeds=2)
  assert [p.name for p in points] == ["bn_vae_0.425_seed0",
                                      "bn_vae_0.425_seed1"]


def test_valid_and_test_best_measure_the_matched_points_only(mm, tmp_path):
  study = _calibrated(mm, tmp_path, "free_bits",
                      [(0.05, 0.4), (0.1, 1.1), (0.25, 3.0), (0.5, 3.5)])
  matched = ["free_bits_0.1_seed0", "free_bits_0.1_seed1"]
  names = {split: [p.name for p in study.measured_points(
      ["free_bits"], (1.0,), 2, split)] for split in
           ("test", "valid", "test_best")}
  assert names["test"] == ["free_bits_0.05_seed0", "free_bits_0.1_seed0",
                           "free_bits_0.25_seed0", "free_bits_0.5_seed0",
                           "free_bits_0.1_seed1"]
  assert names["valid"] == names["test_best"] == matched


def test_an_uncalibrated_method_is_refused(mm, tmp_path):
  study = _calibrated(mm, tmp_path, "free_bits", [(0.05, 0.3)])
  with pytest.raises(ValueError, match="not calibrated"):
    study.choose("free_bits", 1.0)


def test_each_knob_lands_in_its_field(mm, tmp_path):
  steps = mm.run_steps("synthetic_text")
  assert steps == 12 * 321          # 321 exact-length batches an epoch
  runs = str(tmp_path)
  bn = mm.config_of("synthetic_text", mm.Point("bn_vae", 0.35, 1), runs)
  assert (bn.model.bn_gamma, bn.seed, bn.max_steps) == (0.35, 1, steps)
  cyclical = mm.config_of("synthetic_text", mm.Point("cyclical", 0.25, 0),
                          runs)
  assert cyclical.objective.kl_cycle_steps == steps // 4
  pre = mm.config_of("synthetic_text",
                     mm.Point("pretrain_free_bits", 0.1, 0), runs)
  assert (pre.objective.pretrain_steps, pre.objective.free_bits) == (
      steps // 4, 0.1)
  critic = mm.config_of("synthetic_text", mm.Point("self", 2.0, 0), runs)
  assert (critic.critic, critic.objective.critic_target,
          critic.objective.critic_constraint) == ("self", 2.0, "lagrangian")
  both = mm.config_of("synthetic_text", mm.Point("bn_vae_hybrid", 3.0, 0),
                      runs)
  assert (both.critic, both.model.bn_gamma, both.objective.critic_target,
          both.objective.critic_constraint) == ("hybrid", 0.7, 3.0,
                                                "lagrangian")
  plain = mm.config_of("synthetic_text", mm.Point("vae", None, 0), runs)
  assert plain.critic == "none" and plain.model.bn_gamma == 0.0
  assert plain.eval.iw_samples == 0        # the test reading is `measure`'s
  assert os.path.basename(plain.out_dir) == "vae_seed0"


def test_the_level_table_pairs_the_nll_with_the_vae_by_seed(mm, tmp_path,
                                                            monkeypatch):
  monkeypatch.setitem(mm.KNOBS, "bn_vae", ("bn_vae", "model.bn_gamma",
                                            (0.2, 0.5)))
  study = _calibrated(mm, tmp_path, "bn_vae", [(0.2, 0.5), (0.5, 1.5)])
  for seed, (vae_nll, bn_nll) in enumerate([(100.0, 101.0), (110.0, 110.0)]):
    for method, knob, nll, seconds in (("vae", None, vae_nll, 50.0),
                                       ("bn_vae", 0.35, bn_nll, 100.0)):
      point = mm.Point(method, knob, seed)
      _write(study, point, "test", dict(nll=nll, mi=1.0, kl=1.0, au=2,
                                        probe_r2_z=0.5))
      _write(study, point, "train", dict(method=method, knob=knob,
                                         seed=seed, train_seconds=seconds))
  table = mm.level_table(study, ["vae", "bn_vae"], 1.0, 2)
  row = [l for l in table.splitlines() if l.startswith("| bn_vae")][0]
  cells = [c.strip() for c in row.strip("|").split("|")]
  # +1% and +0% paired by seed: 0.50 ± 0.50; twice the VAE's time.
  assert cells[:4] == ["bn_vae", "0.35", "2", "0.50 ± 0.50"]
  assert cells[-1] == "2.00 ± 0.00x"
  assert np.isclose(float(cells[4].split(" ± ")[0]), 105.5)
  assert "no calibrated value reaches 3 nats" in mm.level_table(study, ["bn_vae"], 3.0, 2)


def test_the_best_checkpoint_is_read_on_test_and_reported_apart(
    mm, tmp_path, monkeypatch):
  study = _calibrated(mm, tmp_path, "vae", [(None, 0.0)])
  point = mm.Point("vae", None, 0)
  _write(study, point, "train", dict(
      method="vae", knob=None, seed=0, run_dir="runs/vae_seed0", valid_mi=0.0,
      valid_kl=0.0, valid_au=0, valid_rec=10.0, steps=100,
      train_seconds=50.0))
  read = []
  monkeypatch.setattr(mm.restore, "restore_run", lambda run_dir, which,
                      with_data: read.append((run_dir, which)) or types
                      .SimpleNamespace(vae=None, critic=None, dataset=None))
  monkeypatch.setattr(mm.evaluation, "evaluate", lambda vae, critic, dataset,
                      config: dict(nll=100.0 + (config.split == "valid"),
                                   split=config.split, mi=0.1, au=0))
  assert study.measure(point, "test_best")["split"] == "test"
  assert study.measure(point, "test")["split"] == "test"
  assert read == [("runs/vae_seed0", "best"), ("runs/vae_seed0", "last")]
  assert study.measure(point, "test_best")["nll"] == 100.0   # cached
  assert len(read) == 2
  report = mm.report(study, ["vae"], (1.0,), 1)
  assert "best checkpoints (lowest validation negative ELBO)" in report


def test_omniglot_reports_the_alphabet_probes_beside_majority_and_chance(
    mm, tmp_path):
  study = mm.Study("omniglot", str(tmp_path / "runs"),
                   str(tmp_path / "results"))
  for seed in range(2):
    point = mm.Point("vae", None, seed)
    _write(study, point, "train", dict(
        method="vae", knob=None, seed=seed, valid_mi=0.9, valid_kl=1.3,
        valid_au=32, valid_rec=85.0, steps=100, train_seconds=60.0))
    _write(study, point, "test", dict(
        nll=90.0, mi=0.9, kl=1.3, au=32, z_reliance=2.0,
        probe_acc_z_alphabet=0.40 + 0.02 * seed, probe_acc_alphabet=0.5,
        probe_acc_z_character=0.05, probe_acc_alphabet_majority=0.3,
        probe_acc_alphabet_chance=0.2, probe_acc_character_majority=0.01,
        probe_acc_character_chance=1 / 136))
  table = mm.level_table(study, ["vae"], 1.0, 2)
  header, _, row = table.splitlines()
  assert "alphabet acc. z" in header and "probe R²" not in header
  cells = dict(zip([c.strip() for c in header.strip("|").split("|")],
                   [c.strip() for c in row.strip("|").split("|")]))
  assert cells["alphabet acc. z"] == "0.410 ± 0.010"
  assert cells["character acc. z"] == "0.050 ± 0.000"
  line = mm.baselines_line(study, 2)
  assert "alphabet accuracy of the majority class: 0.300 ± 0.000" in line
  assert "alphabet chance (1 / alphabets): 0.200 ± 0.000" in line
  assert "length" not in line
