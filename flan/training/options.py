"""The options of a training run, grouped, typed and checked when they are built.

Each field is named for its gin macro in lower case (`train_steps` <- `TRAIN_STEPS`), which
`configs/runs/finetune.gin` binds; a value of the wrong type or out of range raises one
`flan.errors.UserError` that names the macro, before any data is read or any model built.
Paths have `~` and `$VARS` expanded.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

from flan.errors import UserError
from flan.training.train_step import NAN_POLICIES


def _fail(field: str, wanted: str, value: Any) -> UserError:
  macro = field.upper()
  return UserError(
    f"{macro} must be {wanted}, got {value!r} ({type(value).__name__}); set "
    f"--gin.{macro}=... (or its line in the run gin)."
  )


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def check_positive_int(field: str, value: Any) -> int:
  if not _is_int(value) or value <= 0:
    raise _fail(field, "a positive integer", value)
  return value


def _check_optional(field: str, value: Any, check) -> Any:
  return None if value is None else check(field, value)


def _check_non_negative_int(field: str, value: Any) -> int:
  if not _is_int(value) or value < 0:
    raise _fail(field, "an integer >= 0", value)
  return value


def _check_bool(field: str, value: Any) -> bool:
  if not isinstance(value, bool):
    raise _fail(field, "True or False", value)
  return value


def _check_number(field: str, value: Any, *, minimum: float = float("-inf")) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
    wanted = "a number" if minimum == float("-inf") else f"a number >= {minimum:g}"
    raise _fail(field, wanted, value)
  return float(value)


def _check_str(field: str, value: Any) -> str:
  if not isinstance(value, str) or not value:
    raise _fail(field, "a non-empty string", value)
  return value


def expand_path(field: str, value: Any) -> str:
  """`value` with `~` and `$VARS` expanded; a non-empty string is required."""
  return os.path.expandvars(os.path.expanduser(_check_str(field, value)))


def _optional_path(field: str, value: Any) -> str | None:
  return None if value is None else expand_path(field, value)


def _check_lengths(field: str, value: Any) -> dict[str, int]:
  if (
    not isinstance(value, Mapping)
    or set(value) != {"inputs", "targets"}
    or not all(_is_int(v) and v > 0 for v in value.values())
  ):
    raise _fail(field, 'a dict {"inputs": <int>, "targets": <int>} of positive lengths', value)
  return dict(value)


def _check_mesh(field: str, value: Any) -> dict[str, int] | None:
  if value is None:
    return None
  if not isinstance(value, Mapping) or not all(
    isinstance(k, str) and _is_int(v) and (v > 0 or v == -1) for k, v in value.items()
  ):
    raise _fail(
      field,
      'a dict of axis name -> size (one size may be -1), e.g. {"data": -1, "model": 1}',
      value,
    )
  return dict(value)


def _set(obj: Any, **values: Any) -> None:
  for name, value in values.items():  # frozen dataclasses: normalised values go in this way
    object.__setattr__(obj, name, value)


@dataclasses.dataclass(frozen=True)
class DataOptions:
  """What the run trains on (flan.data.tasks.register's knobs included).

  Attributes:
    mixture_or_task_name: a registered seqio task or mixture: FLAN's (e.g.
      "flan_holdout_nli_train"), one registered by `mixture_or_task_module`, or a mixture of both.
    mixture_or_task_module: module(s) imported after FLAN's tasks are registered, so that
      they can register their own seqio tasks and mixtures (t5x's MIXTURE_OR_TASK_MODULE).
    task_feature_lengths: {"inputs": n, "targets": m} tokens per packed row.
    batch_size: rows per step over all hosts; a multiple of the mesh's "data" axis.
    data_dir: TFDS data_dir (None: TFDS's default).
    cache_dir: the token cache (`flan.data.token_cache`, built ahead by
      `scripts/prepare_data.py --cache`); None: every start reads and tokenizes the data.
    vocabulary: a SentencePiece model path, or None / "byte" for the byte vocabulary.
    pack: pack several examples per row (seqio's EncDecFeatureConverter with pack=True).
    use_mock_data: synthetic TFDS examples (tfds.testing.mock_data) while data_dir is None.
    mock_num_examples: examples per mocked split.
    num_templates, template_mode, mixing_cap, temperature, train_clusters,
      missing_datasets: the task registration's ablation knobs (see `flan.data.tasks.register`).
    flan_templates_dir: the exact-replication mode's FLAN templates (None: ours).
  """

  mixture_or_task_name: str
  task_feature_lengths: Mapping[str, int]
  mixture_or_task_module: str | Sequence[str] | None = None
  batch_size: int = 128
  data_dir: str | None = None
  cache_dir: str | None = None
  vocabulary: str | None = None
  pack: bool = True
  use_mock_data: bool = False
  mock_num_examples: int = 64
  num_templates: int = 10
  template_mode: str = "instructions"
  mixing_cap: int | None = 3000
  temperature: float = 1.0
  train_clusters: Sequence[str] | None = None
  missing_datasets: str = "error"
  flan_templates_dir: str | None = None

  def __post_init__(self):
    _check_str("mixture_or_task_name", self.mixture_or_task_name)
    modules = self.mixture_or_task_module
    if modules is not None:
      modules = (modules,) if isinstance(modules, str) else modules
      if not isinstance(modules, (list, tuple)):
        raise _fail("mixture_or_task_module", "a module name or a list of them", modules)
      modules = tuple(_check_str("mixture_or_task_module", m) for m in modules)
      _set(self, mixture_or_task_module=modules)
    check_positive_int("batch_size", self.batch_size)
    _check_bool("pack", self.pack)
    _check_bool("use_mock_data", self.use_mock_data)
    check_positive_int("mock_num_examples", self.mock_num_examples)
    check_positive_int("num_templates", self.num_templates)
    _check_optional("mixing_cap", self.mixing_cap, check_positive_int)
    if _check_number("temperature", self.temperature) <= 0:
      raise _fail("temperature", "a positive number", self.temperature)
    vocabulary = self.vocabulary
    if vocabulary is not None and vocabulary != "byte":
      vocabulary = expand_path("vocabulary", vocabulary)
    _set(
      self,
      task_feature_lengths=_check_lengths("task_feature_lengths", self.task_feature_lengths),
      data_dir=_optional_path("data_dir", self.data_dir),
      cache_dir=_optional_path("cache_dir", self.cache_dir),
      vocabulary=vocabulary,
      flan_templates_dir=_optional_path("flan_templates_dir", self.flan_templates_dir),
      train_clusters=None if self.train_clusters is None else tuple(self.train_clusters),
    )

  def registration(self) -> dict[str, Any]:
    """The keyword arguments of `flan.data.tasks.register` for this run."""
    return dict(
      data_dir=self.data_dir,
      num_templates=self.num_templates,
      template_mode=self.template_mode,
      mixing_cap=self.mixing_cap,
      temperature=self.temperature,
      train_clusters=self.train_clusters,
      missing_datasets=self.missing_datasets,
      flan_templates_dir=self.flan_templates_dir,
    )


@dataclasses.dataclass(frozen=True)
class RunOptions:
  """How long, where, on which devices, and what to do at the loop's edges.

  Attributes:
    train_steps: absolute: a resume (or an imported step) counts toward it.
    model_dir: checkpoints, config.gin, summaries, eval results.
    random_seed: data order, templates, init and dropout.
    mesh: {"data": d, "model": m}, one size may be -1 (the remaining devices); None: all data.
    fsdp: also shard parameters' embed axis over "data".
    num_microbatches: gradient accumulation: the batch in this many slices.
    nan_policy: "stop" raises at the first non-finite step; "skip" skips that update.
    max_consecutive_skips: with "skip", more skipped updates in a row than this stop the run
      (the model has diverged).
    log_every: steps between progress reports.
    preemption_grace_seconds: on SIGTERM, save and exit 0; exit 1 if the save outlives this.
    coordinator_address, num_processes, process_id: multi-process runs (jax.distributed).
  """

  train_steps: int
  model_dir: str
  random_seed: int = 0
  mesh: Mapping[str, int] | None = None
  fsdp: bool = False
  num_microbatches: int = 1
  nan_policy: str = "stop"
  max_consecutive_skips: int = 100
  log_every: int = 100
  preemption_grace_seconds: float = 120.0
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None

  def __post_init__(self):
    check_positive_int("train_steps", self.train_steps)
    if not _is_int(self.random_seed):
      raise _fail("random_seed", "an integer", self.random_seed)
    _check_bool("fsdp", self.fsdp)
    check_positive_int("num_microbatches", self.num_microbatches)
    if self.nan_policy not in NAN_POLICIES:
      raise _fail("nan_policy", f"one of {NAN_POLICIES}", self.nan_policy)
    check_positive_int("max_consecutive_skips", self.max_consecutive_skips)
    check_positive_int("log_every", self.log_every)
    _check_optional("coordinator_address", self.coordinator_address, _check_str)
    _check_optional("num_processes", self.num_processes, check_positive_int)
    _check_optional("process_id", self.process_id, _check_non_negative_int)
    _set(
      self,
      model_dir=expand_path("model_dir", self.model_dir),
      mesh=_check_mesh("mesh", self.mesh),
      preemption_grace_seconds=_check_number(
        "preemption_grace_seconds", self.preemption_grace_seconds, minimum=0
      ),
    )


@dataclasses.dataclass(frozen=True)
class CheckpointOptions:
  """Saving and the starting point.

  Attributes:
    checkpoint_period: save every this many steps (and at the last step).
    keep_checkpoints: keep the newest this many (None: all).
    initial_checkpoint_path: when MODEL_DIR holds no checkpoint, start from this one (ours,
      a checkpoint_<step> directory or a MODEL_DIR, or a Hugging Face T5 directory).
  """

  checkpoint_period: int = 1000
  keep_checkpoints: int | None = None
  initial_checkpoint_path: str | None = None

  def __post_init__(self):
    check_positive_int("checkpoint_period", self.checkpoint_period)
    _check_optional("keep_checkpoints", self.keep_checkpoints, check_positive_int)
    _set(
      self,
      initial_checkpoint_path=_optional_path(
        "initial_checkpoint_path", self.initial_checkpoint_path
      ),
    )


@dataclasses.dataclass(frozen=True)
class HeldoutEvalOptions:
  """The held-out cluster's evaluation: in full at the end of training, and on a subset
  every `eval_period` steps.

  Attributes:
    heldout_cluster: the cluster to evaluate; None: derived from a flan_holdout_<c>_train
      mixture (no evaluation for other mixtures).
    run_heldout_eval: False skips the final one (e.g. when `flan.evaluate` runs it apart).
    eval_batch_size: rows per evaluation batch.
    eval_max_examples: the final evaluation's cap per split, for quick runs (None: all).
    eval_num_templates: the first this many templates (None: every one).
    eval_period: every this many steps, evaluate the cluster on a fixed subset (t5x's
      infer-eval) into MODEL_DIR/inference_eval; None or 0: never. Independent of
      run_heldout_eval.
    evaluator_num_examples: that subset: the first N examples of each split (None: all).
  """

  heldout_cluster: str | None = None
  run_heldout_eval: bool = True
  eval_batch_size: int = 32
  eval_max_examples: int | None = None
  eval_num_templates: int | None = None
  eval_period: int | None = None
  evaluator_num_examples: int | None = None

  def __post_init__(self):
    _check_optional("heldout_cluster", self.heldout_cluster, _check_str)
    _check_bool("run_heldout_eval", self.run_heldout_eval)
    check_positive_int("eval_batch_size", self.eval_batch_size)
    _check_optional("eval_max_examples", self.eval_max_examples, check_positive_int)
    _check_optional("eval_num_templates", self.eval_num_templates, check_positive_int)
    _check_optional("eval_period", self.eval_period, _check_non_negative_int)
    _check_optional("evaluator_num_examples", self.evaluator_num_examples, check_positive_int)
