"""The library never reads flags: only the commands do (tf_cvae/cli, whose
modules the runners/*.py scripts and the tf-cvae-* console scripts run)."""

import ast
import os

import tf_cvae

_LIBRARY = os.path.dirname(tf_cvae.__file__)
_COMMANDS = os.path.join(_LIBRARY, "cli")


def _library_modules():
  for folder, _, files in os.walk(_LIBRARY):
    if folder == _COMMANDS or folder.startswith(_COMMANDS + os.sep):
      continue
    for name in files:
      if name.endswith(".py"):
        yield os.path.join(folder, name)


def _imports(path: str) -> set[str]:
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.update(f"{node.module}.{alias.name}" for alias in node.names)
  return names


def test_only_the_commands_import_absl_flags_or_the_commands():
  modules = list(_library_modules())
  assert len(modules) > 50                       # the walk found the library
  offenders = {os.path.relpath(path, _LIBRARY): sorted(
      name for name in _imports(path)
      if name in ("absl.flags", "absl.app") or name.startswith("tf_cvae.cli"))
               for path in modules}
  assert {path: names for path, names in offenders.items() if names} == {}


def test_the_commands_do_read_flags():
  """The check above would pass vacuously if nothing imported absl.flags."""
  assert "absl.flags" in _imports(os.path.join(_COMMANDS, "train_flags.py"))
