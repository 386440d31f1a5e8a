"""One process per run directory: an exclusive flock on out_dir/LOCK.

A run holds the flock for the whole of its training and evaluation; the
file names the holder (JSON: pid, host, started) for the one-line error a
second process gets. The kernel releases the flock when its holder exits,
however it dies, so a lock left by a dead run never blocks. The holder
removes the file when it lets go, also on an exception. Within one process
the lock is reentrant: a command line may hold it around its own writes
into the run directory and train.run's.
"""

import datetime
import fcntl
import json
import os
import socket

from tf_cvae import errors

LOCK_NAME = "LOCK"

# The lock files this process holds (real paths) -> how many holders.
_HELD_HERE = {}


class RunDirectoryLocked(errors.InputError):
  """Another process holds the run directory (runners exit with status 2)."""


class RunLock:
  """The lock of `run_dir` (a context manager: acquire, then release)."""

  def __init__(self, run_dir: str):
    self.run_dir = run_dir
    self.path = os.path.join(run_dir, LOCK_NAME)
    self._fd, self._key = None, None

  def acquire(self) -> None:
    """Takes the lock (again, if this process holds it already); raises
    RunDirectoryLocked naming the holder when another process holds it."""
    os.makedirs(self.run_dir, exist_ok=True)
    self._key = os.path.realpath(self.path)
    if self._key in _HELD_HERE:
      _HELD_HERE[self._key] += 1
      return
    while True:              # a raw descriptor: held until released
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        holder = os.read(fd, 4096).decode("utf-8", "replace")
        os.close(fd)
        self._key = None
        raise RunDirectoryLocked(self._held_by(holder)) from None
      # The file is still the one at self.path (a holder that let go
      # meanwhile removed it): else again.
      try:
        if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
          break
      except FileNotFoundError:
        pass
      os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, (json.dumps(dict(
        pid=os.getpid(), host=socket.gethostname(),
        started=datetime.datetime.now().astimezone().isoformat(
            timespec="seconds")), sort_keys=True) + "\n").encode("utf-8"))
    self._fd = fd
    _HELD_HERE[self._key] = 1

  def _held_by(self, holder: str) -> str:
    """The one-line error of a directory in use; `holder`: the file's text."""
    try:
      holder = json.loads(holder)
      who = (f"pid {holder['pid']} on {holder['host']} since "
             f"{holder['started']}")
    except (ValueError, TypeError, KeyError):
      who = f"another process (see {self.path})"
    return (f"{self.run_dir} is in use by {who}; one process per run "
            f"directory: wait for it, stop it, or pass another --out_dir")

  def release(self) -> None:
    """Lets go of the lock; its last holder in this process removes the
    file and the flock (nothing if not held)."""
    if self._key is None:
      return
    _HELD_HERE[self._key] -= 1
    if not _HELD_HERE[self._key]:
      del _HELD_HERE[self._key]
    self._key = None
    if self._fd is not None:         # the outermost holder
      os.remove(self.path)
      os.close(self._fd)
      self._fd = None

  def __enter__(self):
    self.acquire()
    return self

  def __exit__(self, *exc_info):
    self.release()
    return False
