"""The documentation builds, and every command and flag it shows exists."""

import glob
import os
import re
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(REPO_ROOT, "README.md")] + sorted(
    glob.glob(os.path.join(REPO_ROOT, "docs", "*.md")))
# Lines about other tools' flags (TensorBoard, TF's saved_model_cli, pip,
# pytest, mkdocs) are not ours to check.
FOREIGN = ("tensorboard", "saved_model_cli", "pip ", "pytest", "mkdocs")


def _shown():
  """(commands, {flag: [where]}) the pages show in code."""
  commands, shown = set(), {}
  for path in PAGES:
    with open(path, encoding="utf-8") as f:
      for number, line in enumerate(f, start=1):
        commands |= set(re.findall(r"tf-cvae-([a-z]+)", line))
        if any(tool in line for tool in FOREIGN):
          continue
        for flag in re.findall(r"(?<![\w-])--([a-z][a-z0-9_]+)", line):
          where = f"{os.path.relpath(path, REPO_ROOT)}:{number}"
          shown.setdefault(flag, []).append(where)
  return commands, shown


def test_the_docs_build_without_a_warning(tmp_path):
  pytest.importorskip("mkdocs")
  result = subprocess.run(
      [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
       str(tmp_path / "site")], cwd=REPO_ROOT, capture_output=True,
      text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert (tmp_path / "site" / "library" / "index.html").exists()
  html = (tmp_path / "site" / "library" / "index.html").read_text()
  assert "CriticWeight" in html          # the API from the docstrings


def test_every_command_and_flag_the_docs_show_exists(run_script):
  commands, shown = _shown()
  scripts = {name: os.path.join(REPO_ROOT, "runners", f"{name}.py")
             for name in commands}
  missing = sorted(c for c, p in scripts.items() if not os.path.exists(p))
  assert not missing, f"the docs show unknown commands: {missing}"
  scripts.update({os.path.basename(p)[:-3]: p for p in glob.glob(
      os.path.join(REPO_ROOT, "experiments", "*.py"))
                  if not p.endswith("__init__.py")})
  defined = set()
  for script in scripts.values():
    result = run_script(script, "--helpfull")
    defined |= set(re.findall(r"--\[?(?:no\]?)?([a-z][a-z0-9_]+)",
                              result.stdout + result.stderr))
  unknown = {flag: where for flag, where in shown.items()
             if flag not in defined
             and not (flag.startswith("no") and flag[2:] in defined)}
  assert not unknown, f"the docs show flags no command defines: {unknown}"
  assert {"critic", "bn_gamma", "kl_cycle_steps", "pretrain_steps"} <= (
      set(shown))
