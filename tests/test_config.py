"""A run's config.json read back: fields this version removed are ignored
with one warning, and run names stay what they were."""

import dataclasses
import json
import logging

import pytest

from tf_cvae import data as data_lib
from tf_cvae.training import config as config_lib


def _save(run_dir, saved: dict) -> str:
  run_dir.mkdir()
  (run_dir / "config.json").write_text(json.dumps(saved))
  return str(run_dir)


def test_an_old_config_with_removed_fields_loads_with_one_warning(
    tmp_path, caplog):
  config = config_lib.TrainConfig(
      critic="self", data=data_lib.DataConfig(name="synthetic_images"))
  saved = dataclasses.asdict(config)
  saved["critic_optimizer"] = "adam"           # as written before removal
  saved["clip_mode"] = "joint"     # a clip: the weights are built the same
  saved["data"].update(long_sentences="drop", image_size=28,
                       image_channels=1)
  with caplog.at_level(logging.WARNING, logger="absl"):
    loaded = config_lib.load_config(_save(tmp_path / "old", saved))
  assert loaded == config
  warnings = [r.getMessage() for r in caplog.records
              if r.levelno == logging.WARNING]
  assert warnings == [
      f"{tmp_path / 'old' / 'config.json'}: ignoring field(s) this version "
      "removed: critic_optimizer='adam', data.long_sentences='drop', "
      "data.image_size=28, data.image_channels=1, clip_mode='joint'"]
  # A field this version never had is still refused, naming it.
  saved["data"]["no_such_field"] = 1
  with pytest.raises(ValueError, match="no_such_field"):
    config_lib.load_config(_save(tmp_path / "bad", saved))


def test_run_names_hash_removed_fields_as_they_were():
  # Names from before the removal: the same command resumes the same run.
  assert config_lib.default_run_name(config_lib.TrainConfig()) == (
      "synthetic_text_lstm_none_seed0_505c908f")
  assert config_lib.default_run_name(config_lib.TrainConfig(
      critic="self", data=data_lib.DataConfig(name="synthetic_images"))) == (
          "synthetic_images_mlp_self_seed0_aeef1756")


@pytest.mark.parametrize("critic, model, field", [
    ("none", {"init": "keras"}, "init=keras"),
    ("none", {}, "init=keras"),            # a text run from before the field
    ("hybrid", {"init": "he", "hybrid_features": "embedding"},
     "hybrid_features=embedding"),
    ("hybrid", {"init": "he"}, "hybrid_features=embedding")])
def test_a_network_this_version_no_longer_builds_is_refused(
    tmp_path, critic, model, field):
  saved = dataclasses.asdict(config_lib.TrainConfig(critic=critic))
  saved["model"].update(model)
  if len(model) < 2:   # written before a field: before critic_lambda_kp too
    del saved["objective"]["critic_lambda_kp"]
  path = tmp_path / "old" / "config.json"
  with pytest.raises(config_lib.RemovedNetwork) as error:
    config_lib.load_config(_save(tmp_path / "old", saved))
  assert str(error.value) == (
      f"{path}: this run was trained with {field}, which this version no "
      "longer builds; use tf_cvae<=0.1.0")


def test_removed_network_fields_at_the_built_values_load(tmp_path, caplog):
  config = config_lib.TrainConfig(critic="hybrid")
  saved = dataclasses.asdict(config)
  saved["model"].update(init="he", hybrid_features="hidden")
  with caplog.at_level(logging.WARNING, logger="absl"):
    assert config_lib.load_config(_save(tmp_path / "text", saved)) == config
  assert "model.init='he', model.hybrid_features='hidden'" in caplog.text
  # As written by this version (without either field).
  assert config_lib.load_config(_save(tmp_path / "new", dataclasses.asdict(
      config))) == config
  # Only the hybrid critic reads hybrid_features; image models read neither.
  saved = dataclasses.asdict(config_lib.TrainConfig(critic="self"))
  saved["model"]["init"] = "he"
  config_lib.load_config(_save(tmp_path / "self", saved))
  images = config_lib.TrainConfig(
      critic="hybrid", data=data_lib.DataConfig(name="synthetic_images"))
  saved = dataclasses.asdict(images)
  saved["model"].update(init="keras", hybrid_features="embedding")
  assert config_lib.load_config(_save(tmp_path / "images", saved)) == images
