r"""Evaluate a checkpoint on a held-out cluster: `python -m flan.evaluate --gin_file=... --gin.X=V`.

  python -m flan.evaluate --gin_file=configs/models/small.gin --gin_file=configs/runs/eval.gin \
    --gin.CHECKPOINT_PATH=\"/tmp/flan_nli/checkpoint_30000\" --gin.HELDOUT_CLUSTER=\"nli\" \
    --gin.BASELINE_CHECKPOINT_PATH=\"/ckpts/t5_1_1_small\" --gin.NUM_SHOTS=0

Every dataset of the cluster is evaluated with every template (see `flan.evaluation.holdout`);
results.json, results.md, scores.png and predictions/ go to EVAL_OUTPUT_DIR (default:
MODEL_DIR/eval, where MODEL_DIR defaults to the checkpoint's directory). Only parameters
are read from a checkpoint (no optimizer state), straight into their shardings on MESH.

`--gin.EVALUATOR=\"seqio\"` runs seqio's own Evaluator on `flan_holdout_<cluster>_eval` instead
(`flan.evaluation.seqio_evaluator`, the tasks registered with DATA_DIR and VOCABULARY):
seqio's TensorBoard and JSON logs go to EVAL_OUTPUT_DIR/seqio/<model>/<split>/, the metrics
per task to EVAL_OUTPUT_DIR/seqio/<model>/results.json.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gin

from flan import paths
from flan.errors import UserError
from flan.model import partitioning
from flan.training import checkpoints as checkpoints_lib
from flan.training import run_record
from flan.training.options import expand_path


def default_output_dir(
  checkpoint_path: str, model_dir: str | None, eval_output_dir: str | None
) -> str:
  """EVAL_OUTPUT_DIR, else MODEL_DIR/eval, else <the checkpoint's MODEL_DIR>/eval."""
  if eval_output_dir:
    return eval_output_dir
  if model_dir:
    return str(paths.path(model_dir) / "eval")
  path = paths.path(checkpoint_path)
  if path.name == "checkpoint" and (path.parent.name.startswith(checkpoints_lib.STEP_PREFIX)):
    path = path.parent  # a t5x checkpoint's msgpack file
  if path.name.startswith(f"{checkpoints_lib.STEP_PREFIX}_"):
    path = path.parent
  return str(path / "eval")


def evaluate(
  *,
  model: Any,
  checkpoint_path: str,
  heldout_cluster: str,
  model_dir: str | None = None,
  eval_output_dir: str | None = None,
  data_dir: str | None = None,
  vocabulary: str | None = None,
  batch_size: int = 32,
  task_feature_lengths: Mapping[str, int],
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
  evaluator: str = "flan",
  cache_dir: str | None = None,
) -> dict[str, Any]:
  """Evaluates CHECKPOINT_PATH (and BASELINE_CHECKPOINT_PATH) on HELDOUT_CLUSTER.

  Args mirror the gin macros of configs/runs/eval.gin; see `flan.evaluation.holdout.EvalOptions`
  for the evaluation knobs. `use_mock_data` evaluates on tfds.testing.mock_data examples
  (smoke runs) when DATA_DIR is not set. `evaluator`: "flan" (the report) or "seqio"
  (seqio's Evaluator on the cluster's eval mixture; returns `{model: {split: {task:
  metrics}}}`). `cache_dir` (CACHE_DIR, the token cache's root): the baseline's results
  are stored there and reused by later evaluations of the same baseline checkpoint and
  configuration (`flan.evaluation.baseline_cache`).

  Returns:
    The results dict (also written to the output directory).
  """
  from flan.data import clusters, vocabularies
  from flan.evaluation import baseline_cache
  from flan.evaluation import holdout as evaluation

  clusters.check_cluster(heldout_cluster)
  checkpoint_path = expand_path("checkpoint_path", checkpoint_path)
  model_dir, eval_output_dir, data_dir, baseline_checkpoint_path, cache_dir = (
    None if v is None else expand_path(k, v)
    for k, v in (
      ("model_dir", model_dir),
      ("eval_output_dir", eval_output_dir),
      ("data_dir", data_dir),
      ("baseline_checkpoint_path", baseline_checkpoint_path),
      ("cache_dir", cache_dir),
    )
  )
  if vocabulary not in (None, "byte"):
    vocabulary = expand_path("vocabulary", vocabulary)
  if num_shots < 0:
    raise UserError(f"NUM_SHOTS must be >= 0, got {num_shots}.")
  if evaluator not in ("flan", "seqio"):
    raise UserError(f"EVALUATOR must be 'flan' or 'seqio', got {evaluator!r}.")
  if evaluator == "seqio" and num_shots:
    raise UserError("EVALUATOR='seqio' evaluates zero-shot (FLAN's eval tasks); set NUM_SHOTS=0.")
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
  saved = checkpoints_lib.locate(checkpoint_path, "CHECKPOINT_PATH")
  if saved.model_dir is not None:  # a trainer's checkpoint: its run's vocabulary only
    run_record.check_vocabulary(str(saved.model_dir), vocabularies.fingerprint(vocabulary))
  params, info = checkpoints_lib.restore_params(
    model, device_mesh, checkpoint_path, setting="CHECKPOINT_PATH"
  )
  logging.info("Restored %s (step %s).", info["path"], info["step"])
  baseline, baseline_info, cache = None, None, None
  if baseline_checkpoint_path:
    setting = "BASELINE_CHECKPOINT_PATH"
    located = checkpoints_lib.locate(baseline_checkpoint_path, setting)
    baseline_info = located.info()

    def baseline():  # restored only when evaluated: a cached result is reused without it
      return checkpoints_lib.restore_params(
        model, device_mesh, baseline_checkpoint_path, setting=setting
      )[0]

    cache = baseline_cache.open_cache(
      cache_dir, located, model.config, mock_data=use_mock_data and data_dir is None
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
    baseline_cache=cache,
  )
  run = evaluation.evaluate_cluster
  if evaluator == "seqio":
    run = _with_seqio_evaluator(output_dir, template_mode, datasets)
  if use_mock_data and data_dir is None:
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=mock_num_examples):
      results = run(model, params, device_mesh, **kwargs)
  else:
    results = run(model, params, device_mesh, **kwargs)
  if evaluator == "seqio":
    return results
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


def _with_seqio_evaluator(output_dir: str, template_mode: str, datasets) -> Callable[..., Any]:
  """`evaluate_cluster`'s signature, run through seqio's Evaluator instead."""
  from flan.data import mixtures, tasks
  from flan.evaluation import inference, seqio_evaluator

  if datasets:
    raise UserError("EVALUATOR='seqio' evaluates the whole eval mixture; leave DATASETS unset.")

  def run(
    model,
    params,
    mesh,
    *,
    cluster,
    vocabulary,
    data_dir,
    feature_lengths,
    batch_size,
    baseline_params,
    num_beams,
    max_examples,
    **_,
  ):
    tasks.register(
      data_dir=data_dir,
      vocabulary=vocabulary,
      template_mode=template_mode,
      missing_datasets="skip",
    )
    runner = inference.ModelRunner(model, mesh, batch_size, num_beams=num_beams)
    results = {}
    for label, p in (("tuned", params), ("baseline", baseline_params)):
      if p is not None:
        results[label] = seqio_evaluator.evaluate(
          runner,
          runner.place(p() if callable(p) else p),
          mixtures.holdout_eval(cluster),
          feature_lengths,
          num_examples=max_examples,
          output_dir=str(paths.path(output_dir) / "seqio" / label),
        )
    return results

  return run


def configurable_evaluate() -> Callable[..., dict[str, Any]]:
  """`evaluate` as gin configures it (registered by `main`: the library stays gin-free)."""
  return gin.external_configurable(evaluate, module="flan.evaluate")


def main(argv: list[str] | None = None) -> int:
  """Entry point: parse gin flags, run `evaluate()`, turn user errors into one message."""
  from flan import logs
  from flan.cli import parse_gin_flags, report_user_errors

  logs.setup()  # our log format; library noise off unless FLAN_VERBOSE_LIBS=1
  with report_user_errors():
    run = configurable_evaluate()
    parse_gin_flags(
      argv,
      prog="python -m flan.evaluate",
      doc=__doc__,
      run_config="configs/runs/eval.gin",
      entry=run,
    )
    run()
    return 0
  return 1


if __name__ == "__main__":
  import sys

  sys.exit(main())
