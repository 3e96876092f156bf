"""Evaluation during training: the held-out cluster, zero-shot, every EVAL_PERIOD steps.

t5x's infer-eval: at every multiple of EVAL_PERIOD the current parameters are evaluated on
a fixed subset of the held-out cluster (the first EVALUATOR_NUM_EXAMPLES examples of each
test and dev split, the first EVAL_NUM_TEMPLATES templates), scored exactly as the full
evaluation at the end (`flan.evaluation.holdout`). The subset is read once, and one
`ModelRunner` serves every evaluation, so its scoring and decoding functions are compiled
at the first evaluation and reused afterwards (and by the final evaluation, given the same
batch size). The baseline, the parameters of INITIAL_CHECKPOINT_PATH, does not change: it
is evaluated once, at the first evaluation, and its parameters are dropped again; with a
`baseline_cache`, its results are read back from an earlier run's evaluation of the same
checkpoint and subset instead (`flan.evaluation.baseline_cache`), without restoring it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax

from flan.data import clusters as clusters_lib
from flan.evaluation import baseline_cache as baseline_cache_lib
from flan.evaluation import holdout, inference


class PeriodicEvaluator:
  """The held-out cluster's subset, loaded once, and the runner that evaluates it.

  Args:
    model: the `EncoderDecoderModel` being trained.
    mesh: the training mesh.
    cluster: the held-out cluster (`flan.data.clusters.CLUSTERS`).
    vocabulary: the run's seqio vocabulary.
    data_dir: TFDS data_dir (None: TFDS's default, or mock data inside `mock_data`).
    feature_lengths: {"inputs", "targets"} token lengths.
    batch_size: rows per evaluation batch (EVAL_BATCH_SIZE).
    max_examples: examples per split (EVALUATOR_NUM_EXAMPLES; None: all).
    num_templates: the first N templates of each dataset (None: all).
    load_baseline: returns the baseline's parameters (None: no baseline).
    baseline_cache: where the baseline's results are reused from or stored (None: none).
  """

  def __init__(
    self,
    model: Any,
    mesh: jax.sharding.Mesh,
    *,
    cluster: str,
    vocabulary: Any,
    data_dir: str | None,
    feature_lengths: Mapping[str, int],
    batch_size: int,
    max_examples: int | None,
    num_templates: int | None,
    load_baseline: Callable[[], Any] | None = None,
    baseline_cache: baseline_cache_lib.BaselineCache | None = None,
  ):
    self.cluster = cluster
    self.options = holdout.EvalOptions(
      dict(feature_lengths), num_templates=num_templates, max_examples=max_examples
    )
    self.runner = inference.ModelRunner(model, mesh, batch_size)
    self.vocabulary = vocabulary
    self._load_baseline = load_baseline
    self._baseline_cache = baseline_cache
    self._baseline: dict[str, Any] | None = None
    self.data_dir = data_dir
    start = time.perf_counter()
    self.data = holdout.load_cluster(
      clusters_lib.members(cluster),
      holdout.task_config(data_dir, vocabulary, self.options),
      self.options,
      context="Evaluation during training skips",
    )
    loaded = [d["templates"] for d in self.data.values() if d.get("templates")]
    logging.info(
      "Evaluation during training: %d of %d datasets of %r, %s examples per "
      "split (%d test, %d dev in all), loaded in %.1f s.",
      len(loaded),
      len(self.data),
      cluster,
      "all" if max_examples is None else max_examples,
      sum(len(ts[0].splits["test"]) for ts in loaded),
      sum(len(ts[0].splits["validation"]) for ts in loaded),
      time.perf_counter() - start,
    )

  def evaluate(self, params: Any, step: int) -> dict[str, dict[str, Any]]:
    """{"tuned": results of `params`, "baseline": the baseline's (if any)}, as
    `holdout.evaluate_model` returns them (per dataset, and the cluster averages)."""
    models = {"tuned": self._evaluate(params, "tuned")}
    if self._load_baseline is not None and self._baseline is None:
      self._baseline = holdout.evaluate_baseline(
        self.runner,
        self._load_baseline,
        self.vocabulary,
        self.data,
        self.options,
        self.cluster,
        self.data_dir,
        self._baseline_cache,
      )[0]
    if self._baseline is not None:
      models["baseline"] = self._baseline
    line = "  ".join(
      f"{label} {_fmt(r['cluster']['mean_over_templates'])}" for label, r in models.items()
    )
    logging.info(
      "Evaluation at step %d (%r subset, cluster mean over templates): %s", step, self.cluster, line
    )
    return models

  def _evaluate(self, params: Any, label: str) -> dict[str, Any]:
    results, _ = holdout.evaluate_model(
      self.runner, self.runner.place(params), self.vocabulary, label, self.data, self.options
    )
    return results


def _fmt(x: float | None) -> str:
  return "-" if x is None else f"{x:.1f}"
