"""One process per run directory: the lock file out_dir/LOCK.

A run holds out_dir/LOCK for the whole of its training and evaluation: the
file names the holder (JSON: pid, host, started) and the holder keeps an
exclusive flock on it, so two processes starting together cannot both get
it. A second process on the directory fails with one line naming the
holder. A lock whose holder ran on this host and is gone (its pid is not
alive) is taken over with a warning; one from another host is respected,
since its pid cannot be checked from here (the error says how to remove
it). The lock goes when the run ends, also on an exception. Within one
process it is reentrant: a command line may hold it around its own writes
into the run directory and train.run's.
"""

import datetime
import errno
import fcntl
import json
import os
import socket

from absl import logging

from tf_cvae import errors

LOCK_NAME = "LOCK"

# The lock files this process holds (real paths) -> how many holders.
_HELD_HERE = {}


class RunDirectoryLocked(errors.InputError):
  """Another process holds the run directory (runners exit with status 2)."""


def pid_alive(pid: int) -> bool:
  """Whether a process with this pid runs on this host."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:          # alive, another user's
    return True
  return True


def _read_holder(fd: int) -> dict | None:
  """The holder a lock file names ({"pid", "host", "started"}), or None
  when the file is empty or unreadable."""
  os.lseek(fd, 0, os.SEEK_SET)
  try:
    holder = json.loads(os.read(fd, 4096).decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError):
    return None
  if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int):
    return None
  return holder


class RunLock:
  """The lock of `run_dir` (a context manager: acquire, then release)."""

  def __init__(self, run_dir: str):
    self.run_dir = run_dir
    self.path = os.path.join(run_dir, LOCK_NAME)
    self._fd, self._key = None, None

  def acquire(self) -> None:
    """Takes the lock (again, if this process holds it already).

    Raises RunDirectoryLocked naming the holder when a live process on this
    host, or any process on another host, holds it.
    """
    os.makedirs(self.run_dir, exist_ok=True)
    key = os.path.realpath(self.path)
    if key in _HELD_HERE:
      _HELD_HERE[key] += 1
      self._key = key
      return
    fd = self._open_locked()
    try:
      holder = _read_holder(fd)
      if holder is not None:
        self._check_stale(holder)
      elif os.fstat(fd).st_size:
        logging.warning("taking over %s, which names no holder", self.path)
      mine = dict(pid=os.getpid(), host=socket.gethostname(),
                  started=datetime.datetime.now().astimezone().isoformat(
                      timespec="seconds"))
      os.ftruncate(fd, 0)
      os.lseek(fd, 0, os.SEEK_SET)
      os.write(fd, (json.dumps(mine, sort_keys=True) + "\n").encode("utf-8"))
      os.fsync(fd)
    except BaseException:
      os.close(fd)
      raise
    self._fd, self._key = fd, key
    _HELD_HERE[key] = 1

  def _open_locked(self) -> int:
    """The lock file open, with an exclusive flock (where the file system
    has flocks) on the file that is at self.path now."""
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise RunDirectoryLocked(self._held_by(holder)) from None
      except OSError as error:
        if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP):
          os.close(fd)
          raise
        return fd            # no flocks here: the holder's pid decides
      try:
        same_file = os.stat(self.path).st_ino == os.fstat(fd).st_ino
      except FileNotFoundError:
        same_file = False
      if same_file:
        return fd
      os.close(fd)           # its holder removed it meanwhile: again

  def _check_stale(self, holder: dict) -> None:
    """Raises unless the holder is gone (this host, pid not alive) or is
    this process; warns when taking over."""
    if holder.get("host") != socket.gethostname():
      raise RunDirectoryLocked(
          f"{self.run_dir} is locked by pid {holder['pid']} on host "
          f"{holder.get('host')} since {holder.get('started')}; if no process "
          f"on {holder.get('host')} still uses it, delete {self.path}")
    if holder["pid"] != os.getpid() and pid_alive(holder["pid"]):
      raise RunDirectoryLocked(self._held_by(holder) + (
          f" (if pid {holder['pid']} is not a tf_cvae run, delete "
          f"{self.path})"))
    if holder["pid"] != os.getpid():
      logging.warning("taking over %s: its holder, pid %d on %s since %s, "
                      "is no longer running", self.path, holder["pid"],
                      holder["host"], holder.get("started"))

  def _held_by(self, holder: dict | None) -> str:
    """The one-line error of a directory in use."""
    if holder is None:
      return (f"{self.run_dir} is in use by another process (see "
              f"{self.path}); one process per run directory")
    return (f"{self.run_dir} is in use by pid {holder['pid']} on "
            f"{holder.get('host')} since {holder.get('started')}; one process "
            f"per run directory: wait for it, stop it, or pass another "
            f"--out_dir")

  def release(self) -> None:
    """Lets go of the lock; its last holder in this process removes the
    file (nothing if not held)."""
    if self._key is None:
      return
    _HELD_HERE[self._key] -= 1
    if not _HELD_HERE[self._key]:
      del _HELD_HERE[self._key]
    self._key = None
    if self._fd is None:       # an inner holder
      return
    try:
      if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
        os.remove(self.path)
    except FileNotFoundError:
      pass
    finally:
      os.close(self._fd)
      self._fd = None

  def __enter__(self):
    self.acquire()
    return self

  def __exit__(self, *exc_info):
    self.release()
    return False
