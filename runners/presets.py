"""Presets (the flagfiles of flags/, shipped in the package) and the reading
of --preset and --flagfile into argv before absl parses it.

A preset or flagfile is read where it stands on the command line, as absl
reads --flagfile: a flag after it overrides its value, a flag before it is
overridden by it. A --flagfile line inside a flagfile names a path relative
to the folder of the file that holds the line (else, as absl did, relative
to the working directory).
"""

import os

from absl import flags

import tf_cvae
from tf_cvae import errors

_SUFFIX = ".cfg"
LIST = "list"    # --preset=list prints the presets and exits


def presets_dir() -> str:
  """The folder of the presets: tf_cvae/presets/ in an installed wheel (the
  package data pyproject.toml maps from flags/), else the source checkout's
  flags/ (a checkout, or an editable install of one)."""
  package = os.path.dirname(os.path.abspath(tf_cvae.__file__))
  installed = os.path.join(package, "presets")
  if os.path.isdir(installed):
    return installed
  return os.path.join(os.path.dirname(package), "flags")


def names() -> list[str]:
  """The presets' names: their file names without .cfg, sorted."""
  folder = presets_dir()
  if not os.path.isdir(folder):
    return []
  return sorted(f[:-len(_SUFFIX)] for f in os.listdir(folder)
                if f.endswith(_SUFFIX))


def listing() -> str:
  """One line a preset: its name, then its file's first comment line."""
  lines = []
  width = max((len(n) for n in names()), default=0) + 2
  for name in names():
    with open(os.path.join(presets_dir(), name + _SUFFIX),
              encoding="utf-8") as f:
      comments = [line.strip().lstrip("#").strip() for line in f
                  if line.strip().startswith("#")]
    lines.append(name.ljust(width) + (comments[0] if comments else ""))
  return "\n".join(lines)


def define_preset_flag() -> None:
  """Defines --preset (for the runners that take the training flags)."""
  flags.DEFINE_string(
      "preset", None, "Read the flags of a preset: a flagfile shipped with "
      f"tf_cvae, named without .cfg ({LIST}: print them). Read where it "
      "stands: flags after it override it, flags before it are overridden.")


def _preset_path(name: str) -> str:
  """The file of preset `name`; errors.InputError naming the known ones."""
  if name not in names():
    raise errors.InputError(f"--preset={name}: unknown preset; known: "
                            f"{', '.join(names())} (or {LIST})")
  return os.path.join(presets_dir(), name + _SUFFIX)


def _directive(arg: str, name: str) -> tuple[bool, str | None]:
  """(whether arg is --name or --name=VALUE, VALUE or None if separate)."""
  for dashes in ("--", "-"):
    if arg == dashes + name:
      return True, None
    if arg.startswith(dashes + name + "="):
      return True, arg[len(dashes + name) + 1:].strip()
  return False, None


def _nested_path(path: str, including_file: str) -> str:
  """A --flagfile line's path: relative to the including file's folder,
  else (absl's reading) to the working directory if a file is there."""
  path = os.path.expanduser(path)
  beside = os.path.join(os.path.dirname(including_file), path)
  if os.path.isabs(path) or os.path.exists(beside) or not os.path.exists(path):
    return os.path.abspath(beside)
  return os.path.abspath(path)


def _file_lines(path: str, stack: tuple[str, ...]) -> list[str]:
  """The flags of a flagfile (comments and blank lines dropped), its nested
  --flagfile and --preset lines replaced by their own flags."""
  if path in stack:
    raise errors.InputError(f"{stack[-1]}: its --flagfile {path} includes "
                            "it again (a cycle)")
  try:
    with open(path, encoding="utf-8") as f:
      lines = [line.strip() for line in f]
  except (OSError, UnicodeDecodeError) as error:
    reason = getattr(error, "strerror", None) or "not a text file"
    where = f"{stack[-1]}: --flagfile line: " if stack else "--flagfile: "
    raise errors.InputError(f"{where}cannot read {path}: {reason}") from None
  out = []
  for line in lines:
    if not line or line.startswith(("#", "//")):
      continue
    nested, value = _directive(line, "flagfile")
    preset, name = _directive(line, "preset")
    if nested and value:
      out += _file_lines(_nested_path(value, path), stack + (path,))
    elif preset and name:
      out += _file_lines(_preset_path(name), stack + (path,))
    else:
      out.append(line)
  return out


def expand_argv(argv: list[str], with_presets: bool = True) -> list[str]:
  """argv with every --flagfile (and --preset, if with_presets) replaced by
  the flags it reads, in place, so later flags still win; argv[0] and
  everything after a `--` kept as given. Raises errors.InputError naming an
  unreadable file or an unknown preset."""
  out, rest = list(argv[:1]), list(argv[1:])
  directives = ("flagfile", "preset") if with_presets else ("flagfile",)
  while rest:
    arg = rest.pop(0)
    if arg == "--":
      out += [arg] + rest
      break
    for name in directives:
      matched, value = _directive(arg, name)
      if matched:
        if value is None:
          if not rest:
            raise errors.InputError(f"--{name} needs a value")
          value = rest.pop(0)
        if value:     # absl ignores an empty --flagfile=
          out += _file_lines(_preset_path(value) if name == "preset" else
                             os.path.abspath(os.path.expanduser(value)), ())
        break
    else:
      out.append(arg)
  return out


def wants_listing(argv: list[str]) -> bool:
  """Whether the command line asks for --preset=list."""
  args = argv[1:argv.index("--")] if "--" in argv else argv[1:]
  return any(_directive(a, "preset") == (True, LIST) for a in args) or any(
      _directive(a, "preset") == (True, None) and b == LIST
      for a, b in zip(args, args[1:]))
