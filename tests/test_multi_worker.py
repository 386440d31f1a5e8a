"""--strategy=multi_worker on this machine: two worker processes (TF_CONFIG
with two workers on 127.0.0.1) train one run through train.run. They take
the single-device steps on the same global batches, only the chief writes
the run directory, and a run whose worker was killed resumes from the
chief's last checkpoint when both are started again."""

import dataclasses
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import errors
from tf_cvae import replicas
from tf_cvae.training import config as config_lib
from tf_cvae.training import train

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = r'''
import json, sys, time
from absl import logging
from tf_cvae import data as data_lib, train_step
from tf_cvae.models import registry
from tf_cvae.training import evaluation, train

logging.set_verbosity(logging.INFO)
case = json.loads(sys.argv[1])
if case.get("step_delay"):        # slow steps, so that a kill lands mid-run
  step = train_step.TrainStep.__call__
  def slow_step(self, *args, **kwargs):
    time.sleep(case["step_delay"])
    return step(self, *args, **kwargs)
  train_step.TrainStep.__call__ = slow_step
config = train.TrainConfig(
    data=data_lib.DataConfig(name="text", **case["files"]),
    model=registry.ModelConfig(embed_dim=16, hidden_dim=32, latent_dim=4,
                               decoder_dropout=0.0),
    eval=evaluation.EvalConfig(iw_samples=0, max_examples=32, probe=False),
    critic="self", num_negatives=16, batch_size=16, valid_examples=32,
    strategy=case["strategy"], max_steps=case["max_steps"], log_every=1,
    checkpoint_every=case["checkpoint_every"], out_dir=case["out_dir"])
print("RESULT " + json.dumps(train.run(config)), flush=True)
'''


def _free_ports(count: int) -> list[int]:
  """Ports the system has just handed out (bound to port 0, then freed)."""
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


class _Workers:
  """Worker processes of one run (or one single-device process), their
  output in log files under `logs`."""

  def __init__(self, tmp_path, case: dict, num_workers: int, name: str):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    self.logs, self.procs = [], []
    ports = _free_ports(num_workers)
    for index in range(num_workers):
      env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                 TMPDIR=str(tmp_path / f"tmp_{name}_{index}"))
      os.makedirs(env["TMPDIR"], exist_ok=True)
      if num_workers > 1:
        env["TF_CONFIG"] = json.dumps({
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": "worker", "index": index}})
      log = tmp_path / f"{name}_{index}.log"
      self.logs.append(log)
      with open(log, "w") as out:
        self.procs.append(subprocess.Popen(
            [sys.executable, str(script), json.dumps(case)], env=env,
            stdout=out, stderr=subprocess.STDOUT, cwd=_REPO_ROOT))

  def wait(self, timeout: float) -> list[int]:
    """Return codes; kills whatever still runs after `timeout` seconds."""
    deadline = time.time() + timeout
    for proc in self.procs:
      try:
        proc.wait(max(deadline - time.time(), 0.1))
      except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return [proc.returncode for proc in self.procs]

  def output(self, index: int) -> str:
    return self.logs[index].read_text()

  def result(self, index: int) -> dict:
    lines = [l for l in self.output(index).splitlines()
             if l.startswith("RESULT ")]
    assert lines, self.output(index)[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def _write_corpus(root) -> dict:
  """--dataset=text files: 160 / 32 / 32 sentences of 8 words over 40, so
  every batch has one shape (one trace of each step) and the batches of 16
  (10 steps an epoch) are the same for 1 and 2 replicas; {split}_file keys."""
  rng = np.random.default_rng(0)
  files = {}
  for split, size in (("train", 160), ("valid", 32), ("test", 32)):
    starts, strides = rng.integers(0, 40, size), rng.integers(1, 4, size)
    (root / f"{split}.txt").write_text("".join(
        " ".join(f"w{(start + stride * i) % 40}" for i in range(8)) + "\n"
        for start, stride in zip(starts, strides)))
    files[f"{split}_file"] = str(root / f"{split}.txt")
  return files


def _case(corpus, out_dir, strategy) -> dict:
  """25 steps, a checkpoint every 3."""
  return dict(files=corpus, out_dir=str(out_dir), strategy=strategy,
              max_steps=25, checkpoint_every=3)


def _train_losses(run_dir) -> list[tuple[int, float]]:
  """(step, train/loss) of every event in run_dir/tensorboard (log_every=1:
  every step, twice where a resumed run took it again)."""
  losses = []
  for path in glob.glob(os.path.join(run_dir, "tensorboard", "*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == "train/loss":
          losses.append((event.step, float(tf.make_ndarray(value.tensor))))
  return losses


def _checkpoint_values(run_dir) -> dict:
  """Every float tensor of run_dir's last checkpoint, by its key."""
  reader = tf.train.load_checkpoint(os.path.join(run_dir, "checkpoints"))
  values = {}
  for key in reader.get_variable_to_shape_map():
    value = reader.get_tensor(key)
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
      values[key] = value
  return values


@pytest.mark.slow
def test_two_workers_take_the_single_device_steps_and_resume_a_kill(
    tmp_path, checkpoint_step):
  """25 steps of the self critic with a queue, epochs of 10 steps. Worker 1
  is killed after the chief's checkpoint at step 12 or later: the chief
  stops with a TrainingError that says to start both again (a hang would be
  killed after 30 s and fail the test). Both started again resume from the
  chief's last checkpoint and end at step 25. Every step's loss, from
  either start, and the final checkpoint (weights, optimizer slots, queue,
  multiplier, loop state) equal the 1-device run's; the chief alone wrote
  the run directory, and the second worker deleted its temporary one."""
  corpus = _write_corpus(tmp_path)
  one_dir, run_dir = tmp_path / "one", tmp_path / "run"
  case = _case(corpus, run_dir, "multi_worker")
  single = _Workers(tmp_path, _case(corpus, one_dir, "default"), 1, "one")
  first = _Workers(tmp_path, dict(case, step_delay=0.2), 2, "first")
  deadline = time.time() + 240
  while (checkpoint_step(run_dir / "checkpoints") < 12
         and time.time() < deadline):
    assert all(p.poll() is None for p in first.procs), first.output(0)[-3000:]
    time.sleep(0.2)
  first.procs[1].send_signal(signal.SIGKILL)
  first.wait(30)
  assert "2 replica(s), K = 16" in first.output(0)
  assert "TrainingError: lost a worker of the multi_worker run" in (
      first.output(0)), first.output(0)[-3000:]
  killed_at = checkpoint_step(run_dir / "checkpoints")
  assert 12 <= killed_at < 25, killed_at
  assert not os.path.exists(run_dir / "metrics.json")

  again = _Workers(tmp_path, case, 2, "again")
  codes = again.wait(240) + single.wait(240)
  assert codes == [0, 0, 0], [w.output(0)[-3000:] for w in (again, single)]
  for index in (0, 1):          # each resumed where the chief's files were
    assert re.search(rf"resumed from \S+ckpt-{killed_at} at step "
                     rf"{killed_at},", again.output(index)), index
  chief, other = again.result(0), again.result(1)
  assert chief["steps"] == other["steps"] == 25
  assert chief["rec"] == pytest.approx(single.result(0)["rec"], abs=1e-3)
  assert os.listdir(tmp_path / "tmp_again_1") == []   # its copy, deleted
  # The chief alone wrote the run directory: what a 1-device run writes.
  assert sorted(os.listdir(run_dir)) == sorted(os.listdir(one_dir))
  with open(run_dir / "history.jsonl") as f:
    history = [json.loads(line) for line in f]
  steps = [r["step"] for r in history]
  assert steps == sorted(set(steps)) and steps[-1] == 25
  epochs = [r["epoch"] for r in history if not r["partial"]]
  assert epochs == [1, 2], epochs

  # Each step's loss as on one device (a step after the checkpoint that the
  # first start logged is there twice: the second start took it again).
  losses_one = dict(_train_losses(one_dir))
  losses_two = _train_losses(run_dir)
  assert sorted(losses_one) == list(range(1, 26))
  assert {step for step, _ in losses_two} == set(losses_one)
  loss_diff = max(abs(losses_one[step] - loss) for step, loss in losses_two)
  weights_one, weights_two = (_checkpoint_values(one_dir),
                              _checkpoint_values(run_dir))
  assert sorted(weights_two) == sorted(weights_one)
  weight_diff = max(float(np.max(np.abs(weights_one[k] - weights_two[k])))
                    for k in weights_one)
  print(f"killed worker 1 after the chief's checkpoint at step {killed_at}; "
        f"2 workers vs 1 device: max |loss diff| {loss_diff:.3g} over 25 "
        f"steps (loss ~{losses_one[25]:.2f}), max |weight diff| "
        f"{weight_diff:.3g}")
  assert loss_diff < 1e-4 and weight_diff < 1e-4


def test_chief_is_read_from_tf_config_before_the_strategy(monkeypatch):
  """Which process writes the run directory (and holds its LOCK): TF_CONFIG's
  chief task, else worker 0; any process of the other strategies."""
  workers = ["127.0.0.1:1", "127.0.0.1:2"]
  for cluster, task, chief in (
      ({"worker": workers}, ("worker", 0), True),
      ({"worker": workers}, ("worker", 1), False),
      ({"chief": ["127.0.0.1:3"], "worker": workers}, ("worker", 0), False),
      ({"chief": ["127.0.0.1:3"], "worker": workers}, ("chief", 0), True)):
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": cluster, "task": {"type": task[0], "index": task[1]}}))
    assert replicas.is_chief("multi_worker") is chief, (cluster, task)
    assert replicas.is_chief("mirrored") is True
  monkeypatch.delenv("TF_CONFIG")
  assert replicas.is_chief("multi_worker") is True      # one worker alone


def test_bad_tf_config_and_a_saved_tpu_run_are_one_line_errors(monkeypatch,
                                                               tmp_path):
  monkeypatch.setenv("TF_CONFIG", "{not json")
  with pytest.raises(errors.InputError, match="TF_CONFIG='{not json'"):
    replicas.is_chief("multi_worker")
  monkeypatch.delenv("TF_CONFIG")
  # A config.json saved when --strategy=tpu was offered.
  config_lib.write_json(str(tmp_path / "config.json"), dataclasses.asdict(
      train.TrainConfig(strategy="tpu", out_dir=str(tmp_path))))
  with pytest.raises(errors.InputError) as raised:
    train.run(config_lib.load_config(str(tmp_path)))
  assert str(raised.value).startswith("strategy 'tpu' is no longer offered")
  assert "use one of default, mirrored, multi_worker" in str(raised.value)
