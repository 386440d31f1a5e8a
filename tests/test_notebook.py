"""notebooks/colab_quickstart.ipynb runs top to bottom in a Jupyter kernel
on a CPU (the tiny size), its install cell included, and shows what its
text says.

nbclient executes it with the parameters a user sets in the first cell.
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
import signal
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


def _stream(cell) -> str:
  """What a executed code cell printed (stdout and stderr)."""
  return "".join(o.get("text", "") for o in cell.outputs
                 if o.output_type == "stream")


def _outputs_of(cell, mime: str) -> list:
  """The rich outputs (display_data, execute_result) of a cell in `mime`."""
  return [o.data[mime] for o in cell.outputs
          if o.output_type in ("display_data", "execute_result")
          and mime in o.data]


def _stop_tensorboards(logdir) -> None:
  """Ends any TensorBoard server %tensorboard started for logdir that is
  still running (by pid, from tensorboard's own record of them)."""
  from tensorboard import manager  # pylint: disable=g-import-not-at-top
  pids = [info.pid for info in manager.get_all()
          if str(logdir) in info.logdir]
  for pid in pids:
    try:
      os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
      pass


# The tiny size's reading, which the notebook's "The runtime" states: the
# plain VAE's code near empty, the critic's near the cap log 50 = 3.91 nats
# (measured on 200 test images: MI 0.37 against 3.89).
VAE_MI_AT_MOST, CRITIC_MI_AT_LEAST = 1.0, 2.5


@pytest.mark.slow
def test_notebook_runs_in_a_kernel_on_a_cpu_with_the_tiny_size(
    tmp_path, monkeypatch):
  """Executes the notebook in a Jupyter kernel (nbclient) as a user would:
  the install cell, %tensorboard, the displays; then reads what it printed."""
  nbclient = pytest.importorskip("nbclient")
  nbformat = pytest.importorskip("nbformat")
  pytest.importorskip("ipykernel")
  checkout = _checkout_copy(tmp_path / "checkout")
  site, runs = tmp_path / "site", tmp_path / "runs"
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  cells = [c for c in notebook.cells if c.cell_type == "code"]
  cells[0].source = with_parameters(cells[0].source, REPO_URL=checkout,
                                    RUNS_DIR=str(runs))
  # A runtime that disconnected left its lock in a run directory on Drive.
  stale_lock = runs / "tiny" / "none" / "LOCK"
  stale_lock.parent.mkdir(parents=True)
  stale_lock.write_text('{"host": "lost-runtime", "pid": 1, "started": ""}\n')
  # The kernel inherits this environment. PIP_NO_BUILD_ISOLATION=0 (pip
  # reads it as "no isolation"): an isolated build would install its
  # setuptools under PIP_TARGET as well, which pip refuses (--home with
  # --prefix); this environment has setuptools.
  for name, value in dict(
      PIP_TARGET=str(site), PIP_NO_DEPS="1", PIP_NO_BUILD_ISOLATION="0",
      PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONPATH=str(site),
      PATH=os.pathsep.join([str(site / "bin"), os.path.dirname(sys.executable),
                            os.environ["PATH"]])).items():
    monkeypatch.setenv(name, value)
  monkeypatch.delenv("MPLBACKEND", raising=False)   # the kernel's inline one
  client = nbclient.NotebookClient(
      notebook, timeout=600, kernel_name="python3",
      resources={"metadata": {"path": str(tmp_path)}})
  try:
    client.execute()
  finally:                  # the kernel's end stops it too, as measured here
    _stop_tensorboards(runs)
  out = [_stream(c) for c in cells]
  assert out[1] == ("No GPU (a CPU runtime): the tiny size. For the full size "
                    "pick Runtime > Change runtime type > a GPU, then run the "
                    "notebook again.\n")
  assert f"tf_cvae installed in {site / 'tf_cvae'}\n" in out[3]
  trained = out[4].splitlines()
  assert f"removing {stale_lock}, left by the runtime on lost-runtime" in trained
  run_dir = runs / "tiny"
  mi = {}
  for name, title in RUNS.items():
    assert any(l.startswith(f"$ tf-cvae-train --preset=synthetic_images_cpu"
                            f"_self --critic={name} --max_steps=100 ")
               for l in trained)
    metrics = json.loads((run_dir / name / "metrics.json").read_text())
    printed = [l for l in trained if l.startswith(f"{title:12} ")]
    assert len(printed) == 1, trained[-10:]
    numbers = dict(re.findall(r"(\w+) (-?[\d.]+)", printed[0]))
    for key in ("nll", "kl", "mi", "mi_full", "infonce_bound"):
      assert float(numbers[key]) == pytest.approx(metrics[key], abs=5e-4), key
    assert int(numbers["au"]) == metrics["au"]
    assert 0 < metrics["nll"] < 28 * 28 * math.log(2) + 10
    mi[name] = float(numbers["mi"])
    history = [json.loads(l) for l in
               (run_dir / name / "history.jsonl").read_text().splitlines()]
    last = history[-1]
    assert (f"{title}: {len(history)} validations, the last at epoch "
            f"{last['epoch_fraction']:.3f}: valid_mi {last['valid_mi']:.3f}, "
            f"valid_kl {last['valid_kl']:.3f}, valid_loss "
            f"{last['valid_loss']:.3f}") in out[6].splitlines()
    assert (run_dir / name / "export" / "saved_model.pb").exists()
  # What the notebook's text says of the tiny size.
  assert mi["none"] <= VAE_MI_AT_MOST < CRITIC_MI_AT_LEAST <= mi["self"], mi
  # %tensorboard ran in the kernel: the frame of a server it started.
  assert any(re.search(r"tensorboard-frame.*const port = \d+;", html, re.S)
             for html in _outputs_of(cells[5], "text/html")), cells[5].outputs
  # The figures and images are displayed, and saved.
  assert len(_outputs_of(cells[6], "image/png")) == 1       # the curves
  assert len(_outputs_of(cells[8], "image/png")) == 3       # samples
  assert len(_outputs_of(cells[9], "image/png")) == 1       # latents
  assert _decoded_png(run_dir / "history.png").shape == (400, 1500, 4)
  assert _decoded_png(run_dir / "latents.png").shape[:2] == (900, 1000)
  for name in ("prior", "reconstruct", "interpolate"):
    grid = _decoded_png(run_dir / "samples" / f"{name}.png", 3)  # 0, 255, frame
    assert grid.shape == (2 * 30 + 2, 10 * 30 + 2, 1), name
