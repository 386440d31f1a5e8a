"""The package as a user installs it: the wheel built from the repository,
installed into a fresh virtual environment outside it, its console commands
run from another directory.

The environment reuses the TensorFlow this test runs with: it is created
from the base interpreter without pip or packages, the wheel is installed
into it with --no-deps, and only then a .pth file appends the running
environment's site-packages folders to its sys.path. A .pth line that is a
folder adds that folder alone (the .pth files inside it, an editable
install's import hook among them, are not run), and it comes after the new
environment's own site-packages: tf_cvae is imported from the wheel, which
the test checks.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import tf_cvae_runners

import numpy as np
import pytest
import tensorflow as tf

import tf_cvae

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SOURCES = ("setup.py", "pyproject.toml", "README.md", "flags", "tf_cvae",
            "runners")
TINY = ["--preset=quickstart", "--max_steps=2", "--embed_dim=8",
        "--hidden_dim=8", "--latent_dim=3", "--iw_samples=2",
        "--iw_chunk_size=2", "--iw_report=", "--eval_examples=8",
        "--valid_examples=32"]
SENTENCES = ["the cat sat on the mat", "a dog ran"]


def _run(argv, cwd, env=None) -> subprocess.CompletedProcess:
  """Runs argv; fails the test with its output unless it exits with 0."""
  result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)
  if result.returncode != 0:
    pytest.fail(f"{' '.join(map(str, argv))} exited {result.returncode}\n"
                f"stdout:\n{result.stdout[-3000:]}\n"
                f"stderr:\n{result.stderr[-5000:]}")
  return result


def _build_wheel(root) -> str:
  """Builds the wheel from a copy of the sources (no build/ or egg-info
  left in the repository); the path of the .whl."""
  source = root / "source"
  for name in _SOURCES:
    path = os.path.join(_REPO_ROOT, name)
    if os.path.isdir(path):
      shutil.copytree(path, source / name, ignore=shutil.ignore_patterns(
          "__pycache__", "*.pyc"))
    else:
      os.makedirs(source, exist_ok=True)
      shutil.copy(path, source / name)
  # The build tools of this environment if it has them (no download), else
  # pip's isolated build.
  tools = all(importlib.util.find_spec(m) for m in ("setuptools", "wheel"))
  isolation = ["--no-build-isolation"] if tools else []
  _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation,
        "-w", str(root / "dist"), str(source)], cwd=str(root))
  wheels = os.listdir(root / "dist")
  assert len(wheels) == 1 and wheels[0].startswith("tf_cvae-"), wheels
  return str(root / "dist" / wheels[0])


def _site_folders() -> list[str]:
  """The running environment's site-packages folders."""
  return [p for p in sys.path if os.path.basename(p) in (
      "site-packages", "dist-packages") and os.path.isdir(p)]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """(bin folder of a fresh environment holding the wheel, a work folder
  outside the repository, the environment variables to run with)."""
  root = tmp_path_factory.mktemp("wheel")
  wheel_path = _build_wheel(root)
  env_dir = root / "env"
  _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)],
       cwd=str(root))
  python = str(env_dir / "bin" / "python")
  _run([sys.executable, "-m", "pip", "--python", python, "install",
        "--no-deps", "--no-index", wheel_path], cwd=str(root))
  site = _run([python, "-c", "import sysconfig; "
               "print(sysconfig.get_paths()['purelib'])"],
              cwd=str(root)).stdout.strip()
  with open(os.path.join(site, "zz_outer_environment.pth"), "w",
            encoding="utf-8") as f:
    f.write("\n".join(_site_folders()) + "\n")
  work = root / "work"
  work.mkdir()
  env = {k: v for k, v in os.environ.items()
         if k not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL", "VIRTUAL_ENV")}
  env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
  where = _run([python, "-c", "import tf_cvae; print(tf_cvae.__file__)"],
               cwd=str(work), env=env).stdout.strip()
  assert where.startswith(site), (where, site)
  return env_dir / "bin", work, env


def _pyproject() -> dict:
  tomllib = pytest.importorskip("tomllib")          # Python 3.11 and newer
  with open(os.path.join(_REPO_ROOT, "pyproject.toml"), "rb") as f:
    return tomllib.load(f)


def test_the_package_list_names_every_package_folder():
  """pyproject.toml lists the packages by hand (its package-dir mappings
  rule out discovery): every folder of tf_cvae with an __init__.py, the
  presets and the commands, and setup.py is only a shim."""
  library = os.path.dirname(tf_cvae.__file__)
  folders = {"tf_cvae" + folder[len(library):].replace(os.sep, ".")
             for folder, _, files in os.walk(library)
             if "__init__.py" in files}
  assert len(folders) >= 5 and "tf_cvae.training" in folders
  setuptools_config = _pyproject()["tool"]["setuptools"]
  assert sorted(setuptools_config["packages"]) == sorted(
      folders | {"tf_cvae.presets", "tf_cvae_runners"})
  assert setuptools_config["package-dir"] == {
      "tf_cvae.presets": "flags", "tf_cvae_runners": "runners"}
  with open(os.path.join(_REPO_ROOT, "setup.py"), encoding="utf-8") as f:
    assert f.read().strip() == "import setuptools; setuptools.setup()"


def test_every_command_module_has_its_console_script():
  """tf-cvae-<name> for each runners/<name>.py that defines main(),
  pointing at tf_cvae_runners.<name>:main."""
  commands = os.path.dirname(tf_cvae_runners.__file__)

  def has_main(name: str) -> bool:
    with open(os.path.join(commands, name), encoding="utf-8") as f:
      return "\ndef main(" in f.read()

  names = sorted(name[:-3] for name in os.listdir(commands)
                 if name.endswith(".py") and has_main(name))
  assert len(names) == 8 and "quickstart" in names
  assert _pyproject()["project"]["scripts"] == {
      f"tf-cvae-{name}": f"tf_cvae_runners.{name}:main" for name in names}


def test_console_commands_of_the_installed_wheel(installed):
  bin_dir, work, env = installed
  command = lambda name, *args: _run(
      [str(bin_dir / f"tf-cvae-{name}"), *args], cwd=str(work), env=env)

  listed = command("train", "--preset=list").stdout.splitlines()
  assert any(re.fullmatch(r"quickstart +The main job: .*", l) for l in listed)
  assert any(l.startswith("ptb_cpu_self ") for l in listed), listed

  trained = command("train", *TINY)
  found = re.search(r"\] run directory (runs/synthetic_text_lstm_self_seed0_"
                    r"[0-9a-f]{8}); resume with: (.*)$", trained.stderr,
                    re.MULTILINE)
  assert found, trained.stderr[-3000:]
  run_dir = work / found.group(1)
  assert found.group(2) == " ".join(
      ["tf-cvae-train", *TINY, f"--out_dir={run_dir}"])
  for name in ("metrics.json", "flags.cfg", "provenance.json", "vocab.txt"):
    assert (run_dir / name).is_file(), name
  assert not [l for l in trained.stderr.splitlines()
              if "oneDNN custom" in l or "cpu_feature_guard" in l]

  exported = command("export", f"--run_dir={run_dir}")
  assert exported.stdout.strip().splitlines()[-1] == str(run_dir / "export")
  assert (run_dir / "export" / "saved_model.pb").is_file()

  (work / "sentences.txt").write_text("\n".join(SENTENCES) + "\n")
  encoded = command("encode", f"--export_dir={run_dir / 'export'}",
                    "--input=sentences.txt")
  means = np.loadtxt(encoded.stdout.splitlines(), ndmin=2)
  assert means.shape == (len(SENTENCES), 3) and np.isfinite(means).all()


def test_own_text_and_images_with_the_installed_wheel(installed):
  """A researcher's own files in their own folder: a text file alone (valid
  and test held out of it) and a folder of PNGs in class subfolders."""
  bin_dir, work, env = installed
  own = work / "own"
  (own / "pngs").mkdir(parents=True)
  rng = np.random.default_rng(0)
  (own / "corpus.txt").write_text("\n".join(
      " ".join(f"w{(i + 3 * j) % 30}" for j in range(rng.integers(3, 8)))
      for i in range(60)) + "\n")
  for i in range(20):
    label = ("dark", "bright")[i % 2]
    pixels = np.full((20, 16, 1), 30 if label == "dark" else 230, np.uint8)
    pixels[rng.integers(0, 20)] = 255 - pixels[0, 0]
    (own / "pngs" / label).mkdir(exist_ok=True)
    tf.io.write_file(str(own / "pngs" / label / f"{i}.png"),
                     tf.io.encode_png(pixels))
  small = ["--max_steps=3", "--latent_dim=2", "--hidden_dim=8",
           "--iw_samples=2", "--iw_chunk_size=2", "--iw_report=",
           "--batch_size=4"]
  text = _run([str(bin_dir / "tf-cvae-train"), "--dataset=text",
               "--train_file=corpus.txt", "--embed_dim=8", *small],
              cwd=str(own), env=env)
  assert "held out 6 sentences for valid and 6 for test" in text.stderr
  images = _run([str(bin_dir / "tf-cvae-train"), "--dataset=images",
                 "--train_file=pngs", *small], cwd=str(own), env=env)
  for result, kind in ((text, "text"), (images, "images")):
    # The end of training: the test metrics' table and where metrics.json is.
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and lines[0].split()[:4] == [
        "run", "nll", "kl", "mi"], lines
    assert lines[1].startswith(f"runs/{kind}_") and lines[1].split()[1:3] == [
        "(last,", "test)"], lines
    found = re.fullmatch(r"metrics: (runs/\S+/metrics\.json)", lines[2])
    assert found and (own / found[1]).is_file(), lines
