"""Orbax checkpoints of the train state and the input-pipeline position, in MODEL_DIR.

Layout (t5x's): MODEL_DIR/checkpoint_<step>/{state, dataset}. `state` is the sharded
`TrainState` (OCDBT/TensorStore via orbax's StandardCheckpointHandler); `dataset` is one
JSON of every process's `it.state()`, keyed `process_<i>-of-<n>` (each host reads its own
data shard, so each has its own position; `gather_dataset_states` collects them, host 0
writes them, `own_dataset_state` hands each host its own back), so a resume replays
exactly the batches that were not yet seen. Orbax writes each step into a temporary
directory and renames it when complete, so a crash mid-save never leaves a half-written
`checkpoint_<step>` (a leftover temporary directory is ignored and cleaned up).

Every committed checkpoint gets a manifest, MODEL_DIR/checkpoint_<step>/MANIFEST_NAME: the
size and SHA-256 of each of its files, written last and atomically (host 0, once orbax has
committed the step). A restore verifies it first, so flipped bits, a truncated or missing
file are found before any array is read. A checkpoint that fails (verification or orbax's
read) is moved aside to `checkpoint_<step>.corrupt-<time>`: it is never used again, never
counted by keep-N rotation, and kept for inspection; training falls back to the previous
checkpoint and, when it reaches that step again, saves it anew. A checkpoint without a
manifest (committed just before a crash, or written by an older flan) is read unverified,
with a warning.

Restore order (t5x's): the latest readable checkpoint in MODEL_DIR, else
INITIAL_CHECKPOINT_PATH, else from scratch. Arrays are restored straight into the CURRENT
shardings, so a checkpoint written on one mesh loads on any other.

This module is also the one restore API: `locate` tells the kinds of saved weights apart
(ours, params-only, Hugging Face, t5x), `restore_params` reads parameters onto a mesh for
evaluation and conversion, `restore_or_initialize` the train state for training.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from flan import paths
from flan.errors import UserError
from flan.model import partitioning

STATE, DATASET = "state", "dataset"
STEP_PREFIX = "checkpoint"
MANIFEST_NAME = "flan_manifest.json"
CORRUPT_MARK = ".corrupt-"


class CheckpointError(UserError, RuntimeError):
  """No usable checkpoint, or one that does not fit the model being trained."""


class CorruptCheckpointError(CheckpointError):
  """A checkpoint's files do not match its manifest."""


def _file_digest(path: epath.Path) -> str:
  digest = hashlib.sha256()
  with path.open("rb") as f:
    for block in iter(lambda: f.read(1 << 22), b""):
      digest.update(block)
  return digest.hexdigest()


def _size(path: epath.Path) -> int:
  stat = path.stat()
  return int(getattr(stat, "length", getattr(stat, "st_size", 0)))


def _files(step_dir: epath.Path) -> list[epath.Path]:
  """Every file under `step_dir` but the manifest (epath has no recursive glob)."""
  found, pending = [], [step_dir]
  while pending:
    for p in pending.pop().iterdir():
      if p.is_dir():
        pending.append(p)
      elif p.name != MANIFEST_NAME or p.parent != step_dir:
        found.append(p)
  return sorted(found)


def write_manifest(step_dir: str | os.PathLike) -> None:
  """Records the size and SHA-256 of every file under `step_dir`, atomically, last."""
  step_dir = paths.path(step_dir)
  files = {
    str(p.relative_to(step_dir)): {"size": _size(p), "sha256": _file_digest(p)}
    for p in _files(step_dir)
  }
  text = json.dumps({"algorithm": "sha256", "files": files}, indent=1) + "\n"
  paths.write_atomic(step_dir / MANIFEST_NAME, text)


def verify(step_dir: str | os.PathLike) -> bool:
  """Checks `step_dir` against its manifest; False if it has none (unverifiable).

  Raises:
    CorruptCheckpointError: a file is missing, or its size or checksum differs.
  """
  step_dir = paths.path(step_dir)
  manifest_path = step_dir / MANIFEST_NAME
  if not manifest_path.is_file():
    return False
  try:
    files = json.loads(manifest_path.read_text())["files"]
  except (ValueError, KeyError, TypeError) as e:
    raise CorruptCheckpointError(f"{manifest_path} is damaged ({type(e).__name__})") from None
  for name, expected in sorted(files.items()):
    path = step_dir / name
    if not path.is_file():
      raise CorruptCheckpointError(f"{path} is missing")
    if _size(path) != expected["size"]:
      raise CorruptCheckpointError(
        f"{path} has {_size(path)} bytes, the manifest {expected['size']}"
      )
    if _file_digest(path) != expected["sha256"]:
      raise CorruptCheckpointError(f"{path} does not match its checksum (damaged on disk)")
  return True


def move_aside(step_dir: str | os.PathLike) -> epath.Path | None:
  """Renames a bad `checkpoint_<step>` to `checkpoint_<step>.corrupt-<UTC time>` (host 0)."""
  step_dir = paths.path(step_dir)
  if jax.process_index() != 0:
    return None
  stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
  target = step_dir.with_name(f"{step_dir.name}{CORRUPT_MARK}{stamp}")
  try:
    step_dir.rename(target)
  except OSError as e:
    logging.warning("Could not move %s aside (%s).", step_dir, e)
    return None
  return target


def _path_str(path: tuple) -> str:
  parts = []
  for k in path:
    parts.append(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))))
  return "/".join(parts)


def _shapes_by_path(tree: Any) -> dict[str, tuple[int, ...]]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {_path_str(p): tuple(getattr(x, "shape", ())) for p, x in leaves}


def check_params_match(saved_params: Any, expected_params: Any, where: str) -> None:
  """Raises CheckpointError naming the first mismatching parameter and both shapes."""
  saved, expected = _shapes_by_path(saved_params), _shapes_by_path(expected_params)
  missing = sorted(set(expected) - set(saved))
  extra = sorted(set(saved) - set(expected))
  if missing or extra:
    raise CheckpointError(
      f"The checkpoint {where} does not hold this model's parameters: missing "
      f"{missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected "
      f"{extra[:3]}{'...' if len(extra) > 3 else ''}. Is it from another architecture?"
    )
  for name in expected:
    if saved[name] != expected[name]:
      raise CheckpointError(
        f"The checkpoint {where} is for another model size: parameter {name!r} has shape "
        f"{saved[name]} in the checkpoint but {expected[name]} in the model being trained. "
        "Use the model gin the checkpoint was trained with, or another MODEL_DIR."
      )


def saved_params(metadata: Any) -> Any:
  """The `params` subtree of a StandardCheckpointHandler metadata (shapes, no data)."""
  tree = getattr(metadata, "item_metadata", None) or metadata
  tree = getattr(tree, "tree", tree)
  return tree["params"] if isinstance(tree, Mapping) else tree.params


def process_key(index: int, count: int) -> str:
  """The key of one process's input position in the `dataset` item (t5x: process_i-of-N)."""
  return f"process_{index}-of-{count}"


def gather_dataset_states(state: Mapping[str, Any]) -> dict[str, Any]:
  """Every process's input-pipeline state, keyed by `process_key` (same dict on all hosts).

  Each host reads its own data shard, and shards pack different examples into different
  numbers of rows, so each host's (window, row) position is its own: all of them are saved.
  A collective: every process must call it at the same step.
  """
  count = jax.process_count()
  if count == 1:
    return {process_key(0, 1): dict(state)}
  from jax.experimental import multihost_utils

  data = np.frombuffer(json.dumps(dict(state)).encode(), np.uint8)
  lengths = np.asarray(multihost_utils.process_allgather(np.int32(len(data)))).reshape(-1)
  padded = np.zeros(int(lengths.max()), np.uint8)
  padded[: len(data)] = data
  rows = np.asarray(multihost_utils.process_allgather(padded))  # [count, max length]
  return {
    process_key(i, count): json.loads(rows[i, : lengths[i]].tobytes().decode())
    for i in range(count)
  }


def own_dataset_state(saved: Mapping[str, Any], where: str) -> dict[str, Any]:
  """This process's position from a `gather_dataset_states` dict read back from `where`.

  Raises:
    CheckpointError: the checkpoint was written by another number of processes.
  """
  index, count = jax.process_index(), jax.process_count()
  keys = sorted(k for k in saved if k.startswith("process_"))
  if not keys:  # a bare state (written by hand or by a single-process caller)
    if count == 1:
      return dict(saved)
    keys = ["(one unnamed process)"]
  elif process_key(index, count) in saved:
    return dict(saved[process_key(index, count)])
  raise CheckpointError(
    f"{where} holds the input-pipeline positions of {len(keys)} process(es) ({', '.join(keys)})"
    f" but this run has {count}: each process reads its own data shard, so positions do not "
    f"transfer. Resume with NUM_PROCESSES={len(keys)} (the same hosts), or start a new "
    "MODEL_DIR with INITIAL_CHECKPOINT_PATH set to that checkpoint (its weights, optimizer "
    "state and step; the data stream restarts from its beginning)."
  )


def abstract_state(shapes: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs carrying the CURRENT shardings: orbax restores straight into them."""
  return jax.tree.map(
    lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings
  )


class Checkpoints:
  """Periodic, keep-N, asynchronous saves and a fall-back-on-corruption restore.

  Args:
    model_dir: MODEL_DIR (created if missing).
    period: `should_save(step)` is true every `period` steps.
    keep: keep the newest `keep` checkpoints (None: all; at least 1, so that rotation never
      deletes the last good one).
    async_save: write in a background thread after the device-to-host copy.
  """

  def __init__(
    self, model_dir: str, *, period: int = 1000, keep: int | None = None, async_save: bool = True
  ):
    if keep is not None and int(keep) < 1:
      raise UserError(
        f"KEEP_CHECKPOINTS={keep} would delete every checkpoint; use 1 or more "
        "(or None to keep all)."
      )
    self.model_dir = paths.path(model_dir)
    self.period = max(1, int(period))
    self._unsealed: list[int] = []  # committed or in flight, no manifest yet
    self._sealer: threading.Thread | None = None
    # The save decision is ours (`should_save`): orbax's own would also save the first step.
    options = ocp.CheckpointManagerOptions(
      save_interval_steps=1,
      max_to_keep=keep,
      step_prefix=STEP_PREFIX,
      create=True,
      cleanup_tmp_directories=True,
      enable_async_checkpointing=async_save,
    )
    handlers = {STATE: ocp.StandardCheckpointHandler(), DATASET: ocp.JsonCheckpointHandler()}
    self.manager = ocp.CheckpointManager(self.model_dir, options=options, item_handlers=handlers)

  def step_dir(self, step: int) -> epath.Path:
    return self.model_dir / f"{STEP_PREFIX}_{step}"

  def _seal(self, *, block: bool) -> None:
    """Writes the manifests of the saves orbax has committed (call after waiting on them).

    Host 0 hashes in a background thread unless `block` (hashlib releases the GIL, so
    training goes on meanwhile); one sealing runs at a time.
    """
    if self._sealer is not None:
      self._sealer.join()
      self._sealer = None
    steps, self._unsealed = self._unsealed, []
    if jax.process_index() != 0 or not steps:
      return

    def seal() -> None:
      for step in steps:
        try:
          write_manifest(self.step_dir(step))
        except OSError as e:  # rotation (KEEP_CHECKPOINTS=1) may have deleted it meanwhile
          if self.step_dir(step).is_dir():
            logging.warning(
              "Could not write the manifest of %s (%s); it will be read unverified.",
              self.step_dir(step),
              e,
            )

    if block:
      seal()
    else:
      self._sealer = threading.Thread(target=seal, name="checkpoint-manifest", daemon=True)
      self._sealer.start()

  def steps(self) -> list[int]:
    """Steps of the complete checkpoints, oldest first."""
    self.manager.reload()
    return sorted(self.manager.all_steps())

  def should_save(self, step: int) -> bool:
    """Whether `step` is a multiple of the period."""
    return step % self.period == 0

  def save(self, step: int, state: Any, dataset_state: Mapping[str, Any] | None = None) -> bool:
    """Starts saving `step` (unless it exists); returns whether a save started.

    Every call saves: the caller decides when (`should_save`, the last step, preemption).
    """
    self.manager.wait_until_finished()  # orbax would wait here too; then seal the previous
    self._seal(block=False)
    if step in self.manager.all_steps():
      return False
    items = {
      STATE: ocp.args.StandardSave(state),
      DATASET: ocp.args.JsonSave(dict(dataset_state or {})),
    }
    logging.info("Saving checkpoint %s (in the background).", self.step_dir(step))
    started = self.manager.save(step, args=ocp.args.Composite(**items), force=True)
    if started:
      self._unsealed.append(step)
    return started

  def wait(self) -> None:
    """Blocks until the background save (if any) is committed and its manifest written."""
    self.manager.wait_until_finished()
    self._seal(block=True)

  def close(self) -> None:
    self.wait()
    self.manager.close()

  def _discard(self, step: int, reason: str, failures: list) -> None:
    where = self.step_dir(step)
    target = move_aside(where)
    failures.append((str(where), reason))
    logging.warning(
      "Checkpoint %s is unreadable or corrupt (%s); %s; falling back to an older one.",
      where,
      reason,
      f"moved aside to {target.name}" if target else "left in place",
    )
    self.manager.reload()

  def restore_latest(self, target: Any) -> tuple[Any, dict | None, int] | None:
    """(state, dataset_state, step) of the newest good checkpoint, or None if none exist.

    A checkpoint that fails verification or reading is moved aside (`move_aside`) with a
    warning naming it, and the next older one is tried; a checkpoint of another model size
    is a CheckpointError (older ones would not fit either).
    """
    failures = []
    for step in reversed(self.steps()):
      where = str(self.step_dir(step))
      try:
        if not verify(where):
          logging.warning(
            "Checkpoint %s has no manifest (committed just before a crash, or "
            "written by an older flan): reading it unverified.",
            where,
          )
      except CorruptCheckpointError as e:
        self._discard(step, str(e), failures)
        continue
      try:
        saved = saved_params(self.manager.item_metadata(step)[STATE])
      except Exception as e:
        self._discard(step, f"{type(e).__name__}: {_first_line(e)}", failures)
        continue
      check_params_match(saved, target.params, where)
      logging.info("Restoring checkpoint %s.", where)
      try:
        restored = self.manager.restore(
          step,
          args=ocp.args.Composite(
            **{STATE: ocp.args.StandardRestore(target), DATASET: ocp.args.JsonRestore()}
          ),
        )
      except Exception as e:
        self._discard(step, f"{type(e).__name__}: {_first_line(e)}", failures)
        continue
      if failures:
        logging.warning(
          "Resumed from %s after moving aside %s; that step will be saved anew "
          "when training reaches it.",
          where,
          ", ".join(w for w, _ in failures),
        )
      return restored[STATE], restored[DATASET] or None, step
    if failures:
      raise CheckpointError(
        "Every checkpoint in MODEL_DIR is unreadable or corrupt and was moved aside (*"
        f"{CORRUPT_MARK}*): "
        + "; ".join(f"{w} ({r})" for w, r in failures)
        + ". Rerun to start over (from INITIAL_CHECKPOINT_PATH or scratch), or use another "
        "MODEL_DIR."
      )
    return None


def _first_line(e: BaseException) -> str:
  text = str(e).strip()
  return text.splitlines()[0][:300] if text else "no message"


# ------------------------------------------------------------------ the one restore API
#
# Every reader of saved weights goes through `locate` (what kind of directory a path is) and
# then `restore_params` (parameters onto a mesh: evaluation, conversion, the end-of-training
# baseline) or `restore_or_initialize` (the full train state: training). A new checkpoint
# format is one more kind in `locate` and one more branch in `_read_params`. Trainer
# checkpoints are verified against their manifests when read, and a MODEL_DIR whose newest
# checkpoint is unreadable or corrupt gives way to its previous good one (`read_good`).

HF, TRAINER, PARAMS, T5X = "hf", "trainer", "params", "t5x"
PARAMS_CONFIG_FILE = "t5_config.json"  # beside a params-only checkpoint (`flan.convert`)


def is_hf_directory(path: str | epath.PathLike) -> bool:
  """A Hugging Face model directory: config.json plus weights."""
  p = paths.path(path)
  return (p / "config.json").is_file() and (
    any(p.glob("*.safetensors")) or (p / "pytorch_model.bin").is_file()
  )


@dataclasses.dataclass(frozen=True)
class SavedWeights:
  """Where saved weights live, by kind.

  Attributes:
    kind: HF (a Hugging Face T5 directory), TRAINER (a `checkpoint_<step>` directory written
      by training: params, optimizer state, step), PARAMS (parameters only, with
      t5_config.json: `python -m flan.convert hf_to_flan`'s output) or T5X (a t5x
      `checkpoint_<step>` directory: msgpack `checkpoint` plus TensorStore arrays).
    path: the directory that holds them (for a MODEL_DIR: its newest checkpoint_<step>).
    step: the trainer (or t5x) checkpoint's step, else None.
    model_dir: the MODEL_DIR of a trainer (or t5x) checkpoint, else None.
    fallbacks: TRAINER located through a MODEL_DIR: its older checkpoint_<step> directories,
      newest first, read in turn when `path` is unreadable or corrupt (`read_good`).
  """

  kind: str
  path: epath.Path
  step: int | None = None
  model_dir: epath.Path | None = None
  fallbacks: tuple[epath.Path, ...] = ()

  @property
  def item(self) -> epath.Path:
    """The orbax item directory (TRAINER and PARAMS)."""
    return self.path / STATE if self.kind == TRAINER else self.path

  def info(self) -> dict[str, Any]:
    """{"path", "step"}: what a report records about the weights it scored."""
    return {"path": str(self.path), "step": self.step}

  def fingerprint(self) -> dict[str, Any]:
    """What identifies these weights, taken without reading them (a cache key part):
    {"kind", "path", "step", "content"}. `content` hashes the checkpoint's manifest when it
    has one (a trainer checkpoint's: every file's SHA-256, so it changes with any byte),
    else every file's relative path, size and modification time."""
    manifest = self.path / MANIFEST_NAME
    if manifest.is_file():
      content = "manifest:" + hashlib.sha256(manifest.read_bytes()).hexdigest()
    else:
      digest = hashlib.sha256()
      for p in _files(self.path):
        stat = p.stat()
        mtime = getattr(stat, "mtime", getattr(stat, "st_mtime", None))
        digest.update(f"{p.relative_to(self.path)}\0{_size(p)}\0{mtime}\n".encode())
      content = "files:" + digest.hexdigest()
    return {"kind": self.kind, "path": str(self.path), "step": self.step, "content": content}


def _step_of(step_dir: epath.Path) -> int:
  return int(step_dir.name.rsplit("_", 1)[1])


def step_dirs(
  path: str | epath.PathLike, flag: str = "INITIAL_CHECKPOINT_PATH"
) -> list[epath.Path]:
  """The `checkpoint_<step>` directories `path` names, newest first: itself, or a MODEL_DIR's.

  `flag` names the setting that gave `path`, for the error message. Moved-aside
  (`.corrupt-`) and temporary directories are not checkpoints.
  """
  path = paths.path(path)
  if (path / STATE).is_dir():
    return [path]
  steps = sorted(
    (_step_of(d), d)
    for d in path.glob(f"{STEP_PREFIX}_*")
    if d.name.rsplit("_", 1)[1].isdigit() and (d / STATE).is_dir()
  )
  if not steps:
    raise CheckpointError(
      f"{flag}={str(path)!r} holds no checkpoint: expected a "
      f"{STEP_PREFIX}_<step> directory written by flan.train or t5x, a MODEL_DIR "
      "containing one, the output of flan.convert hf_to_flan, or a Hugging "
      "Face T5 directory (config.json + weights)."
    )
  return [d for _, d in reversed(steps)]


def _read_first_good(
  candidates: Sequence[epath.Path], read: Callable[[epath.Path], Any], what: str
) -> tuple[Any, epath.Path]:
  """(read(step_dir), step_dir) for the first of `candidates` that verifies and reads."""
  failures = []
  for step_dir in candidates:
    try:
      if not verify(step_dir):
        logging.warning("Checkpoint %s has no manifest: reading it unverified.", step_dir)
      value = read(step_dir)
    except CorruptCheckpointError as e:
      failures.append(f"{step_dir} ({e})")
    except CheckpointError:
      raise
    except Exception as e:  # orbax raises many types for damaged files
      failures.append(f"{step_dir} ({type(e).__name__}: {_first_line(e)})")
    else:
      if failures:
        logging.warning(
          "Using %s: skipped the unreadable or corrupt %s.", step_dir, "; ".join(failures)
        )
      return value, step_dir
    logging.warning("Checkpoint %s is unreadable or corrupt.", failures[-1])
  raise CheckpointError(
    f"{what}: no readable checkpoint: "
    + "; ".join(failures)
    + ". Point it at an older checkpoint_<step> directory, or retrain."
  )


def read_good(
  path: str | epath.PathLike,
  read: Callable[[epath.Path], Any],
  flag: str = "INITIAL_CHECKPOINT_PATH",
) -> tuple[Any, epath.Path]:
  """(read(step_dir), step_dir) for the newest checkpoint of `path` that verifies and reads.

  For readers of a directory they do not own (evaluation, an initial checkpoint): a bad
  checkpoint is skipped with a warning, not moved. `path` naming one checkpoint_<step>
  directory that is bad is a CheckpointError; so is a MODEL_DIR of only bad ones. A
  CheckpointError raised by `read` (another model size) is not a fallback case: it is raised.
  """
  return _read_first_good(step_dirs(path, flag), read, f"{flag}={str(path)!r}")


def resolve_step_dir(
  path: str | epath.PathLike, flag: str = "INITIAL_CHECKPOINT_PATH"
) -> epath.Path:
  """The newest `checkpoint_<step>` directory of `path` that passes `verify`."""
  return read_good(path, lambda d: None, flag)[1]


def locate(path: str | epath.PathLike, setting: str) -> SavedWeights:
  """What kind of weights `path` holds, and where exactly.

  Only looks (nothing is hashed or read): a trainer checkpoint is verified when
  `restore_params` / `restore_or_initialize` read it, falling back to `fallbacks`.

  Args:
    path: a Hugging Face T5 directory, a params-only checkpoint (hf_to_flan), a
      `checkpoint_<step>` directory, a MODEL_DIR (its newest checkpoint), or the same two
      written by t5x (a step directory holding the msgpack `checkpoint` file).
    setting: the option that named `path` (e.g. "CHECKPOINT_PATH"), for error messages.

  Raises:
    CheckpointError: `path` does not exist or holds none of these.
  """
  src = paths.path(path)
  if not src.exists():
    raise CheckpointError(
      f"{setting}={str(path)!r} does not exist; set it to a "
      f"{STEP_PREFIX}_<step> directory (flan's or t5x's), a MODEL_DIR or a Hugging Face T5 "
      "directory."
    )
  if is_hf_directory(src):
    return SavedWeights(HF, src)
  if (src / PARAMS_CONFIG_FILE).is_file():
    return SavedWeights(PARAMS, src)
  if not (src / STATE).is_dir() and not any(src.glob(f"{STEP_PREFIX}_*/{STATE}")):
    from flan.model import t5x

    t5x_dir = t5x.find_step_dir(src)
    if t5x_dir is not None:
      step = t5x.step_of(t5x_dir)
      model_dir = t5x_dir.parent if step is not None else None
      return SavedWeights(T5X, t5x_dir, step=step, model_dir=model_dir)
  newest, *older = step_dirs(src, setting)
  return SavedWeights(
    TRAINER, newest, step=_step_of(newest), model_dir=newest.parent, fallbacks=tuple(older)
  )


def read_trainer(
  source: SavedWeights, read: Callable[[epath.Path], Any], setting: str
) -> tuple[Any, SavedWeights]:
  """(read(step_dir), the SavedWeights read) for the newest good checkpoint of a TRAINER source.

  `read` gets a `checkpoint_<step>` directory; a corrupt or unreadable one (manifest
  mismatch, orbax failure) gives way to the next of `source.fallbacks`, with a warning.
  """
  value, step_dir = _read_first_good(
    [source.path, *source.fallbacks], read, f"{setting}={str(source.model_dir or source.path)!r}"
  )
  return value, dataclasses.replace(
    source, path=step_dir, step=_step_of(step_dir), model_dir=step_dir.parent, fallbacks=()
  )


def _hf_params(source: SavedWeights, model_config: Any, expected_params: Any) -> Any:
  """A Hugging Face directory's weights laid out for `model_config`, checked against the model."""
  from flan.model import hf  # the HF importer pulls in safetensors only when needed

  try:
    params = hf.load_params(str(source.path), model_config)
  except ValueError as e:  # another size: the same error type as for our checkpoints
    raise CheckpointError(str(e)) from None
  check_params_match(params, expected_params, str(source.path))
  return params


def _t5x_params(source: SavedWeights, model_config: Any, expected_params: Any) -> Any:
  """A t5x checkpoint's parameters laid out for `model_config`, checked against the model."""
  from flan.model import t5x

  try:
    params = t5x.load_params(source.path, model_config)
  except ValueError as e:
    raise CheckpointError(str(e)) from None
  check_params_match(params, expected_params, str(source.path))
  return params


def _read_params(
  source: SavedWeights, abstract_params: Any, model_config: Any, setting: str
) -> tuple[Any, SavedWeights]:
  """(parameters of `source` restored into `abstract_params`' shardings, the weights read)."""
  if source.kind in (HF, T5X):
    if model_config is None:
      raise CheckpointError(
        f"{setting}={str(source.path)!r} holds {source.kind} weights: pass the model's "
        "config to lay them out."
      )
    read = _hf_params if source.kind == HF else _t5x_params
    params = read(source, model_config, abstract_params)
    return jax.tree.map(lambda x, a: jax.device_put(x, a.sharding), params, abstract_params), source
  checkpointer = ocp.PyTreeCheckpointer()
  target = {"params": abstract_params}

  def read_item(item: epath.Path, where: epath.Path) -> Any:
    check_params_match(saved_params(checkpointer.metadata(item)), abstract_params, str(where))
    return checkpointer.restore(
      item,
      args=ocp.args.PyTreeRestore(
        item=target,
        restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True,
      ),
    )["params"]

  if source.kind == PARAMS:
    return read_item(source.item, source.path), source
  logging.info("Reading the parameters of %s.", source.path)
  return read_trainer(source, lambda d: read_item(d / STATE, d), setting)


def param_shapes(model: Any, mesh: jax.sharding.Mesh) -> tuple[Any, Any]:
  """(parameter ShapeDtypeStructs, their NamedShardings on `mesh`), without allocating."""
  shapes = jax.eval_shape(
    lambda: model.init(
      jax.random.PRNGKey(0), {"encoder_input_tokens": (1, 2), "decoder_input_tokens": (1, 2)}
    )
  )
  shardings = partitioning.logical_to_sharding(model.param_logical_specs(), mesh, shapes=shapes)
  return shapes, shardings


def restore_params(
  model: Any,
  mesh: jax.sharding.Mesh,
  path: str | epath.PathLike,
  *,
  setting: str = "CHECKPOINT_PATH",
) -> tuple[Any, dict[str, Any]]:
  """The parameters saved at `path` (any kind `locate` knows), sharded as training shards them.

  Only parameters are read (no optimizer state), straight into their shardings on `mesh`. A
  trainer checkpoint is verified against its manifest first; given a MODEL_DIR, a corrupt or
  unreadable newest checkpoint gives way to the previous good one (with a warning).

  Args:
    model: the `EncoderDecoderModel` the weights belong to (its config lays out HF weights).
    mesh: the device mesh.
    path: see `locate`.
    setting: the option that named `path`, for error messages.

  Returns:
    (params, {"path": the directory read, "step": its step or None}).
  """
  source = locate(path, setting)
  shapes, shardings = param_shapes(model, mesh)
  params, read = _read_params(source, abstract_state(shapes, shardings), model.config, setting)
  return params, read.info()


def restore_or_initialize(
  checkpoints: Checkpoints,
  target: Any,
  *,
  init_state: Callable[[Any], Any],
  initial_checkpoint_path: str | None = None,
  model_config: Any = None,
) -> tuple[Any, dict | None, str]:
  """The state to train from, in t5x's order.

  Args:
    checkpoints: the MODEL_DIR manager.
    target: abstract train state (ShapeDtypeStructs with the current shardings).
    init_state: params-or-None -> a fresh sharded train state (step 0, fresh moments).
    initial_checkpoint_path: any kind `locate` knows.
    model_config: the model's `T5Config`, for the layout of imported HF weights.

  Returns:
    (state, dataset_state or None, a description of where the state came from).
  """
  latest = checkpoints.restore_latest(target)
  if latest is not None:
    state, dataset_state, step = latest
    return state, dataset_state, f"resumed from {checkpoints.model_dir}/{STEP_PREFIX}_{step}"
  if not initial_checkpoint_path:
    logging.info("Initialising the train state from scratch.")
    return init_state(None), None, "initialised from scratch"
  source = locate(initial_checkpoint_path, "INITIAL_CHECKPOINT_PATH")
  if source.kind == TRAINER:  # the whole state: step, params and optimizer moments
    checkpointer = ocp.StandardCheckpointer()

    def read(step_dir: epath.Path) -> Any:
      logging.info("Restoring the initial checkpoint %s.", step_dir)
      item = step_dir / STATE
      check_params_match(saved_params(checkpointer.metadata(item)), target.params, str(step_dir))
      return checkpointer.restore(item, target)

    state, read_from = read_trainer(source, read, "INITIAL_CHECKPOINT_PATH")
    return state, None, f"initialised from {read_from.path}"
  # Fresh Adafactor moments at step 0: beta2 = 0 makes the first update re-estimate them from
  # one gradient (t5x would import the TF slots and the pretraining step).
  what = {HF: "Hugging Face weights", T5X: "t5x weights"}.get(source.kind, "the parameters")
  logging.info("Loading %s from %s.", what, source.path)
  params, _ = _read_params(source, target.params, model_config, "INITIAL_CHECKPOINT_PATH")
  return init_state(params), None, f"initialised from {what} in {source.path}"
