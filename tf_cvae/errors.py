"""The error tf_cvae raises for bad input, which runners report in one line."""


class InputError(ValueError):
  """Bad input from the user: a data file, a setting, a run directory.

  The message names the file (and line) or the setting. Runners print it as
  one line and exit with status 2; any other exception is a bug and keeps its
  traceback.
  """
