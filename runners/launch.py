"""Runs a command's main(argv) as absl's app.run does, after reading the
command line: --preset=list, presets and flagfiles expanded in place
(presets.expand_argv), and the command's own flags made the key flags that
--help lists. --help (and --helpshort, --helpfull) exits 0; a bad flag, an
unknown one or a stray argument is one line `error: --flag: why` on stderr
and exit status 2."""

import re
import shlex
import sys

from tf_cvae_runners import presets

from absl import app
from absl import flags

from tf_cvae import errors

flags.DEFINE_boolean("verbose", False, "Keep TensorFlow's start-up and INFO "
                     "log lines (by default they are dropped).")
FLAGS = flags.FLAGS
_PACKAGE = __name__.rpartition(".")[0]     # tf_cvae_runners


def own_flags() -> list[flags.Flag]:
  """The flags the running command defines: those of tf_cvae_runners's modules
  (and of a module run as the main program), sorted by name."""
  found = {}
  for module, module_flags in FLAGS.flags_by_module_dict().items():
    if module.startswith(_PACKAGE) or module == sys.argv[0]:
      found.update((f.name, f) for f in module_flags)
  return [found[name] for name in sorted(found)]


def command_line(argv: list[str]) -> str:
  """argv as a shell command: a console script by its name, a runner script
  as `python path`, a `python -m` module as such."""
  program = argv[0]
  main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
  if program.endswith(".py") and main_spec is not None:
    head = ["python", "-m", main_spec.name]
  elif program.endswith(".py"):
    head = ["python", program]
  else:
    head = [program.rpartition("/")[2]]
  return shlex.join(head + list(argv[1:]))


USAGE_ERROR = 2     # exit status of a bad command line


def flag_error_line(error: flags.Error) -> str:
  """absl's flag parsing error as `--flag: why` (one line)."""
  if isinstance(error, flags.UnrecognizedFlagError):
    tip = str(error).partition(". Did you mean: ")[2].rstrip(" ?")
    return f"--{error.flagname}: unknown flag" + (
        f" (did you mean {tip}?)" if tip else "")
  message = " ".join(str(error).split())
  found = re.match(r"flag --([\w.-]+)=(.*?): (.*)$", message)
  if found:
    name, value, why = found.groups()
    if re.fullmatch(r"Flag --[\w.-]+ must have a value other than None\.",
                    why):
      return f"--{name}: required, and not given"
    if value and not (why.startswith(value) or repr(value) in why):
      why = f"{value!r}: {why}"
    return f"--{name}: {why}"
  return message


def fail(line: str) -> None:
  """Prints `error: <line>` to stderr and exits with USAGE_ERROR."""
  print(f"error: {line}", file=sys.stderr)
  sys.exit(USAGE_ERROR)


def parse_flags(argv: list[str]) -> list[str]:
  """FLAGS(argv) with absl's help flags defined; returns the arguments left.

  A help flag prints the usage and exits 0; a flag absl refuses (unknown,
  malformed, out of bounds, failing a validator) is fail(--flag: why).
  """
  app.define_help_flags()
  try:
    return FLAGS(argv)
  except flags.Error as error:
    fail(flag_error_line(error))
  except SystemExit as done:     # a help flag printed the usage (absl: 1)
    sys.exit(0 if done.code == 1 else done.code)
  return argv   # not reached


def _with_usage_errors(main):
  """main, an app.UsageError (e.g. stray arguments) made one error line."""
  def wrapped(argv):
    try:
      return main(argv)
    except app.UsageError as error:
      fail(str(error))
  return wrapped


def run(main) -> None:
  """Parses sys.argv (presets and flagfiles read in place) and calls
  main(argv) with the arguments left, as absl's app.run. A bad preset or
  flagfile is one error line, exit status 2."""
  with_presets = "preset" in FLAGS
  if with_presets and presets.wants_listing(sys.argv):
    print(presets.listing())
    sys.exit(0)
  try:
    argv = presets.expand_argv(sys.argv, with_presets)
  except errors.InputError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
  for flag in own_flags():
    FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  # --help prints the main program's docstring: the command's own.
  sys.modules["__main__"].__doc__ = sys.modules[main.__module__].__doc__
  left = parse_flags(argv)
  app.run(_with_usage_errors(main), argv=argv, flags_parser=lambda _: left)
