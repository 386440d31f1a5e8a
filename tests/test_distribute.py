"""Several replicas train exactly as one device: the host CPU is split into 2
logical devices (in a process of its own, run_script's: the split must
precede TensorFlow's device initialization) and a MirroredStrategy step, fed by the input
pipeline that gives each replica its slice (replicas.distribute_batches), is
compared step after step with a single-device step on the same global
batches (two workers: test_multi_worker.py)."""

import json
import math

import pytest

WORKER = r'''
import functools, json, sys
import numpy as np
import tensorflow as tf
from tf_cvae import data as data_lib, objective
from tf_cvae.models import registry
from tf_cvae import replicas
from tf_cvae.training import build, train

replicas.split_host_cpu(2)
case = json.loads(sys.argv[1])
dataset = data_lib.load(data_lib.DataConfig(name=case["data"]))
model = registry.ModelConfig(embed_dim=32, hidden_dim=64, latent_dim=8,
                             decoder_dropout=0.0)
config = train.TrainConfig(
    model=model, critic=case["critic"], num_negatives=case["queue"],
    critic_side=case.get("side", "inference"),
    objective=objective.ObjectiveConfig(critic_weight=3.0,
                                        free_bits=case["free_bits"]))
batches = list(dataset.batches("train", 16, shuffle=True, seed=1,
                               drop_remainder=True).take(4))
# A smaller batch last, as a length's leftovers make one in exact-length
# text batches: the steps retrace with the batch size left open.
batches.append({k: v[:6] for k, v in batches[-1].items()})

def make(strategy):
  tf.keras.utils.set_random_seed(0)
  step = build.build_train_step(config, dataset, strategy=strategy)
  step.build(batches[0])
  return step

one = make(None)
strategy = replicas.make_strategy("mirrored", num_cpu_devices=2)
two = make(strategy)
assert two.num_replicas == 2, two.num_replicas
for a, b in zip(one.variables, two.variables):
  b.assign(a)
per_replica = replicas.distribute_batches(strategy, lambda: functools.reduce(
    tf.data.Dataset.concatenate, map(tf.data.Dataset.from_tensors, batches)),
                                          16)
worst = {"loss": 0.0, "weights": 0.0, "bound": 0.0}
steps = 0
for batch, replica_batch in zip(batches, per_replica):
  steps += 1
  out_one, out_two = one(batch), two(replica_batch)
  worst["loss"] = max(worst["loss"], abs(float(out_one["loss"]) - float(out_two["loss"])))
  if "infonce_bound" in out_one:
    worst["bound"] = max(worst["bound"], abs(
        float(out_one["infonce_bound"]) - float(out_two["infonce_bound"])))
  for a, b in zip(one.variables, two.variables):
    scale = 1.0 + float(tf.reduce_max(tf.abs(a)))
    worst["weights"] = max(worst["weights"], float(
        tf.reduce_max(tf.abs(a - b.values[0] if hasattr(b, "values") else a - b))) / scale)
assert steps == len(batches), steps
print("RESULT " + json.dumps(dict(worst, loss_value=float(out_one["loss"]))))
'''

CASES = {
    "self": dict(data="synthetic_text", critic="self", queue=0, free_bits=0.0),
    "hybrid_queue_free_bits": dict(data="synthetic_text", critic="hybrid",
                                   queue=32, free_bits=0.1),
    "nn_images": dict(data="synthetic_images", critic="nn", queue=0,
                      free_bits=0.0),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_two_replicas_take_the_single_device_steps(name, tmp_path,
                                                   run_script):
  """4 steps of SGD (lr 1, clipped): losses, InfoNCE bounds (over the global
  batch: K = 16, not 8) and every weight after every step agree with the
  single-device run, so the gradients do."""
  script = tmp_path / "worker.py"
  script.write_text(WORKER)
  result = run_script(str(script), json.dumps(CASES[name]))
  lines = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")]
  assert result.returncode == 0 and lines, result.stderr[-3000:]
  worst = json.loads(lines[-1][len("RESULT "):])
  # The NN critic centres its x embeddings by the global batch mean before
  # normalizing them: at initialization the images' embeddings nearly agree,
  # so the replicas' other summation order is amplified (measured: bound
  # and weights 3e-4 and 1e-3 apart after 4 steps; 2e-7 and 1e-6 with the
  # centring off).
  tolerance = 3e-3 if CASES[name]["critic"] == "nn" else 1e-4
  assert worst["loss"] < 1e-4 * max(1.0, abs(worst["loss_value"])), worst
  assert worst["bound"] < tolerance, worst
  assert worst["weights"] < tolerance, worst


TINY = ("--embed_dim=16", "--hidden_dim=32", "--latent_dim=4",
        "--decoder_dropout=0.2", "--iw_samples=4", "--iw_chunk_size=4",
        "--eval_examples=32", "--valid_examples=64", "--log_every=5")


@pytest.mark.slow
def test_train_runner_on_two_cpu_replicas(tmp_path, run_runner):
  """--strategy=mirrored on 2 logical CPUs with the self and the model critic
  (critic_side=both) and dropout: it trains, logs the replicas and the global
  K, and tests the run. (A distributed run's resume: test_multi_worker.py.)"""
  out = tmp_path / "run"
  result = run_runner(
      "train.py", "--max_steps=10", "--strategy=mirrored",
      "--num_cpu_devices=2", "--critic=self", "--critic_side=both",
      "--critic_weight=1", "--batch_size=16", f"--out_dir={out}", *TINY)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "2 replica(s), K = 16" in result.stderr
  with open(out / "metrics.json") as f:
    metrics = json.load(f)
  assert metrics["steps"] == 10
  assert math.isfinite(metrics["nll"]) and metrics["nll"] > 0
  assert metrics["infonce_bound"] <= math.log(16) + 1e-6
  assert "model_bound=" in result.stderr          # the model critic trained


def test_batch_that_does_not_split_over_replicas_names_the_flag(run_runner):
  result = run_runner("train.py", "--strategy=mirrored", "--num_cpu_devices=2",
                      "--batch_size=15", "--max_steps=1", *TINY)
  assert result.returncode == 2
  assert "--batch_size=15" in result.stderr and "2 replicas" in result.stderr
  assert "Traceback" not in result.stderr
