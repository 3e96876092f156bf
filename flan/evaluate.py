r"""Evaluate a checkpoint on a held-out cluster: `python -m flan.evaluate --gin_file=... --gin.X=V`.

  python -m flan.evaluate --gin_file=configs/models/small.gin --gin_file=configs/runs/eval.gin \
    --gin.CHECKPOINT_PATH=\"/tmp/flan_nli/checkpoint_30000\" --gin.HELDOUT_CLUSTER=\"nli\" \
    --gin.BASELINE_CHECKPOINT_PATH=\"/ckpts/t5_1_1_small\" --gin.NUM_SHOTS=0

Every dataset of the cluster is evaluated with every template (see `flan.evaluation.holdout`);
results.json, results.md, scores.png and predictions/ go to EVAL_OUTPUT_DIR (default:
MODEL_DIR/eval, where MODEL_DIR defaults to the checkpoint's directory). Only parameters
are read from a checkpoint (no optimizer state), straight into their shardings on MESH.
"""

from __future__ import annotations

if __name__ == "__main__":
  # Run the importable module, so that gin knows one `flan.evaluate.evaluate`, not a second
  # `__main__.evaluate` that would make the selector `evaluate` ambiguous.
  import sys

  from flan import evaluate as _module

  sys.exit(_module.main())

import logging
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import gin
import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from flan.errors import UserError
from flan.model import partitioning
from flan.training import checkpoints as checkpoints_lib
from flan.training import run_record


def init_shapes(
  model: Any, mesh: jax.sharding.Mesh, feature_lengths: Mapping[str, int]
) -> tuple[Any, Any]:
  """(parameter ShapeDtypeStructs, their NamedShardings on `mesh`), without allocating."""
  b = mesh.shape["data"]
  li, lt = feature_lengths["inputs"], feature_lengths["targets"]
  batch_shapes = {
    "encoder_input_tokens": (b, li),
    "decoder_input_tokens": (b, lt),
    "decoder_target_tokens": (b, lt),
    "decoder_loss_weights": (b, lt),
  }
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), batch_shapes))
  shardings = partitioning.logical_to_sharding(model.param_logical_specs(), mesh, shapes=shapes)
  return shapes, shardings


def restore_params(
  model: Any, mesh: jax.sharding.Mesh, path: str, feature_lengths: Mapping[str, int]
) -> tuple[Any, dict[str, Any]]:
  """The parameters of a checkpoint, sharded as training shards them.

  Args:
    model: the `EncoderDecoderModel` the checkpoint belongs to.
    mesh: the device mesh.
    path: a `checkpoint_<step>` directory, a MODEL_DIR (its newest checkpoint), or a
      Hugging Face T5 directory.
    feature_lengths: only to trace `model.init` for the parameter shapes.

  Returns:
    (params, {"path": the directory read, "step": its step or None}).
  """
  src = pathlib.Path(path)
  if not src.exists():
    raise checkpoints_lib.CheckpointError(
      f"Checkpoint {path!r} does not exist; set CHECKPOINT_PATH (or "
      "BASELINE_CHECKPOINT_PATH) to a checkpoint_<step> directory or a MODEL_DIR."
    )
  shapes, shardings = init_shapes(model, mesh, feature_lengths)
  if checkpoints_lib.is_hf_directory(src):
    from flan.model import hf  # safetensors only when needed

    try:
      params = hf.load_params(str(src), model.config)
    except ValueError as e:  # another size: the same error type as for our checkpoints
      raise checkpoints_lib.CheckpointError(str(e)) from None
    checkpoints_lib.check_params_match(params, shapes, str(src))
    return jax.device_put(params, shardings), {"path": str(src), "step": None}
  import orbax.checkpoint as ocp  # deferred: heavy import.

  target = {
    "params": checkpoints_lib.abstract_state(shapes, shardings),
    "step": jax.ShapeDtypeStruct((), np.int32, sharding=NamedSharding(mesh, P())),
  }

  def read(step_dir: pathlib.Path) -> Any:
    state_dir = step_dir / checkpoints_lib.STATE
    saved = checkpoints_lib.saved_params(ocp.PyTreeCheckpointer().metadata(state_dir))
    checkpoints_lib.check_params_match(saved, shapes, str(step_dir))
    return ocp.PyTreeCheckpointer().restore(
      state_dir,
      args=ocp.args.PyTreeRestore(
        item=target,
        restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True,
      ),
    )

  # Training's fallback: a corrupt newest checkpoint gives way to the previous good one.
  restored, step_dir = checkpoints_lib.read_good(src, read, "CHECKPOINT_PATH")
  return restored["params"], {"path": str(step_dir), "step": int(restored["step"])}


def default_output_dir(
  checkpoint_path: str, model_dir: str | None, eval_output_dir: str | None
) -> str:
  """EVAL_OUTPUT_DIR, else MODEL_DIR/eval, else <the checkpoint's MODEL_DIR>/eval."""
  if eval_output_dir:
    return eval_output_dir
  if model_dir:
    return os.path.join(model_dir, "eval")
  path = pathlib.Path(checkpoint_path)
  if path.name.startswith(f"{checkpoints_lib.STEP_PREFIX}_"):
    path = path.parent
  return str(path / "eval")


@gin.configurable
def evaluate(
  *,
  model: Any = gin.REQUIRED,
  checkpoint_path: str = gin.REQUIRED,
  heldout_cluster: str = gin.REQUIRED,
  model_dir: str | None = None,
  eval_output_dir: str | None = None,
  data_dir: str | None = None,
  vocabulary: str | None = None,
  batch_size: int = 32,
  task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
  num_shots: int = 0,
  mesh: Mapping[str, int] | None = None,
  baseline_checkpoint_path: str | None = None,
  seed: int = 0,
  num_beams: int = 1,
  max_decode_length: int | None = None,
  num_templates: int | None = None,
  max_examples: int | None = None,
  datasets: Sequence[str] | None = None,
  template_mode: str = "instructions",
  use_mock_data: bool = False,
  mock_num_examples: int = 16,
) -> dict[str, Any]:
  """Evaluates CHECKPOINT_PATH (and BASELINE_CHECKPOINT_PATH) on HELDOUT_CLUSTER.

  Args mirror the gin macros of configs/runs/eval.gin; see `flan.evaluation.holdout.EvalOptions`
  for the evaluation knobs. `use_mock_data` evaluates on tfds.testing.mock_data examples
  (smoke runs) when DATA_DIR is not set.

  Returns:
    The results dict (also written to the output directory).
  """
  from flan.data import clusters, vocabularies
  from flan.evaluation import holdout as evaluation

  clusters.check_cluster(heldout_cluster)
  if num_shots < 0:
    raise UserError(f"NUM_SHOTS must be >= 0, got {num_shots}.")
  device_mesh = partitioning.make_mesh(mesh)
  partitioning.check_batch_size(batch_size, device_mesh)
  vocab = vocabularies.get_vocabulary(vocabulary)
  if vocab.vocab_size > model.config.vocab_size:
    raise UserError(
      f"The vocabulary has {vocab.vocab_size} ids but the model's vocab_size is "
      f"{model.config.vocab_size}; use the model gin the checkpoint was trained "
      "with and its VOCABULARY."
    )
  output_dir = default_output_dir(checkpoint_path, model_dir, eval_output_dir)
  src = pathlib.Path(checkpoint_path)  # a checkpoint_<step> directory or its MODEL_DIR
  run_record.check_vocabulary(
    src.parent if (src / checkpoints_lib.STATE).is_dir() else src,
    vocabularies.fingerprint(vocabulary),
  )
  params, info = restore_params(model, device_mesh, checkpoint_path, task_feature_lengths)
  logging.info("Restored %s (step %s).", info["path"], info["step"])
  baseline, baseline_info = None, None
  if baseline_checkpoint_path:
    baseline, baseline_info = restore_params(
      model, device_mesh, baseline_checkpoint_path, task_feature_lengths
    )
  kwargs = dict(
    cluster=heldout_cluster,
    vocabulary=vocab,
    data_dir=data_dir,
    feature_lengths=dict(task_feature_lengths),
    output_dir=output_dir,
    batch_size=batch_size,
    baseline_params=baseline,
    num_shots=num_shots,
    seed=seed,
    num_beams=num_beams,
    max_decode_length=max_decode_length,
    num_templates=num_templates,
    max_examples=max_examples,
    datasets=tuple(datasets) if datasets else None,
    template_mode=template_mode,
    metadata={"checkpoint": info, "baseline_checkpoint": baseline_info},
  )
  if use_mock_data and data_dir is None:
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=mock_num_examples):
      results = evaluation.evaluate_cluster(model, params, device_mesh, **kwargs)
  else:
    results = evaluation.evaluate_cluster(model, params, device_mesh, **kwargs)
  for label, res in results["models"].items():
    c = res["cluster"]
    logging.info(
      "%s: cluster %s mean over templates %s, dev-selected %s",
      label,
      heldout_cluster,
      c["mean_over_templates"],
      c["dev_selected"],
    )
  return results


def main(argv: list[str] | None = None) -> int:
  """Entry point: parse gin flags, run `evaluate()`, turn user errors into one message."""
  from flan import logs
  from flan.cli import parse_gin_flags, report_user_errors

  logs.setup()  # our log format; library noise off unless FLAN_VERBOSE_LIBS=1
  with report_user_errors():
    parse_gin_flags(
      argv,
      prog="python -m flan.evaluate",
      doc=__doc__,
      run_config="configs/runs/eval.gin",
      entry=evaluate,
    )
    evaluate()
    return 0
  return 1
