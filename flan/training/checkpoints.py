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
INITIAL_CHECKPOINT_PATH (one of ours, or a Hugging Face T5 directory via `flan.model.hf`), else
from scratch. Arrays are restored straight into the CURRENT shardings, so a checkpoint
written on one mesh loads on any other.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import pathlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from flan.errors import UserError

STATE, DATASET = "state", "dataset"
STEP_PREFIX = "checkpoint"
MANIFEST_NAME = "flan_manifest.json"
CORRUPT_MARK = ".corrupt-"


class CheckpointError(UserError, RuntimeError):
  """No usable checkpoint, or one that does not fit the model being trained."""


class CorruptCheckpointError(CheckpointError):
  """A checkpoint's files do not match its manifest."""


def _file_digest(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 22), b""):
      digest.update(block)
  return digest.hexdigest()


def _files(step_dir: pathlib.Path) -> list[pathlib.Path]:
  return sorted(p for p in step_dir.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)


def write_manifest(step_dir: str | os.PathLike) -> None:
  """Records the size and SHA-256 of every file under `step_dir`, atomically, last."""
  from flan.training import run_record

  step_dir = pathlib.Path(step_dir)
  files = {
    str(p.relative_to(step_dir)): {"size": p.stat().st_size, "sha256": _file_digest(p)}
    for p in _files(step_dir)
  }
  run_record.write_atomic(
    step_dir / MANIFEST_NAME, json.dumps({"algorithm": "sha256", "files": files}, indent=1) + "\n"
  )


def verify(step_dir: str | os.PathLike) -> bool:
  """Checks `step_dir` against its manifest; False if it has none (unverifiable).

  Raises:
    CorruptCheckpointError: a file is missing, or its size or checksum differs.
  """
  step_dir = pathlib.Path(step_dir)
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
    if path.stat().st_size != expected["size"]:
      raise CorruptCheckpointError(
        f"{path} has {path.stat().st_size} bytes, the manifest {expected['size']}"
      )
    if _file_digest(path) != expected["sha256"]:
      raise CorruptCheckpointError(f"{path} does not match its checksum (damaged on disk)")
  return True


def move_aside(step_dir: str | os.PathLike) -> pathlib.Path | None:
  """Renames a bad `checkpoint_<step>` to `checkpoint_<step>.corrupt-<UTC time>` (host 0)."""
  step_dir = pathlib.Path(step_dir)
  if jax.process_index() != 0:
    return None
  stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
  target = step_dir.with_name(f"{step_dir.name}{CORRUPT_MARK}{stamp}")
  try:
    os.rename(step_dir, target)
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
    self.model_dir = pathlib.Path(model_dir)
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
    self.manager = ocp.CheckpointManager(
      self.model_dir.absolute(), options=options, item_handlers=handlers
    )

  def step_dir(self, step: int) -> pathlib.Path:
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

  def save(
    self,
    step: int,
    state: Any,
    dataset_state: Mapping[str, Any] | None = None,
    *,
    force: bool = True,
  ) -> bool:
    """Starts saving `step` (unless it exists); returns whether a save started.

    Every call saves (the caller decides when, with `should_save`); `force` is accepted for
    orbax-style callers and changes nothing.
    """
    del force
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


def is_hf_directory(path: str | pathlib.Path) -> bool:
  """A Hugging Face model directory: config.json plus weights."""
  p = pathlib.Path(path)
  return (p / "config.json").is_file() and (
    any(p.glob("*.safetensors")) or (p / "pytorch_model.bin").is_file()
  )


def step_dirs(path: pathlib.Path, flag: str = "INITIAL_CHECKPOINT_PATH") -> list[pathlib.Path]:
  """The `checkpoint_<step>` directories `path` names, newest first: itself, or a MODEL_DIR's.

  `flag` names the setting that gave `path`, for the error message. Moved-aside
  (`.corrupt-`) and temporary directories are not checkpoints.
  """
  if (path / STATE).is_dir():
    return [path]
  steps = sorted(
    (int(d.name.rsplit("_", 1)[1]), d)
    for d in path.glob(f"{STEP_PREFIX}_*")
    if d.name.rsplit("_", 1)[1].isdigit() and (d / STATE).is_dir()
  )
  if not steps:
    raise CheckpointError(
      f"{flag}={str(path)!r} holds no checkpoint: expected a "
      f"{STEP_PREFIX}_<step> directory written by flan.train, a MODEL_DIR "
      "containing one, or a Hugging Face T5 directory (config.json + "
      "weights)."
    )
  return [d for _, d in reversed(steps)]


def read_good(
  path: pathlib.Path, read: Callable[[pathlib.Path], Any], flag: str = "INITIAL_CHECKPOINT_PATH"
) -> tuple[Any, pathlib.Path]:
  """(read(step_dir), step_dir) for the newest checkpoint of `path` that verifies and reads.

  For readers of a directory they do not own (evaluation, an initial checkpoint): a bad
  checkpoint is skipped with a warning, not moved. `path` naming one checkpoint_<step>
  directory that is bad is a CheckpointError; so is a MODEL_DIR of only bad ones. A
  CheckpointError raised by `read` (another model size) is not a fallback case: it is raised.
  """
  candidates = step_dirs(path, flag)
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
    except Exception as e:
      failures.append(f"{step_dir} ({type(e).__name__}: {_first_line(e)})")
    else:
      if failures:
        logging.warning(
          "Using %s: skipped the unreadable or corrupt %s.", step_dir, "; ".join(failures)
        )
      return value, step_dir
    logging.warning("Checkpoint %s is unreadable or corrupt.", failures[-1])
  raise CheckpointError(
    f"{flag}={str(path)!r}: no readable checkpoint: "
    + "; ".join(failures)
    + ". Point it at an older checkpoint_<step> directory, or retrain."
  )


def resolve_step_dir(path: pathlib.Path, flag: str = "INITIAL_CHECKPOINT_PATH") -> pathlib.Path:
  """The newest `checkpoint_<step>` directory of `path` that passes `verify`."""
  return read_good(path, lambda d: None, flag)[1]


def load_initial(path: str, target: Any) -> Any:
  """The full train state (step, params, moments) from one of our checkpoints."""
  checkpointer = ocp.StandardCheckpointer()

  def read(step_dir: pathlib.Path) -> Any:
    logging.info("Restoring the initial checkpoint %s.", step_dir)
    check_params_match(
      saved_params(checkpointer.metadata(step_dir / STATE)), target.params, str(step_dir)
    )
    return checkpointer.restore(step_dir / STATE, target)

  return read_good(pathlib.Path(path), read)[0]


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
    initial_checkpoint_path: ours (a checkpoint_<step> dir or a MODEL_DIR) or a HF dir.
    model_config: the model's `T5Config`, for the layout of imported HF weights.

  Returns:
    (state, dataset_state or None, a description of where the state came from).
  """
  latest = checkpoints.restore_latest(target)
  if latest is not None:
    state, dataset_state, step = latest
    return state, dataset_state, f"resumed from {checkpoints.model_dir}/{STEP_PREFIX}_{step}"
  if initial_checkpoint_path:
    path = pathlib.Path(initial_checkpoint_path)
    if not path.exists():
      raise CheckpointError(
        f"INITIAL_CHECKPOINT_PATH={initial_checkpoint_path!r} does not "
        "exist; fix the path or set it to None to start from scratch."
      )
    if is_hf_directory(path):
      from flan.model import hf  # the HF importer pulls in safetensors only when needed

      if model_config is None:
        raise CheckpointError(
          f"INITIAL_CHECKPOINT_PATH={str(path)!r} is a Hugging Face "
          "directory: pass the model's config to lay out its weights."
        )
      logging.info("Loading Hugging Face weights from %s.", path)
      try:
        params = hf.load_params(str(path), model_config)
      except ValueError as e:  # sizes differ: name them as a checkpoint error
        raise CheckpointError(str(e)) from None
      check_params_match(params, target.params, str(path))
      # Fresh Adafactor moments at step 0: beta2 = 0 makes the first update re-estimate
      # them from one gradient (t5x would import the TF slots and the pretraining step).
      return init_state(params), None, f"initialised from Hugging Face weights in {path}"
    state = load_initial(str(path), target)
    return state, None, f"initialised from {path}"
  logging.info("Initialising the train state from scratch.")
  return init_state(None), None, "initialised from scratch"
