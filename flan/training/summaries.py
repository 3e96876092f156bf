"""The run's TensorBoard summaries, written by host 0 through clu's metric writers.

MODEL_DIR/
  train/                      train scalars (`flan.training.progress.summarize`: t5x's names
                              and ours), timing/*, the gin config as text (`config`, and
                              `operative_config` after the first step), hparams
  inference_eval/tuned/       the held-out cluster every EVAL_PERIOD steps, on a fixed subset
  inference_eval/baseline/    (`flan.evaluation.periodic`); the baseline is
                              INITIAL_CHECKPOINT_PATH's parameters
  eval/tuned/, eval/baseline/ the full held-out evaluation at the end of training

Every evaluation run uses the same tags, `eval/<dataset>/<metric>` and
`eval/cluster_average/{mean_over_templates,dev_selected}`, so TensorBoard draws the tuned
model, its baseline and the final full evaluation in one chart per tag. (seqio's TensorBoard
logger also prefixes its tags with `eval/`, with one run per task; here a run is a model.)

Writes are asynchronous (clu's `AsyncWriter`, as t5x's `MetricsManager`); `close()` waits
for them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from flan import paths

TRAIN = "train"
INFERENCE_EVAL = "inference_eval"  # t5x's directory for its infer-eval during training
FINAL_EVAL = "eval"  # where the end-of-training evaluation writes results.json too
CLUSTER_AVERAGE = "cluster_average"


def eval_scalars(model_results: Mapping[str, Any]) -> dict[str, float]:
  """TensorBoard scalars of one model's held-out results (`evaluate_model`'s first output).

  Per evaluated dataset: `eval/<dataset>/mean_over_templates`, `eval/<dataset>/dev_selected`
  (when it has a dev split) and `eval/<dataset>/<metric>` (each metric's test mean over
  the counted templates); for the cluster: `eval/cluster_average/mean_over_templates` and
  `eval/cluster_average/dev_selected`. Missing datasets and values are left out.
  """
  out = {}
  for name, d in model_results["datasets"].items():
    if d.get("status") != "ok":
      continue
    if d.get("mean") is not None:
      out[f"eval/{name}/mean_over_templates"] = float(d["mean"])
    if d.get("dev_selected") is not None:
      out[f"eval/{name}/dev_selected"] = float(d["dev_selected"])
    counted = [t["test"]["metrics"] for t in d["templates"] if t["counted"]]
    for metric in sorted({k for m in counted for k in m}):
      values = [m[metric] for m in counted if m.get(metric) is not None]
      if values:
        out[f"eval/{name}/{metric}"] = float(np.mean(values))
  cluster = model_results["cluster"]
  for key in ("mean_over_templates", "dev_selected"):
    if cluster.get(key) is not None:
      out[f"eval/{CLUSTER_AVERAGE}/{key}"] = float(cluster[key])
  return out


def hparams(
  train_args: Mapping[str, Any],
  model_config: Any = None,
  optimizer_args: Mapping[str, Any] | None = None,
) -> dict[str, bool | int | float | str]:
  """Flat hparams for TensorBoard: train()'s settings, model/<field>, optimizer/<name>.

  Values TensorBoard's hparams plugin cannot hold (None, lists, dicts) become strings;
  a mapping such as TASK_FEATURE_LENGTHS becomes one entry per key.
  """
  flat: dict[str, Any] = {}
  for name, value in train_args.items():
    if isinstance(value, Mapping):
      flat.update({f"{name}/{k}": v for k, v in value.items()})
    else:
      flat[name] = value
  if model_config is not None and dataclasses.is_dataclass(model_config):
    flat.update({f"model/{k}": v for k, v in dataclasses.asdict(model_config).items()})
  flat.update({f"optimizer/{k}": v for k, v in (optimizer_args or {}).items()})
  scalar = (bool, int, float, str)
  return {k: v if isinstance(v, scalar) else str(v) for k, v in sorted(flat.items())}


class Summaries:
  """The run's writers, one per TensorBoard run directory, opened on first use.

  Args:
    model_dir: MODEL_DIR; None writes nothing.
    enabled: default: only on process 0 (every host computes the same metrics).
  """

  def __init__(self, model_dir: str | None, *, enabled: bool | None = None):
    self.model_dir = model_dir
    self.enabled = model_dir is not None and (
      jax.process_index() == 0 if enabled is None else enabled
    )
    self._writers: dict[str, Any] = {}

  def writer(self, run: str) -> Any:
    """The clu MetricWriter of MODEL_DIR/<run> (None when disabled)."""
    if not self.enabled:
      return None
    if run not in self._writers:
      # clu's SummaryWriter imports TensorFlow and tensorboard: only host 0 pays for them.
      from clu import metric_writers

      self._writers[run] = metric_writers.AsyncWriter(
        metric_writers.SummaryWriter(os.fspath(paths.path(self.model_dir) / run))
      )
    return self._writers[run]

  def scalars(self, run: str, step: int, values: Mapping[str, float]) -> None:
    if self.enabled and values:
      self.writer(run).write_scalars(step, {k: float(v) for k, v in values.items()})

  def texts(self, run: str, step: int, texts: Mapping[str, str]) -> None:
    if self.enabled:
      self.writer(run).write_texts(step, dict(texts))

  def hparams(self, values: Mapping[str, Any]) -> None:
    if self.enabled:
      self.writer(TRAIN).write_hparams(dict(values))

  def eval_results(self, run: str, step: int, models: Mapping[str, Any]) -> None:
    """Writes each model's held-out results under MODEL_DIR/<run>/<model>."""
    for label, results in models.items():
      self.scalars(f"{run}/{label}", step, eval_scalars(results))
    self.flush()

  def flush(self) -> None:
    for w in self._writers.values():
      w.flush()

  def close(self) -> None:
    """Waits for every pending write and closes the event files."""
    for w in self._writers.values():
      w.close()
    self._writers.clear()
