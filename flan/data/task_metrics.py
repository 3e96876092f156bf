"""What FLAN's eval tasks hand seqio to score them: `postprocess`, `metric_fns`, `score_metric_fns`.

Each row of an eval task (`flan_<d>_t<i>`) or a scoring task (`flan_<d>_t<i>_scoring`)
carries `metric_fields`, a JSON string of what the dataset's metrics read: `references`
(the gold texts of a generation template), and for classification datasets `options`,
`answer`, `answers`, STS-B's exact `score` and MultiRC's `question_id`. `postprocess` turns
a target into that dict (with the row's `example_id`, `option_idx` and `is_correct`), so the
metric functions below see plain Python values, whoever calls them:

  - seqio's `Evaluator`, with the model's predictions (decoded tokens) or scores plugged in;
  - `flan.evaluation.holdout`, which reads the same tasks and calls the same functions.

Rank classification (t5's way: one row per option, `score_metric_fns`) groups the rows of an
example by `example_id`; the prediction is the option with the highest score (the first on
a tie, as `np.argmax`), then the dataset's classification metrics are computed from it.
Generation templates score the decoded text against `references` (`metric_fns`).
Templates whose target is not the dataset's answer ("turned around", e.g. "write a positive
review") are scored with ROUGE against the rendered target.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from flan.data import datasets as datasets_lib
from flan.data import metrics as metrics_lib
from flan.data import templates as templates_lib

METRIC_FIELDS = ("options", "answer", "answers", "score", "question_id")
ROW_FIELDS = ("example_id", "option_idx", "is_correct")
TURNED_AROUND_METRICS = ("rouge",)

MetricFn = Callable[..., dict[str, float]]


def _plain(value: Any) -> Any:
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, (list, tuple, np.ndarray)):
    return [_plain(v) for v in value]
  if isinstance(value, bytes):
    return value.decode("utf-8")
  return value


def metric_fields(fields: Mapping[str, Any], references: Sequence[str]) -> str:
  """The `metric_fields` feature of one row: what the metrics read, as JSON."""
  out = {k: _plain(fields[k]) for k in METRIC_FIELDS if k in fields}
  out["references"] = [str(r) for r in references]
  return json.dumps(out, ensure_ascii=False, sort_keys=True)


def postprocess(output: str, example: Mapping[str, Any] | None = None, is_target: bool = False):
  """seqio's `postprocess_fn`: a prediction stays its text; a target becomes its row's fields."""
  if not is_target:
    return output
  if example is None or "metric_fields" not in example:
    raise ValueError("A FLAN eval task's target needs its example's `metric_fields`.")
  raw = example["metric_fields"]
  fields = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
  for key in ROW_FIELDS:
    if key in example:
      fields[key] = int(example[key])
  return fields


def generation_metric(names: Sequence[str]) -> MetricFn:
  """A `metric_fns` entry: the metrics `names` of decoded predictions against references."""
  names = tuple(names)

  def generation(targets: Sequence[Mapping[str, Any]], predictions: Sequence[str]):
    return metrics_lib.generation_scores(names, [t["references"] for t in targets], predictions)

  generation.__name__ = "generation_" + "_".join(names)
  return generation


def rank_predictions(
  targets: Sequence[Mapping[str, Any]], scores: Sequence[float]
) -> tuple[list[Mapping[str, Any]], list[int], list[list[float]]]:
  """Groups one-row-per-option scores by example (first-seen order).

  Returns:
    (each example's fields, the index of its best-scoring option, its scores in option
    order).
  """
  fields: dict[int, Mapping[str, Any]] = {}
  per_example: dict[int, dict[int, float]] = {}
  for t, s in zip(targets, scores, strict=True):
    fields.setdefault(t["example_id"], t)
    per_example.setdefault(t["example_id"], {})[t["option_idx"]] = float(s)
  ordered = [[by_option[j] for j in sorted(by_option)] for by_option in per_example.values()]
  return list(fields.values()), [int(np.argmax(s)) for s in ordered], ordered


def rank_classification_metric(names: Sequence[str]) -> MetricFn:
  """A `score_metric_fns` entry: the classification metrics `names` of the best option."""
  names = tuple(names)

  def rank_classification(targets: Sequence[Mapping[str, Any]], scores: Sequence[float]):
    fields, best, _ = rank_predictions(targets, np.asarray(scores).reshape(-1).tolist())
    predictions = [f["options"][i] for f, i in zip(fields, best)]
    return metrics_lib.classification_scores(names, fields, predictions)

  rank_classification.__name__ = "rank_classification_" + "_".join(names)
  return rank_classification


# ----------------------------------------------------------------------------- per template

RANK_CLASSIFICATION = "rank_classification"
GENERATION = "generation"
TURNED_AROUND = "generation_turned_around"


def kind(
  spec: datasets_lib.DatasetSpec, templates: Sequence[templates_lib.Template], template_idx: int
) -> str:
  """How template `template_idx` of dataset `spec` is evaluated.

  RANK_CLASSIFICATION: a classification dataset's template that shows the options and
  targets the answer. TURNED_AROUND: a template whose target is something other than the
  dataset's answer (a classification template without options or answer target; for
  generation datasets, a target other than template 0's, except translation, where both
  directions are translation). GENERATION: the rest.
  """
  template = templates[template_idx]
  if spec.classification:
    return RANK_CLASSIFICATION if template.is_classification else TURNED_AROUND
  if spec.cluster == "translation":
    return GENERATION
  same = template.target.strip() == templates[0].target.strip()
  return GENERATION if same else TURNED_AROUND


def metric_names(spec: datasets_lib.DatasetSpec, evaluated_kind: str) -> tuple[str, ...]:
  """The metrics of one template: the dataset's, or ROUGE for a turned-around one."""
  return TURNED_AROUND_METRICS if evaluated_kind == TURNED_AROUND else tuple(spec.metrics)


def references(
  fields: Mapping[str, Any], template: templates_lib.Template, target: str
) -> list[str]:
  """Gold texts: the dataset's `references` when the template targets the answer, else
  the rendered target."""
  if template.target.strip() == "{answer}" and fields.get("references"):
    return [str(r) for r in fields["references"]]
  return [target]
