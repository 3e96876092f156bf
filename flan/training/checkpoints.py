"""Orbax checkpoints of the train state and the input-pipeline position, in MODEL_DIR.

Layout (t5x's): MODEL_DIR/checkpoint_<step>/{state, dataset}. `state` is the sharded
`TrainState` (OCDBT/TensorStore via orbax's StandardCheckpointHandler); `dataset` is one
JSON of every process's `it.state()`, keyed `process_<i>-of-<n>` (each host reads its own
data shard, so each has its own position; `gather_dataset_states` collects them, host 0
writes them, `own_dataset_state` hands each host its own back), so a resume replays
exactly the batches that were not yet seen. Orbax writes each step into a temporary
directory and renames it when complete, so a crash mid-save never leaves a half-written
`checkpoint_<step>` (a leftover temporary directory is ignored and cleaned up).

Restore order (t5x's): the latest readable checkpoint in MODEL_DIR, else
INITIAL_CHECKPOINT_PATH, else from scratch. Arrays are restored straight into the CURRENT
shardings, so a checkpoint written on one mesh loads on any other.

This module is also the one restore API: `locate` tells the kinds of saved weights apart
(ours, params-only, Hugging Face, t5x), `restore_params` reads parameters onto a mesh for
evaluation and conversion, `restore_or_initialize` the train state for training.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from flan import paths
from flan.model import partitioning

STATE, DATASET = "state", "dataset"
STEP_PREFIX = "checkpoint"


class CheckpointError(RuntimeError):
  """No usable checkpoint, or one that does not fit the model being trained."""


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
    keep: keep the newest `keep` checkpoints (None: all).
    async_save: write in a background thread after the device-to-host copy.
  """

  def __init__(
    self, model_dir: str, *, period: int = 1000, keep: int | None = None, async_save: bool = True
  ):
    self.model_dir = paths.path(model_dir)
    self.period = max(1, int(period))
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
    if step in self.manager.all_steps():
      return False
    items = {
      STATE: ocp.args.StandardSave(state),
      DATASET: ocp.args.JsonSave(dict(dataset_state or {})),
    }
    return self.manager.save(step, args=ocp.args.Composite(**items), force=True)

  def wait(self) -> None:
    """Blocks until the background save (if any) is committed."""
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()

  def restore_latest(self, target: Any) -> tuple[Any, dict | None, int] | None:
    """(state, dataset_state, step) of the newest readable checkpoint, or None if none exist.

    A checkpoint that fails to read is skipped with a warning naming it; a checkpoint of
    another model size is a CheckpointError (older ones would not fit either).
    """
    steps = self.steps()
    failures = []
    for step in reversed(steps):
      where = str(self.model_dir / f"{STEP_PREFIX}_{step}")
      try:
        saved = saved_params(self.manager.item_metadata(step)[STATE])
      except Exception as e:
        failures.append((where, e))
        logging.warning(
          "Checkpoint %s is unreadable (%s: %s); falling back to an older one.",
          where,
          type(e).__name__,
          e,
        )
        continue
      check_params_match(saved, target.params, where)
      try:
        restored = self.manager.restore(
          step,
          args=ocp.args.Composite(
            **{STATE: ocp.args.StandardRestore(target), DATASET: ocp.args.JsonRestore()}
          ),
        )
      except Exception as e:
        failures.append((where, e))
        logging.warning(
          "Checkpoint %s is unreadable (%s: %s); falling back to an older one.",
          where,
          type(e).__name__,
          e,
        )
        continue
      if failures:
        logging.warning(
          "Resumed from %s after skipping unreadable %s.", where, ", ".join(w for w, _ in failures)
        )
      return restored[STATE], restored[DATASET] or None, step
    if failures:
      raise CheckpointError(
        "Every checkpoint in MODEL_DIR is unreadable: "
        + "; ".join(f"{w} ({type(e).__name__}: {e})" for w, e in failures)
        + ". Delete them (or use another MODEL_DIR) to start over."
      )
    return None


# ------------------------------------------------------------------ the one restore API
#
# Every reader of saved weights goes through `locate` (what kind of directory a path is) and
# then `restore_params` (parameters onto a mesh: evaluation, conversion, the end-of-training
# baseline) or `restore_or_initialize` (the full train state: training). A new checkpoint
# format is one more kind in `locate` and one more branch in `_read_params`.

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
  """

  kind: str
  path: epath.Path
  step: int | None = None
  model_dir: epath.Path | None = None

  @property
  def item(self) -> epath.Path:
    """The orbax item directory (TRAINER and PARAMS)."""
    return self.path / STATE if self.kind == TRAINER else self.path

  def info(self) -> dict[str, Any]:
    """{"path", "step"}: what a report records about the weights it scored."""
    return {"path": str(self.path), "step": self.step}


def resolve_step_dir(path: epath.Path, setting: str = "INITIAL_CHECKPOINT_PATH") -> epath.Path:
  """A `checkpoint_<step>` directory: `path` itself, or the newest one inside a MODEL_DIR.

  `setting` names the option that gave `path`, for the error message.
  """
  if (path / STATE).is_dir():
    return path
  steps = sorted(
    (int(d.name.rsplit("_", 1)[1]), d)
    for d in path.glob(f"{STEP_PREFIX}_*")
    if d.name.rsplit("_", 1)[1].isdigit() and (d / STATE).is_dir()
  )
  if not steps:
    raise CheckpointError(
      f"{setting}={str(path)!r} holds no checkpoint: expected a "
      f"{STEP_PREFIX}_<step> directory written by flan.train or t5x, a MODEL_DIR "
      "containing one, the output of flan.convert hf_to_flan, or a Hugging "
      "Face T5 directory (config.json + weights)."
    )
  return steps[-1][1]


def locate(path: str | epath.PathLike, setting: str) -> SavedWeights:
  """What kind of weights `path` holds, and where exactly.

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
  step_dir = resolve_step_dir(src, setting)
  return SavedWeights(
    TRAINER, step_dir, step=int(step_dir.name.rsplit("_", 1)[1]), model_dir=step_dir.parent
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


def _read_params(source: SavedWeights, abstract_params: Any, model_config: Any) -> Any:
  """The parameters of `source`, restored straight into `abstract_params`' shardings."""
  if source.kind in (HF, T5X):
    read = _hf_params if source.kind == HF else _t5x_params
    params = read(source, model_config, abstract_params)
    return jax.tree.map(lambda x, a: jax.device_put(x, a.sharding), params, abstract_params)
  checkpointer = ocp.PyTreeCheckpointer()
  check_params_match(
    saved_params(checkpointer.metadata(source.item)), abstract_params, str(source.path)
  )
  target = {"params": abstract_params}
  restored = checkpointer.restore(
    source.item,
    args=ocp.args.PyTreeRestore(
      item=target,
      restore_args=ocp.checkpoint_utils.construct_restore_args(target),
      partial_restore=True,
    ),
  )
  return restored["params"]


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

  Only parameters are read (no optimizer state), straight into their shardings on `mesh`.

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
  return _read_params(source, abstract_state(shapes, shardings), model.config), source.info()


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
    return init_state(None), None, "initialised from scratch"
  source = locate(initial_checkpoint_path, "INITIAL_CHECKPOINT_PATH")
  if source.kind == TRAINER:  # the whole state: step, params and optimizer moments
    checkpointer = ocp.StandardCheckpointer()
    check_params_match(
      saved_params(checkpointer.metadata(source.item)), target.params, str(source.path)
    )
    return checkpointer.restore(source.item, target), None, f"initialised from {source.path}"
  # Fresh Adafactor moments at step 0: beta2 = 0 makes the first update re-estimate them from
  # one gradient (t5x would import the TF slots and the pretraining step).
  params = _read_params(source, target.params, model_config)
  what = {HF: "Hugging Face weights", T5X: "t5x weights"}.get(source.kind, "the parameters")
  return init_state(params), None, f"initialised from {what} in {source.path}"
