"""Paths that may be local or remote (`gs://bucket/run`): every file flan reads or writes.

MODEL_DIR, checkpoints, evaluation outputs, INITIAL_CHECKPOINT_PATH / CHECKPOINT_PATH and
DATA_DIR all go through `etils.epath` (as t5x and orbax do), so a `gs://` path is read and
written on the bucket, never as a local folder named `gs:`. Local paths are made absolute
(orbax needs that); remote ones are kept as written.
"""

from __future__ import annotations

import os

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
