"""The library never reads flags: only the commands do (runners/, the
package tf_cvae_runners, whose modules are the runners/*.py scripts and the
tf-cvae-* console scripts)."""

import ast
import os

import tf_cvae_runners

import tf_cvae

_LIBRARY = os.path.dirname(tf_cvae.__file__)
_COMMANDS = os.path.dirname(tf_cvae_runners.__file__)


def _library_modules():
  for folder, _, files in os.walk(_LIBRARY):
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
  assert len(modules) > 40                       # the walk found the library
  offenders = {os.path.relpath(path, _LIBRARY): sorted(
      name for name in _imports(path)
      if name in ("absl.flags", "absl.app") or name.startswith("tf_cvae_runners"))
               for path in modules}
  assert {path: names for path, names in offenders.items() if names} == {}


def test_the_commands_do_read_flags_outside_the_library():
  """The check above would pass vacuously if nothing imported absl.flags;
  and the commands live beside the library, not in it."""
  assert "absl.flags" in _imports(os.path.join(_COMMANDS, "train_flags.py"))
  assert os.path.commonpath([_LIBRARY, _COMMANDS]) != _LIBRARY
