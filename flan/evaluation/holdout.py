"""Leave-one-cluster-out evaluation: every dataset of the held-out cluster, every template.

For each dataset of `flan.data.clusters.members(cluster)` and each of its templates, the test
split (the zero-shot evaluation splits) and, where the dataset has one, the dev split (the
held-out tail of train, used only to pick a template) are evaluated:
  - classification templates (options shown, target = the answer): rank classification.
    Each option is scored by the sum of its token log-probabilities given the input (t5x's
    `score_batch`; `model.score_options` encodes the input once for all options), and the
    prediction is the best-scoring option.
  - generation templates: `model.predict_batch` (greedy, or beam search), decoded and
    scored with the dataset's metrics against its references.
  - "turned-around" templates, whose target is not the dataset's answer (e.g. "Write a
    positive review", "Write an email with this subject"; the target differs from template
    0's): generated and scored with ROUGE against the rendered target, reported, but left
    out of the dataset's averages, whose metrics assume the answer as target. Translation
    templates of both directions are all translation and all count.
Batched, sharded model calls live in `flan.evaluation.inference`.

Aggregation follows the FLAN paper: per dataset the mean over templates and the test
score of the template with the best dev score; per cluster the mean over datasets.
The contract with the examples is `flan.data.examples` (pure Python, no seqio Evaluator).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from flan.data import clusters as clusters_lib
from flan.data import datasets as datasets_lib
from flan.data import examples as examples_lib
from flan.data import templates as templates_lib
from flan.errors import UserError
from flan.evaluation import baseline_cache as baseline_cache_lib
from flan.evaluation import few_shot, inference, report
from flan.evaluation import metrics as metrics_lib

TURNED_AROUND_METRICS = ("rouge",)


@dataclasses.dataclass(frozen=True)
class EvalOptions:
  """What every dataset of one evaluation shares.

  Attributes:
    feature_lengths: {"inputs": Li, "targets": Lt}: inputs (few-shot prompts included)
      are cut to Li tokens and options to Lt, EOS included.
    num_shots: exemplars from the train split before each input (0: zero-shot).
    seed: exemplar-draw seed.
    num_beams: 1 = greedy decoding; more = beam search.
    max_decode_length: generated tokens (default: feature_lengths["targets"]).
    num_templates: evaluate the first N templates (default: all).
    max_examples: cap per split (smoke runs; default: all).
    template_mode: "instructions", or an ablation mode of `flan.data.templates.render`.
  """

  feature_lengths: Mapping[str, int]
  num_shots: int = 0
  seed: int = 0
  num_beams: int = 1
  max_decode_length: int | None = None
  num_templates: int | None = None
  max_examples: int | None = None
  template_mode: str = "instructions"

  @property
  def decode_length(self) -> int:
    return int(self.max_decode_length or self.feature_lengths["targets"])


def _references(
  fields: Mapping[str, Any], template: templates_lib.Template, target: str
) -> list[str]:
  """Gold texts: the dataset's `references` when the template targets the answer."""
  if template.target.strip() == "{answer}" and fields.get("references"):
    return list(fields["references"])
  return [target]


def is_turned_around(dataset: str, template_idx: int) -> bool:
  """Whether a template's target is something other than the dataset's answer."""
  spec = datasets_lib.get(dataset)
  templates = examples_lib.get_templates(dataset)
  if spec.classification:
    return not templates[template_idx].is_classification
  if spec.cluster == "translation":
    return False
  return templates[template_idx].target.strip() != templates[0].target.strip()


def evaluate_template(
  runner: inference.ModelRunner,
  params: Any,
  tokenizer: inference.Tokenizer,
  dataset: str,
  template_idx: int,
  split_examples: Sequence[Mapping[str, Any]],
  train_examples: Sequence[Mapping[str, Any]],
  options: EvalOptions,
  split: str = "test",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """Evaluates one template on one split.

  Returns:
    (summary with kind, metrics, score, num_examples; one record per example for the
    predictions file).
  """
  if not split_examples:
    raise UserError(f"No {split} examples of {dataset!r} to evaluate.")
  spec = datasets_lib.get(dataset)
  template = examples_lib.get_templates(dataset)[template_idx]
  li, lt = options.feature_lengths["inputs"], options.feature_lengths["targets"]
  prompts, targets, shots = [], [], []
  for fields in split_examples:
    inputs, target = examples_lib.render_example(
      dataset, fields, template_idx, options.template_mode
    )
    if options.num_shots:
      inputs, kept = few_shot.few_shot_inputs(
        dataset,
        fields,
        template_idx,
        inputs,
        train_examples,
        options.num_shots,
        seed=options.seed,
        count_tokens=tokenizer.count,
        max_tokens=li - 1,
        mode=options.template_mode,
      )
      shots.append(kept)
    prompts.append(inputs)
    targets.append(target)
  enc = [tokenizer.with_eos(p, li) for p in prompts]
  input_length = inference.padded_length(max(len(e) for e in enc), li)
  records = [
    {
      "dataset": dataset,
      "template": template_idx,
      "split": split,
      "example_id": f["example_id"],
      "inputs": p,
      "target": t,
    }
    for f, p, t in zip(split_examples, prompts, targets)
  ]
  if shots:
    for r, k in zip(records, shots):
      r["num_shots"] = k

  turned_around = is_turned_around(dataset, template_idx)
  names = TURNED_AROUND_METRICS if turned_around else spec.metrics
  if spec.classification and not turned_around:
    kind = "rank_classification"
    option_ids = [
      [
        tokenizer.with_eos(templates_lib.fill(template.target, {**fields, "answer": option}), lt)
        for option in fields["options"]
      ]
      for fields in split_examples
    ]
    target_length = inference.padded_length(max(len(o) for opts in option_ids for o in opts), lt)
    per_example = runner.score_options(params, enc, option_ids, (input_length, target_length))
    predictions = [f["options"][int(np.argmax(s))] for f, s in zip(split_examples, per_example)]
    values = metrics_lib.classification_scores(spec.metrics, split_examples, predictions)
    for r, f, s, pred in zip(records, split_examples, per_example, predictions):
      r.update(
        options=list(f["options"]),
        scores=s,
        prediction=pred,
        correct=pred in examples_lib.correct_answers(f),
      )
  else:
    kind = "generation_turned_around" if turned_around else "generation"
    tokens = runner.predict(params, enc, input_length, options.decode_length)
    predictions = [tokenizer.decode(t) for t in tokens]
    refs = [_references(f, template, t) for f, t in zip(split_examples, targets)]
    values = metrics_lib.generation_scores(names, refs, predictions)
    for r, ref, pred in zip(records, refs, predictions):
      r.update(references=ref, prediction=pred, correct=pred.strip() in [x.strip() for x in ref])
  for r in records:
    r["kind"] = kind
  summary = {
    "kind": kind,
    "num_examples": len(split_examples),
    "metrics": values,
    "score": metrics_lib.primary(names, values),
  }
  if shots:
    summary["mean_shots"] = float(np.mean(shots))
  return summary, records


# ----------------------------------------------------------------------------- drivers


def load_dataset_splits(
  dataset: str, data_dir: str | None, options: EvalOptions
) -> dict[str, list[dict[str, Any]]]:
  """test, validation (possibly empty) and, for few-shot, train examples of `dataset`."""
  cap = options.max_examples
  out = {}
  start = time.perf_counter()
  for split in ("test", "validation") + (("train",) if options.num_shots else ()):
    rows = examples_lib.load_examples(dataset, split, data_dir)
    out[split] = rows if cap is None or split == "train" else rows[:cap]
  logging.info(
    "Loaded %s for evaluation: %s in %.1f s.",
    dataset,
    ", ".join(f"{len(rows)} {split}" for split, rows in out.items()),
    time.perf_counter() - start,
  )
  return out


def evaluate_model(
  runner: inference.ModelRunner,
  params: Any,
  tokenizer: inference.Tokenizer,
  label: str,
  data: Mapping[str, Mapping[str, Any]],
  options: EvalOptions,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """Evaluates one set of parameters on every loaded dataset and template."""
  start = time.perf_counter()
  total = 0
  for name, d in data.items():
    if d.get("examples") and d["examples"]["test"]:
      n = len(examples_lib.get_templates(name)[: options.num_templates])
      total += n * (len(d["examples"]["test"]) + len(d["examples"]["validation"]))
  progress = report.EvalProgress(label, total)
  results, records = {}, []
  for name, d in data.items():
    if not d.get("examples") or not d["examples"]["test"]:
      results[name] = {"status": "missing", "error": d.get("error", "no test examples")}
      continue
    templates = []
    for i, template in enumerate(examples_lib.get_templates(name)[: options.num_templates]):
      entry = {"template": i, "input": template.input, "target": template.target}
      for split in ("test", "validation"):
        rows = d["examples"][split]
        if not rows:
          entry[split] = None
          continue
        summary, recs = evaluate_template(
          runner, params, tokenizer, name, i, rows, d["examples"].get("train", ()), options, split
        )
        entry[split] = summary
        records.extend(dict(r, model=label) for r in recs)
        progress.update(len(rows), f"{name} t{i} {split} score={summary['score']:.1f}")
      entry["kind"] = entry["test"]["kind"]
      entry["counted"] = entry["kind"] != "generation_turned_around"
      templates.append(entry)
    results[name] = {
      "status": "ok",
      "metrics": list(datasets_lib.get(name).metrics),
      "num_test_examples": len(d["examples"]["test"]),
      "num_dev_examples": len(d["examples"]["validation"]),
      "templates": templates,
      **report.summarize_dataset(templates),
    }
  seconds = time.perf_counter() - start
  return {
    "datasets": results,
    "cluster": report.summarize_cluster(results),
    "seconds": seconds,
    "example_templates_per_second": progress.done / max(seconds, 1e-9),
  }, records


def evaluate_cluster(
  model: Any,
  params: Any,
  mesh: jax.sharding.Mesh,
  *,
  cluster: str,
  vocabulary: Any,
  data_dir: str | None,
  feature_lengths: Mapping[str, int],
  output_dir: str | None,
  batch_size: int,
  baseline_params: Any = None,
  num_shots: int = 0,
  seed: int = 0,
  num_beams: int = 1,
  max_decode_length: int | None = None,
  num_templates: int | None = None,
  max_examples: int | None = None,
  datasets: Sequence[str] | None = None,
  template_mode: str = "instructions",
  metadata: Mapping[str, Any] | None = None,
  runner: inference.ModelRunner | None = None,
  baseline_cache: baseline_cache_lib.BaselineCache | None = None,
) -> dict[str, Any]:
  """Evaluates the held-out `cluster` (and a zero-shot baseline) and writes the report.

  Args:
    model: an `EncoderDecoderModel` (score_batch, score_options, predict_batch,
      param_logical_specs).
    params: the instruction-tuned parameters.
    mesh: the training mesh; batches split over its "data" axis.
    cluster: a name from `flan.data.clusters.CLUSTERS`.
    vocabulary: the seqio vocabulary the model was trained with.
    data_dir: TFDS data_dir.
    feature_lengths: {"inputs", "targets"} token lengths.
    output_dir: where results.json, results.md, the chart and predictions go (None: only
      return the results).
    batch_size: rows per batch (a multiple of the mesh's data-parallel size).
    baseline_params: parameters of the initial checkpoint, evaluated the same way, or a
      function that returns them (called only when the baseline is evaluated).
    num_shots, seed, num_beams, max_decode_length, num_templates, max_examples,
      template_mode: see `EvalOptions`.
    datasets: restrict to these members of the cluster.
    metadata: recorded as-is in results.json (checkpoint paths, step, ...).
    runner: a `ModelRunner` of this model, mesh, batch size and beams whose compiled
      functions to reuse (default: a new one).
    baseline_cache: where the baseline's results are reused from, or stored for later runs
      (`flan.evaluation.baseline_cache`; None: evaluated every time).

  Returns:
    The results dict written to `output_dir/results.json`.
  """
  members = clusters_lib.members(cluster)
  if datasets:
    unknown = sorted(set(datasets) - set(members))
    if unknown:
      raise UserError(
        f"Datasets {unknown} are not in cluster {cluster!r}, whose members "
        f"are: {', '.join(members)}."
      )
    members = tuple(m for m in members if m in datasets)
  options = EvalOptions(
    dict(feature_lengths),
    num_shots,
    seed,
    num_beams,
    max_decode_length,
    num_templates,
    max_examples,
    template_mode,
  )
  data = {}
  for name in members:
    try:
      data[name] = {"examples": load_dataset_splits(name, data_dir, options)}
    except (examples_lib.DataNotPreparedError, ValueError) as e:
      logging.warning("Skipping %s: %s", name, str(e).splitlines()[0])
      data[name] = {"error": str(e)}
  runner = runner or inference.ModelRunner(model, mesh, batch_size, num_beams=num_beams)
  tokenizer = inference.Tokenizer(vocabulary)
  models, records = {}, []
  for label, p in (("tuned", params), ("baseline", baseline_params)):
    if p is None:
      continue

    def run(label=label, p=p):
      placed = runner.place(p() if callable(p) else p)
      return evaluate_model(runner, placed, tokenizer, label, data, options)

    if label == "baseline" and baseline_cache is not None:
      models[label], recs = baseline_cache.reuse_or_evaluate(
        run, cluster=cluster, options=options, data=data, data_dir=data_dir, vocabulary=vocabulary
      )
    else:
      models[label], recs = run()
    records.extend(recs)
  results = {
    "cluster": cluster,
    "datasets": list(members),
    "options": {**dataclasses.asdict(options), "batch_size": batch_size, "mesh": dict(mesh.shape)},
    "metadata": dict(metadata or {}),
    "models": models,
    "stats": {**runner.stats, "truncated_inputs_or_targets": tokenizer.truncated},
  }
  if output_dir and jax.process_index() == 0:
    report.write_all(output_dir, results, records)
  return results
