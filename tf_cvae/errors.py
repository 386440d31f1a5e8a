"""The error tf_cvae raises for bad input, which runners report in one line."""


class InputError(ValueError):
  """Bad input from the user: a data file, a setting, a run directory.

  The message names the file (and line) or the setting. Runners print it as
  one line and exit with status 2; any other exception is a bug and keeps its
  traceback.
  """


class TrainingError(RuntimeError):
  """A run that cannot go on (e.g. it diverged); its checkpoints are kept.

  Runners print it as one line and exit with status 3.
  """


def lost_worker(error: Exception) -> TrainingError:
  """The TrainingError of a multi_worker run whose collective `error`
  (tf.errors.UnavailableError or AbortedError) says a worker is gone."""
  reason = str(getattr(error, "message", error)).strip().splitlines()[0]
  return TrainingError(
      f"lost a worker of the multi_worker run ({reason.split('}} ')[-1]}); "
      "start every worker again: they resume from the chief's last "
      "checkpoint")


class Interrupted(Exception):
  """Training stopped by a signal after saving a checkpoint.

  Runners exit with status 128 + `signum`, the shell's code for the signal.
  """

  def __init__(self, signum: int, message: str):
    super().__init__(message)
    self.signum = signum
