"""One trainer per MODEL_DIR: a lock file naming its holder, taken atomically.

Two trainers writing one MODEL_DIR overwrite each other's checkpoints, config and
evaluation while both logs claim success. `hold(model_dir)` creates MODEL_DIR/LOCK_NAME
with O_CREAT|O_EXCL (atomic on POSIX file systems, NFS v3+ included) holding the holder's
host, pid, process start time and command line, and removes it when the run ends (normal
return, exception, or a signal the trainer handles). A second trainer finds the file and is
refused with a `RunLockError` naming the holder.

A lock left by a process that died without cleaning up (SIGKILL, OOM, a machine reboot)
is stale when it names this host and a pid that no longer runs (or runs a process started
at another time: pids are reused). A stale lock is reported and taken over. A lock of
another host cannot be checked from here: the message says how to remove it by hand.
Multi-host runs hold the lock once, on process 0; the others learn the outcome from it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import pathlib
import socket
import sys
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from flan import paths
from flan.errors import UserError

LOCK_NAME = "flan_train.lock"


class RunLockError(UserError, RuntimeError):
  """MODEL_DIR is held by another trainer (or its lock could not be taken)."""


def _process_start(pid: int) -> str | None:
  """The kernel's start time of `pid` (clock ticks since boot), None where unknown."""
  try:
    stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
  except OSError:
    return None
  return stat.rsplit(")", 1)[1].split()[19]  # field 22 of stat(5), after the command name


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's process: it exists
    return True
  return True


def describe(holder: dict[str, Any]) -> str:
  """'pid 123 on host h (started 2026-...; command ...)' for messages."""
  command = holder.get("command")
  return (
    f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} (started "
    f"{holder.get('started', '?')}{'; ' + command if command else ''})"
  )


def is_stale(holder: dict[str, Any]) -> bool:
  """Whether `holder` names a process of this host that no longer runs."""
  if holder.get("host") != socket.gethostname():
    return False
  pid = holder.get("pid")
  if not isinstance(pid, int) or not _pid_alive(pid):
    return True
  recorded, current = holder.get("process_start"), _process_start(pid)
  return recorded is not None and current is not None and recorded != current


def _age_seconds(path: pathlib.Path) -> float:
  try:
    return datetime.datetime.now().timestamp() - path.stat().st_mtime
  except OSError:
    return float("inf")


def _read_record(path: pathlib.Path) -> dict[str, Any] | None:
  try:
    text = path.read_text()
  except FileNotFoundError:
    return None
  except OSError:
    return {}
  try:
    holder = json.loads(text)
  except ValueError:
    return {}
  return holder if isinstance(holder, dict) else {}


class RunLock:
  """The lock file of one MODEL_DIR (`acquire`, `release`; see the module docstring)."""

  def __init__(self, model_dir: str | os.PathLike):
    self.path = pathlib.Path(model_dir) / LOCK_NAME
    self._content: str | None = None

  @property
  def held(self) -> bool:
    return self._content is not None

  def read(self) -> dict[str, Any] | None:
    """The current holder's record, {} if unreadable, None if there is no lock file."""
    return _read_record(self.path)

  def _record(self) -> str:
    pid = os.getpid()
    return (
      json.dumps(
        {
          "host": socket.gethostname(),
          "pid": pid,
          "process_start": _process_start(pid),
          "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
          "command": " ".join([os.path.basename(sys.executable)] + sys.argv)[:500],
        }
      )
      + "\n"
    )

  def _create(self) -> bool:
    """Creates the lock file atomically; False if it exists."""
    content = self._record()
    try:
      fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    with os.fdopen(fd, "w") as f:
      f.write(content)
      f.flush()
      os.fsync(f.fileno())
    self._content = content
    return True

  def _take_over(self, holder: dict[str, Any]) -> bool:
    """Moves a stale lock aside, checking that it is still the one found stale."""
    aside = self.path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
    try:
      os.rename(self.path, aside)
    except FileNotFoundError:
      return False  # another starter moved it first: try to create ours
    if _read_record(aside) != holder:  # a live lock taken meanwhile by another starter: put it back
      with contextlib.suppress(OSError):
        os.link(aside, self.path)
    aside.unlink(missing_ok=True)
    return True

  def acquire(self) -> None:
    """Takes the lock or raises RunLockError naming the holder."""
    for _ in range(3):
      if self._create():
        return
      holder = self.read()
      if holder is None:
        continue  # released between our two looks: try again
      if holder and not is_stale(holder):
        raise RunLockError(
          f"MODEL_DIR {str(self.path.parent)!r} is in use by another trainer: "
          f"{describe(holder)}. Wait for it to finish, or use another --gin.MODEL_DIR; if "
          f"that run is gone (another host cannot be checked from here), delete {self.path}."
        )
      if not holder and _age_seconds(self.path) < 10:  # another starter is writing it
        raise RunLockError(
          f"MODEL_DIR {str(self.path.parent)!r} is being locked by another "
          "trainer that is starting now; use another --gin.MODEL_DIR."
        )
      if not holder:
        logging.warning("The lock file %s is unreadable; taking it over.", self.path)
      else:
        logging.warning(
          "Taking over the stale lock %s of %s, which no longer runs.", self.path, describe(holder)
        )
      self._take_over(holder)
    raise RunLockError(
      f"Could not take the lock {self.path}: other trainers keep starting on this MODEL_DIR."
    )

  def release(self) -> None:
    """Removes the lock file if it is still ours (safe to call twice, or from a signal)."""
    if self._content is None:
      return
    with contextlib.suppress(OSError):
      if self.path.read_text() == self._content:
        self.path.unlink()
    self._content = None


@contextlib.contextmanager
def hold(model_dir: str | os.PathLike) -> Iterator[RunLock | None]:
  """Holds MODEL_DIR's lock for the block (process 0 takes it; every process may call this).

  Raises:
    RunLockError: another trainer holds it (on every process of a multi-host run).
  """
  if paths.is_remote(model_dir):
    # An object store has no atomic create-if-absent through epath: no lock (t5x takes none).
    logging.warning("MODEL_DIR %s is remote: it is not locked against a second trainer.", model_dir)
    yield None
    return
  lock = RunLock(model_dir)
  error = None
  if jax.process_index() == 0:
    try:
      lock.acquire()
    except RunLockError as e:
      error = e
  if jax.process_count() > 1:  # the others learn process 0's outcome
    from jax.experimental import multihost_utils

    ok = multihost_utils.broadcast_one_to_all(np.int32(error is None))
    if error is None and not int(ok):
      error = RunLockError(
        f"Process 0 could not lock MODEL_DIR {str(model_dir)!r}; see its error line."
      )
  if error is not None:
    raise error
  try:
    yield lock
  finally:
    lock.release()
