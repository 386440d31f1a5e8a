"""The paper's training protocol in train.run, and the evaluate runner.

Validation every epoch, the learning rate halved on a plateau, training
stopped after the last halving, the best checkpoint kept and evaluated, the
schedule carried across an interruption; runners/evaluate.py on a run dir.
Runs are tiny: 4-dim latent, 16-unit LSTMs, 320 training sentences (9 steps
an epoch at batch 32).
"""

import dataclasses
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import data as data_lib
from tf_cvae.models import registry
from tf_cvae.trained import restore
from tf_cvae.training import config as config_lib
from tf_cvae.training import evaluation
from tf_cvae.training import train
from tf_cvae.training import validation

TINY = registry.ModelConfig(embed_dim=16, hidden_dim=16, latent_dim=4,
                            decoder_dropout=0.0)
METRICS = ("nll", "rec", "kl", "mi", "mi_full", "au", "infonce_bound", "ppl")


def _config(files: dict, out_dir, **overrides) -> train.TrainConfig:
  """SGD at lr 2 (seed 2: the validation loss rises at epoch 4);
  patience 1."""
  fields = dict(
      data=data_lib.DataConfig(name="text", **files), model=TINY,
      eval=evaluation.EvalConfig(iw_samples=4, iw_chunk_size=4),
      learning_rate=2.0, lr_patience=1, max_lr_decays=None, epochs=4, seed=2,
      out_dir=str(out_dir), log_every=1000, checkpoint_every=1000)
  fields.update(overrides)
  return train.TrainConfig(**fields)


def _history(run_dir) -> list[dict]:
  """history.jsonl's records without their wall times (epoch_seconds,
  validation_seconds), which differ from run to run."""
  with open(os.path.join(run_dir, "history.jsonl")) as f:
    return [{k: v for k, v in json.loads(line).items()
             if not k.endswith("_seconds")} for line in f]


def _metrics(path) -> dict:
  with open(path) as f:
    return json.load(f)


# End to end.


@pytest.mark.slow
def test_stuck_run_halves_every_patience_epochs_and_stops(text_files, tmp_path):
  # At lr 1e-30 the weights cannot move: the validation loss of epoch 1 is
  # never beaten, so with patience 2 the rate halves at epochs 3 and 5, and
  # the second halving ends training although 10 epochs were asked for.
  results = train.run(_config(
      text_files, tmp_path / "stuck", learning_rate=1e-30, lr_patience=2,
      max_lr_decays=2, epochs=10))
  history = _history(tmp_path / "stuck")
  assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5]
  assert len({r["valid_loss"] for r in history}) == 1
  assert [r["lr_halved"] for r in history] == [False, False, True, False, True]
  assert [r["learning_rate"] for r in history] == pytest.approx(
      [1e-30, 1e-30, 1e-30, 5e-31, 5e-31], rel=1e-6)
  assert results["epochs"] == 5 and results["lr_decays"] == 2
  assert results["learning_rate"] == pytest.approx(2.5e-31, rel=1e-6)
  assert results["best_epoch"] == 1
  assert results["steps"] == history[-1]["step"]


@pytest.fixture(scope="module")
def protocol_run(text_files, tmp_path_factory):
  """An uninterrupted 4-epoch run that reports its best checkpoint;
  (config, metrics.json, history)."""
  config = _config(text_files, tmp_path_factory.mktemp("runs") / "whole",
                   select="best")
  train.run(config)
  return (config, _metrics(os.path.join(config.out_dir, "metrics.json")),
          _history(config.out_dir))


def test_best_checkpoint_has_the_lowest_validation_loss(protocol_run,
                                                        checkpoint_step):
  config, metrics, history = protocol_run
  losses = [r["valid_loss"] for r in history]
  best = int(np.argmin(losses)) + 1
  assert best < len(history)              # the seeded run is worse at the end
  assert metrics["evaluated_checkpoint"] == "best"
  assert metrics["best_epoch"] == best
  assert metrics["best_step"] == history[best - 1]["step"]
  assert not any(r["partial"] for r in history)     # it ended at an epoch end
  assert metrics["best_valid_loss"] == pytest.approx(min(losses))
  best_dir = os.path.join(config.out_dir, "best")
  assert checkpoint_step(best_dir) == history[best - 1]["step"]
  assert len(glob.glob(os.path.join(best_dir, "*.index"))) == 1
  # Patience 1: every epoch that does not improve halves the rate.
  assert [r["lr_halved"] for r in history] == [
      not r["improved"] for r in history]
  for before, after in zip(history, history[1:]):
    factor = 0.5 if before["lr_halved"] else 1.0
    assert after["learning_rate"] == pytest.approx(
        before["learning_rate"] * factor)
  assert metrics["lr_decays"] == sum(r["lr_halved"] for r in history)
  assert metrics["lr_decays"] >= 1


@pytest.fixture(scope="module")
def library_evaluation(protocol_run):
  """The test metrics of the run's best and last checkpoints, via restore."""
  config = protocol_run[0]
  results = {}
  for which in ("best", "last"):
    run = restore.restore_run(config.out_dir, which)
    eval_config = validation.final_eval_config(run.config)  # the run's seed
    results[which] = evaluation.evaluate(run.vae, run.critic, run.dataset,
                                         eval_config)
  return results


def test_test_metrics_come_from_the_best_checkpoint(protocol_run,
                                                     library_evaluation):
  _, metrics, _ = protocol_run
  for key in METRICS:
    assert metrics[key] == pytest.approx(library_evaluation["best"][key],
                                         rel=1e-5, abs=1e-5), key
    for which in ("best", "last"):             # both are always reported
      assert metrics[f"test_{which}"][key] == pytest.approx(
          library_evaluation[which][key], rel=1e-5, abs=1e-5), (which, key)
  assert metrics["rec"] != pytest.approx(library_evaluation["last"]["rec"],
                                         rel=1e-4)


def _tensorboard_scalars(run_dir) -> dict:
  """{(tag, step): value} of every train/ and valid/ scalar in
  run_dir/tensorboard (time/, decoded/ and test/ are test_tensorboard's)."""
  scalars = {}
  for path in glob.glob(os.path.join(run_dir, "tensorboard", "*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag.split("/")[0] not in ("train", "valid"):
          continue
        scalars[(value.tag, event.step)] = float(
            tf.make_ndarray(value.tensor))
  return scalars


def test_tensorboard_scalars_equal_the_history(protocol_run):
  config, _, history = protocol_run
  scalars = _tensorboard_scalars(config.out_dir)
  expected = {}
  for record in history:
    step = record["step"]
    expected.update({(f"valid/{k[len('valid_'):]}", step): v
                     for k, v in record.items() if k.startswith("valid_")})
    expected[("train/epoch_loss", step)] = record["train_loss"]
    expected[("train/lr_decays", step)] = record["lr_decays"]
  assert {"valid/loss", "valid/kl", "valid/mi", "valid/au",
          "valid/infonce_bound", "train/epoch_loss"} <= {
              tag for tag, _ in expected}
  assert len(history) == 4 and len(expected) == 4 * 10   # 10 scalars each
  # Every validation and epoch end is there, at its step, with the number
  # history.jsonl holds (written as float32).
  assert set(expected) == set(scalars)
  for key, value in expected.items():
    assert scalars[key] == pytest.approx(value, rel=1e-6, abs=1e-6), key
  steps = sorted({step for _, step in scalars})
  assert steps == [r["step"] for r in history]


@pytest.mark.slow
def test_interrupted_run_continues_the_schedule(text_files, tmp_path,
                                                protocol_run):
  whole_config, whole_metrics, whole_history = protocol_run
  part = dataclasses.replace(whole_config, out_dir=str(tmp_path / "part"))
  first = train.run(dataclasses.replace(part, epochs=2))
  assert first["epochs"] == 2
  assert first["lr_decays"] == sum(r["lr_halved"] for r in whole_history[:2])
  # Then stopped inside epoch 4 (after epoch 3's validation), then finished.
  train.run(dataclasses.replace(part, max_steps=whole_history[2]["step"] + 4))
  resumed = train.run(part)
  # The run stopped inside epoch 4 validated its last step: one record more.
  history = _history(part.out_dir)
  stopped = [r for r in history if r["partial"]]
  assert [r["step"] for r in stopped] == [whole_history[2]["step"] + 4]
  history = [r for r in history if not r["partial"]]
  assert len(history) == len(whole_history)
  for got, want in zip(history, whole_history):
    for key, value in want.items():
      if key in ("best_step", "improved"):   # the extra validation may win
        continue
      assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-4), key
  for key in ("lr_decays", "learning_rate", "best_epoch", "best_valid_loss",
              "steps", "epochs"):
    assert resumed[key] == pytest.approx(whole_metrics[key], rel=1e-4,
                                         abs=1e-4), key
  for key in METRICS:                 # the same weights at the end
    assert resumed["test_last"][key] == pytest.approx(
        whole_metrics["test_last"][key], rel=1e-4, abs=1e-4), key


@pytest.mark.slow
def test_a_final_partial_epoch_is_validated_and_tested(text_files, tmp_path,
                                                       checkpoint_step):
  """max_steps inside the first epoch: the final step is validated (a
  partial record), becomes the best checkpoint and is what the test reads."""
  out = tmp_path / "short"
  results = train.run(_config(text_files, out, max_steps=3, critic="self",
                              num_negatives=32, select="best"))
  assert results["evaluated_checkpoint"] == "best"
  assert results["best_step"] == results["steps"] == 3
  assert "best_epoch" not in results and results["epochs"] == 0
  assert checkpoint_step(out / "best") == 3
  history = _history(out)
  assert [(r["step"], r["partial"], r["epoch"]) for r in history] == [
      (3, True, 1)]
  assert 0 < history[0]["epoch_fraction"] < 1
  assert results["test_best"] == results["test_last"]
  # The checkpoint holds the schedule and the negative queue too.
  names = [n for n, _ in tf.train.list_variables(
      tf.train.latest_checkpoint(str(out / "checkpoints")))]
  for part in ("lr_schedule/best_loss", "lr_schedule/decays", "negatives/",
               "epoch_sums", "best_validation/", "optimizer/_learning_rate"):
    assert any(n.startswith(part) for n in names), part


def test_load_config_rebuilds_the_nested_config(protocol_run, tmp_path):
  config = protocol_run[0]
  assert config_lib.load_config(config.out_dir) == config
  with pytest.raises(ValueError, match="config.json not found"):
    config_lib.load_config(str(tmp_path / "absent"))
  saved = dataclasses.asdict(config)
  saved["model"]["no_such_size"] = 3
  (tmp_path / "config.json").write_text(json.dumps(saved))
  with pytest.raises(ValueError, match=r"config.json does not match.*"
                     r"no_such_size"):
    config_lib.load_config(str(tmp_path))


def test_evaluate_runner_writes_the_library_numbers(protocol_run,
                                                     library_evaluation,
                                                     run_runner):
  config, metrics, _ = protocol_run
  result = run_runner("evaluate.py", f"--run_dir={config.out_dir}",
                      "--iw_samples=4", "--checkpoint=best")
  assert result.returncode == 0, result.stderr[-3000:]
  written = _metrics(os.path.join(config.out_dir, "metrics_test.json"))
  assert written["checkpoint"] == "best" and written["split"] == "test"
  for key in METRICS:
    assert written[key] == pytest.approx(library_evaluation["best"][key],
                                         rel=1e-5, abs=1e-5), key
    assert written[key] == pytest.approx(metrics[key], rel=1e-5, abs=1e-5)
  header, row = result.stdout.strip().splitlines()[-2:]
  assert header.split()[:3] == ["run", "nll", "kl"]
  assert row.startswith(f"{config.out_dir} (best, test)")


def test_evaluate_runner_on_a_missing_run_dir_is_one_clear_line(tmp_path,
                                                                 run_runner):
  absent = tmp_path / "absent"
  result = run_runner("evaluate.py", f"--run_dir={absent}")
  assert result.returncode == 2
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and f"--run_dir={absent}" in errors[0]
  assert "config.json not found" in errors[0]


@pytest.mark.slow
def test_validation_inside_epochs_and_best_by_validation_elbo(
    text_files, tmp_path, checkpoint_step):
  """validate_every adds validations inside epochs, ranked by the validation
  negative ELBO; the best checkpoint is the lowest one, and validation reads
  no IW-NLL."""
  out = tmp_path / "inside"
  results = train.run(_config(text_files, out, max_steps=25, validate_every=7,
                              select="best"))
  history = _history(out)
  partial = [r["step"] for r in history if r["partial"]]
  assert {7, 14, 21, 25} <= set(partial)           # 25: the final step
  assert not any("valid_nll" in r for r in history)
  best = min(history, key=lambda r: r["valid_rec"] + r["valid_kl"])
  assert results["best_step"] == best["step"] == checkpoint_step(out / "best")
  assert results["best_valid_value"] == pytest.approx(best["valid_loss"])
  fractions = [r["epoch_fraction"] for r in history]
  assert fractions == sorted(fractions)
