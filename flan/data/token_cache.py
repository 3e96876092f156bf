"""A token cache on disk: a task's tokenized training examples, written once, memory-mapped.

Reading, preprocessing, rendering and tokenizing a FLAN task costs CPU time proportional to
its examples on every start of every host. The cache keeps the result, the tokens, as flat
int32 arrays that later runs memory-map: start-up then reads a few small files, and the
tokens occupy the page cache once instead of Python objects per example.

Layout (one directory per entry, named for the task and a hash of every key part):

  <cache_dir>/<task>-<hash>/manifest.json       the key parts in full, the format version
  <cache_dir>/<task>-<hash>/shard-<i>-of-<n>/   one data shard's (or, 0-of-1, all) rows:
      inputs.npy targets.npy                    int32 [sum of lengths]: tokens, concatenated
      inputs_lengths.npy targets_lengths.npy    int32 [rows]: each row's number of tokens
      example_id.npy                            int32 [rows]: each row's example id
      done                                      written last: the shard is complete

The key (`flan.data.tasks.FlanSource.cache_key`) holds everything the tokens depend on: task,
split, TFDS builder versions and the slices read, the vocabulary (a hash of its model), the
templates and preprocessor code (hashes), the seed (which draws the templates) and the knobs
(number of templates, template mode, EOS). Any change gives another hash, so a stale entry is
never read; it is left in place (delete old directories to reclaim the space).

Writes are atomic: a shard is written into a temporary directory beside its final name and
renamed when complete, so a reader sees a whole shard or none, and hosts writing the same
shard at once do not corrupt it (the first rename wins, the other is dropped).

A host looks for its own shard (`shard-<i>-of-<n>`), else the whole task (`shard-0-of-1`,
what `scripts/prepare_data.py --cache` writes ahead of a pod run), from which it maps only
its rows (they are contiguous: a shard is a contiguous range of example ids).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from flan.data import packing

FORMAT_VERSION = 1
_ARRAYS = ("inputs", "inputs_lengths", "targets", "targets_lengths", "example_id")


def key_hash(parts: Mapping[str, Any]) -> str:
  """A short hash of the key parts (JSON with sorted keys)."""
  text = json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def entry_dir(
  cache_dir: str | os.PathLike, task_name: str, parts: Mapping[str, Any]
) -> pathlib.Path:
  """The directory of the entry of `task_name` with these key parts."""
  return pathlib.Path(cache_dir).expanduser() / f"{task_name}-{key_hash(parts)}"


def _shard_dir(entry: pathlib.Path, shard: tuple[int, int]) -> pathlib.Path:
  return entry / f"shard-{shard[0]}-of-{shard[1]}"


class Tokens:
  """A shard's tokenized rows: ragged `inputs` and `targets`, and each row's example id."""

  def __init__(self, inputs: packing.Ragged, targets: packing.Ragged, example_id: np.ndarray):
    self.inputs, self.targets, self.example_id = inputs, targets, example_id

  def __len__(self) -> int:
    return len(self.example_id)

  def rows(self, begin: int, end: int) -> Tokens:
    """Rows `begin:end` (views: nothing copied, nothing read from a memory map)."""

    def cut(r: packing.Ragged) -> packing.Ragged:
      starts = r.starts
      lo = int(starts[begin]) if begin < len(r.lengths) else int(r.values.shape[0])
      hi = int(starts[end]) if end < len(r.lengths) else int(r.values.shape[0])
      return packing.Ragged(r.values[lo:hi], r.lengths[begin:end])

    return Tokens(cut(self.inputs), cut(self.targets), self.example_id[begin:end])


def _open(shard_dir: pathlib.Path) -> Tokens:
  a = {k: np.load(shard_dir / f"{k}.npy", mmap_mode="r") for k in _ARRAYS}
  return Tokens(
    packing.Ragged(a["inputs"], a["inputs_lengths"]),
    packing.Ragged(a["targets"], a["targets_lengths"]),
    a["example_id"],
  )


def _check_manifest(entry: pathlib.Path, parts: Mapping[str, Any]) -> bool:
  try:
    manifest = json.loads((entry / "manifest.json").read_text())
  except (OSError, ValueError):
    return False
  want = json.loads(json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True, default=str))
  if manifest != want:  # a hash collision, or a hand-edited entry: never trust it.
    logging.warning("Token cache %s: its manifest does not match the key; ignoring it.", entry)
    return False
  return True


def load(
  cache_dir: str | os.PathLike,
  task_name: str,
  parts: Mapping[str, Any],
  shard: tuple[int, int],
  id_bounds: tuple[int, int] | None,
) -> Tokens | None:
  """The memory-mapped rows of `shard`, or None on a miss.

  Args:
    cache_dir, task_name, parts: which entry (see `entry_dir`).
    shard: `(index, count)` of this host.
    id_bounds: `[first, last + 1)` example ids of the shard, to cut its rows out of a whole-
      task entry; None: the shard reads no example.
  """
  entry = entry_dir(cache_dir, task_name, parts)
  own, whole = _shard_dir(entry, shard), _shard_dir(entry, (0, 1))
  if not _check_manifest(entry, parts):
    return None
  if (own / "done").exists():
    return _open(own)
  if (whole / "done").exists():
    tokens = _open(whole)
    if id_bounds is None:
      return tokens.rows(0, 0)
    ids = tokens.example_id
    begin, end = np.searchsorted(ids, id_bounds[0]), np.searchsorted(ids, id_bounds[1])
    return tokens.rows(int(begin), int(end))
  return None


def write(
  cache_dir: str | os.PathLike,
  task_name: str,
  parts: Mapping[str, Any],
  shard: tuple[int, int],
  tokens: Tokens,
) -> pathlib.Path:
  """Writes `tokens` as the rows of `shard` (atomically; see the module docstring)."""
  entry = entry_dir(cache_dir, task_name, parts)
  entry.mkdir(parents=True, exist_ok=True)
  manifest = entry / "manifest.json"
  if not manifest.exists():
    _atomic_text(
      manifest,
      json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True, indent=1, default=str),
    )
  final = _shard_dir(entry, shard)
  if (final / "done").exists():
    return final
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=entry))
  try:
    arrays = {
      "inputs": tokens.inputs.values,
      "inputs_lengths": tokens.inputs.lengths,
      "targets": tokens.targets.values,
      "targets_lengths": tokens.targets.lengths,
      "example_id": tokens.example_id,
    }
    for k, v in arrays.items():
      np.save(tmp / f"{k}.npy", np.asarray(v, np.int32))
    (tmp / "done").write_text("")
    try:
      os.rename(tmp, final)
    except OSError:  # another host wrote it first: theirs is as good.
      if not (final / "done").exists():
        raise
  finally:
    if tmp.exists():
      shutil.rmtree(tmp, ignore_errors=True)
  return final


def _atomic_text(path: pathlib.Path, text: str) -> None:
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
  with os.fdopen(fd, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def load_or_build(
  cache_dir: str | os.PathLike | None,
  task_name: str,
  parts: Mapping[str, Any] | None,
  shard: tuple[int, int],
  id_bounds: tuple[int, int] | None,
  build: Callable[[], Tokens],
) -> Tokens:
  """The shard's tokens from the cache, else `build()` (written to the cache if there is one).

  `cache_dir=None` or `parts=None` (a task the cache cannot key) just builds.
  """
  if cache_dir is None or parts is None:
    return build()
  hit = load(cache_dir, task_name, parts, shard, id_bounds)
  if hit is not None:
    return hit
  tokens = build()
  write(cache_dir, task_name, parts, shard, tokens)
  return _open(_shard_dir(entry_dir(cache_dir, task_name, parts), shard))
