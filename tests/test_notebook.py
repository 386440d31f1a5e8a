"""notebooks/colab_quickstart.ipynb runs top to bottom on a CPU runtime (the
tiny size), its install cell included.

The code cells are plain Python (no `!` or `%` lines), so they run as one
script in a subprocess, with the parameters a user sets in the first cell.
REPO_URL is a copy of this working tree, which the install cell
pip-installs as on Colab; PIP_TARGET and PIP_NO_DEPS send that install to
a folder of its own, with the test's environment as its dependencies (the
environment's own tf_cvae install is left alone; no download, a few
seconds). That folder comes first on PYTHONPATH and PATH, so the notebook's
imports and its tf-cvae-train commands use the copy it installed.
"""

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO_ROOT, "notebooks", "colab_quickstart.ipynb")
URL_MESSAGE = ("Set REPO_URL in the first code cell to the git URL of tf_cvae "
               "(https://github.com/<owner>/tf_cvae.git) or the path of a "
               "checkout, then run the notebook again.\n")
RUNS = {"none": "plain VAE", "self": "self critic"}


def code_cells() -> list[str]:
  """The notebook's code cells, each as one string (committed unexecuted)."""
  with open(NOTEBOOK, encoding="utf-8") as f:
    notebook = json.load(f)
  assert notebook["nbformat"] == 4 and notebook["nbformat_minor"] >= 5
  ids = [c.get("id") for c in notebook["cells"]]   # required from 4.5 on
  assert all(ids) and len(set(ids)) == len(ids)
  cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
  assert all(not c["outputs"] for c in cells), "commit it without outputs"
  return ["".join(c["source"]) for c in cells]


def with_parameters(cell: str, **values) -> str:
  """The parameters cell with each `NAME = ...` line set to repr(value)."""
  for name, value in values.items():
    cell, count = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", cell,
                          flags=re.M)
    assert count == 1, name
  return cell


def test_cells_are_plain_python_and_parameters_come_first():
  cells = code_cells()
  for cell in cells:
    compile(cell, NOTEBOOK, "exec")       # a `!` or `%` line would not
  parameters = re.findall(r"^([A-Z_]+) = (.*?)(?:\s+#.*)?$", cells[0], re.M)
  assert parameters == [("REPO_URL", '""'), ("RUNS_DIR", '"runs"'),
                        ("SIZE", '"auto"')]
  assert "list_physical_devices" in cells[1]       # the GPU check is next


@pytest.mark.slow
@pytest.mark.parametrize("url", ["", "  ", "https://github.com/<owner>/tf_cvae.git",
                                 "https://github.com/OWNER/tf_cvae.git"])
def test_an_unset_repo_url_stops_with_one_line(url):
  result = subprocess.run(
      [sys.executable, "-c", with_parameters(code_cells()[0], REPO_URL=url)],
      capture_output=True, text=True, timeout=60)
  assert (result.returncode, result.stdout, result.stderr) == (
      1, "", URL_MESSAGE)


def _checkout_copy(destination) -> str:
  """The working tree's files that git would see (no .venv, runs, ...)."""
  listed = subprocess.run(
      ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
      cwd=REPO_ROOT, capture_output=True, check=True).stdout
  for relative in filter(None, listed.decode().split("\0")):
    source = os.path.join(REPO_ROOT, relative)
    if os.path.isfile(source):            # not a file deleted in the tree
      target = os.path.join(destination, relative)
      os.makedirs(os.path.dirname(target), exist_ok=True)
      with open(source, "rb") as f_in, open(target, "wb") as f_out:
        f_out.write(f_in.read())
  return str(destination)


def _decoded_png(path, least_values=10):
  """The PNG at path, [height, width, channels], checked not to be blank."""
  image = tf.io.decode_png(tf.io.read_file(str(path))).numpy()
  assert len(np.unique(image)) >= least_values, path
  return image


@pytest.mark.slow
def test_notebook_runs_on_a_cpu_with_the_tiny_size(tmp_path):
  checkout = _checkout_copy(tmp_path / "checkout")
  site, runs = tmp_path / "site", tmp_path / "runs"
  cells = code_cells()
  cells[0] = with_parameters(cells[0], REPO_URL=checkout, RUNS_DIR=str(runs))
  script = tmp_path / "notebook.py"
  script.write_text("\n\n".join(cells) + "\n")
  # A runtime that disconnected left its lock in a run directory on Drive.
  stale_lock = runs / "tiny" / "none" / "LOCK"
  stale_lock.parent.mkdir(parents=True)
  stale_lock.write_text('{"host": "lost-runtime", "pid": 1, "started": ""}\n')
  # PIP_NO_BUILD_ISOLATION=0 (pip reads it as "no isolation"): an isolated
  # build would install its setuptools under PIP_TARGET as well, which pip
  # refuses (--home with --prefix); this environment has setuptools.
  env = dict(os.environ, PIP_TARGET=str(site), PIP_NO_DEPS="1",
             PIP_NO_BUILD_ISOLATION="0",
             PIP_DISABLE_PIP_VERSION_CHECK="1", MPLBACKEND="Agg",
             PYTHONPATH=str(site), PATH=f"{site / 'bin'}:{os.environ['PATH']}")
  result = subprocess.run([sys.executable, str(script)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
  out = result.stdout
  assert result.returncode == 0, (out[-3000:], result.stderr[-3000:])
  lines = out.splitlines()
  assert lines[0] == ("No GPU (a CPU runtime): the tiny size. For the full "
                      "size pick Runtime > Change runtime type > a GPU, then "
                      "run the notebook again.")
  assert f"tf_cvae installed in {site / 'tf_cvae'}" in lines
  assert f"removing {stale_lock}, left by the runtime on lost-runtime" in lines
  run_dir = runs / "tiny"
  for name, title in RUNS.items():
    assert any(l.startswith(f"$ tf-cvae-train --preset=synthetic_images_cpu"
                            f"_self --critic={name} --model=mlp") for l in lines)
    metrics = json.loads((run_dir / name / "metrics.json").read_text())
    assert f"{title:12} " + "  ".join(
        f"{k} {metrics[k]:.3f}" for k in ("nll", "kl", "mi", "mi_full",
                                           "infonce_bound")
    ) + f"  au {metrics['au']}" in lines
    assert 0 < metrics["nll"] < 28 * 28 * math.log(2) + 10
    assert 0 <= metrics["mi"] <= metrics["log_k"] + 1e-6
    assert 0 <= metrics["au"] <= 4                     # the tiny latent size
    history = [json.loads(l) for l in
               (run_dir / name / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in history] == [10, 20, 30]
    last = history[-1]
    assert (f"{title}: 3 validations, the last at epoch "
            f"{last['epoch_fraction']:.3f}: valid_mi {last['valid_mi']:.3f}, "
            f"valid_kl {last['valid_kl']:.3f}, valid_loss "
            f"{last['valid_loss']:.3f}") in lines
    assert (run_dir / name / "export" / "saved_model.pb").exists()
    loaded = tf.saved_model.load(str(run_dir / name / "export"))
    assert loaded.encode(tf.zeros([2, 28, 28, 1]))["mean"].shape == (2, 4)
  assert (f"Not in a notebook: TensorBoard runs in a shell: tensorboard "
          f"--logdir {runs}") in lines
  assert _decoded_png(run_dir / "history.png").shape == (400, 1500, 4)
  assert f"saved {run_dir / 'history.png'}" in lines
  assert _decoded_png(run_dir / "latents.png").shape[:2] == (900, 1000)
  assert f"saved {run_dir / 'latents.png'}" in lines
  for name in ("prior", "reconstruct", "interpolate"):
    grid = _decoded_png(run_dir / "samples" / f"{name}.png", 3)  # 0, 255, frame
    assert grid.shape == (2 * 30 + 2, 10 * 30 + 2, 1), name
