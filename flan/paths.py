"""Paths that may be local or remote (`gs://bucket/run`): every file flan reads or writes.

MODEL_DIR, checkpoints, evaluation outputs, INITIAL_CHECKPOINT_PATH / CHECKPOINT_PATH and
DATA_DIR all go through `etils.epath` (as t5x and orbax do), so a `gs://` path is read and
written on the bucket, never as a local folder named `gs:`. Local paths are made absolute
(orbax needs that); remote ones are kept as written.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

from etils import epath

REMOTE_SCHEMES = ("gs://", "s3://", "hf://", "memory://")


def is_remote(path: str | os.PathLike) -> bool:
  """Whether `path` names a file system other than the local one (gs://, s3://, ...)."""
  return os.fspath(path).startswith(REMOTE_SCHEMES)


def path(value: str | os.PathLike) -> epath.Path:
  """`value` as an `epath.Path`: absolute when local, unchanged when remote."""
  if is_remote(value):
    return epath.Path(value)
  return epath.Path(os.path.abspath(os.path.expanduser(os.fspath(value))))


def write_atomic(path: str | os.PathLike, text: str) -> None:
  """Writes `text` to `path` so that readers see the old file or the new one, never half.

  Locally: a temporary file in the same directory, synced, then renamed over `path`. On an
  object store (gs://) one write is already all or nothing.
  """
  if is_remote(path):
    epath.Path(path).write_text(text)
    return
  path = pathlib.Path(path)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise
