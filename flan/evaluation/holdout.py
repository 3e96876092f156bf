"""Leave-one-cluster-out evaluation: every dataset of the held-out cluster, every template.

For each dataset of `flan.data.clusters.members(cluster)` and each of its templates, the test
split (the zero-shot evaluation splits) and, where the dataset has one, the dev split (the
held-out tail of train, used only to pick a template) are evaluated. The examples come from
the template's evaluated seqio task (`flan.data.tasks.evaluated_task`: the same rendering,
tokenization, truncation and EOS as training and as seqio's Evaluator), and the metrics are
that task's own `metric_fns` / `score_metric_fns` (`flan.data.task_metrics`), so a number
here is the number seqio's Evaluator computes from the same predictions and scores:
  - rank classification (`flan_<d>_t<i>_scoring`, a classification template that shows the
    options and targets the answer): each option is scored by the sum of its token
    log-probabilities given the input (t5x's `score_batch`; `model.score_options` encodes
    the input once for all options), and the prediction is the best-scoring option.
  - generation (`flan_<d>_t<i>`): `model.predict_batch` (greedy, or beam search), decoded
    and scored with the dataset's metrics against its references.
  - "turned-around" templates, whose target is not the dataset's answer (e.g. "Write a
    positive review"): generated and scored with ROUGE against the rendered target,
    reported, but left out of the dataset's averages, whose metrics assume the answer as
    target.
Few-shot prompts are the one input no task yields: the task's rendered input with k
exemplars before it, tokenized by the tasks' own preprocessors (`flan.data.tasks.tokenize`).
Batched, sharded model calls live in `flan.evaluation.inference`.

Aggregation follows the FLAN paper: per dataset the mean over templates and the test
score of the template with the best dev score; per cluster the mean over datasets.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
import seqio

from flan.data import clusters as clusters_lib
from flan.data import datasets as datasets_lib
from flan.data import examples as examples_lib
from flan.data import metrics as metrics_lib
from flan.data import task_metrics, tasks
from flan.errors import UserError
from flan.evaluation import baseline_cache as baseline_cache_lib
from flan.evaluation import few_shot, inference, report

SPLITS = ("test", "validation")


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


@dataclasses.dataclass(frozen=True)
class Prompt:
  """One example of one template and split, as its evaluated task yields it.

  Attributes:
    example_id: the example's id in its split.
    inputs_text: the rendered input.
    inputs: its tokens, EOS included, cut to the input length: [Li] int32.
    target_text: the rendered target (rank classification: the correct option's).
    targets: the postprocessed target of each task row (one per option for rank
      classification), as the task's metric functions take them.
    options: rank classification: each option's target tokens, EOS included ([Lt] each).
  """

  example_id: int
  inputs_text: str
  inputs: np.ndarray
  target_text: str
  targets: tuple[Mapping[str, Any], ...]
  options: tuple[np.ndarray, ...] | None = None


@dataclasses.dataclass(frozen=True)
class TemplateData:
  """One template of one dataset: its evaluated seqio task and the prompts of each split."""

  task: seqio.Task
  kind: str  # `flan.data.task_metrics`: rank_classification, generation, ..._turned_around
  splits: Mapping[str, tuple[Prompt, ...]]  # "test", "validation" (empty without dev examples)


def _text(value: Any) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_prompts(
  task: seqio.Task, split: str, lengths: Mapping[str, int], max_examples: int | None = None
) -> tuple[Prompt, ...]:
  """The prompts of `split` of an evaluated task (the first `max_examples` examples).

  A scoring task's rows (one per option, consecutive per example) are grouped back into
  their example.
  """
  if split not in task.splits:
    return ()
  ds = task.get_dataset(dict(lengths), split=split, shuffle=False, num_epochs=1)
  groups: dict[int, list[dict[str, Any]]] = {}
  for row in ds.as_numpy_iterator():
    example_id = int(row["example_id"])
    if example_id not in groups and max_examples is not None and len(groups) >= max_examples:
      break
    groups.setdefault(example_id, []).append(row)
  prompts = []
  for example_id, rows in groups.items():
    targets = tuple(
      task.postprocess_fn(_text(r["targets_pretokenized"]), example=r, is_target=True) for r in rows
    )
    scoring = "option_idx" in rows[0]
    if scoring:
      correct = [r for r in rows if int(r["is_correct"])] or rows
      target_text = _text(correct[0]["targets_pretokenized"])
    else:
      target_text = _text(rows[0]["targets_pretokenized"])
    prompts.append(
      Prompt(
        example_id=example_id,
        inputs_text=_text(rows[0]["inputs_pretokenized"]),
        inputs=rows[0]["inputs"],
        target_text=target_text,
        targets=targets,
        options=tuple(r["targets"] for r in rows) if scoring else None,
      )
    )
  return tuple(prompts)


def _count_truncated(
  vocabulary: seqio.Vocabulary, texts: Sequence[str], tokens: Sequence[np.ndarray], length: int
) -> int:
  """Rows that the cut to `length` shortened (only rows at the cap are re-encoded)."""
  return sum(
    1
    for text, ids in zip(texts, tokens)
    if len(ids) == length and len(vocabulary.encode(text)) + 1 > length
  )


def evaluate_template(
  runner: inference.ModelRunner,
  params: Any,
  vocabulary: seqio.Vocabulary,
  dataset: str,
  template_idx: int,
  data: TemplateData,
  split: str,
  train_examples: Sequence[Mapping[str, Any]],
  options: EvalOptions,
  stats: dict[str, int] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """Evaluates one template on one split with its task's own metric functions.

  Returns:
    (summary with kind, metrics, score, num_examples; one record per example for the
    predictions file).
  """
  prompts = data.splits[split]
  if not prompts:
    raise UserError(f"No {split} examples of {dataset!r} to evaluate.")
  spec = datasets_lib.get(dataset)
  li, lt = options.feature_lengths["inputs"], options.feature_lengths["targets"]
  enc = [p.inputs for p in prompts]
  texts = [p.inputs_text for p in prompts]
  shots = []
  if options.num_shots:
    texts = []
    for p in prompts:
      prompt, kept = few_shot.few_shot_inputs(
        dataset,
        {"example_id": p.example_id},
        template_idx,
        p.inputs_text,
        train_examples,
        options.num_shots,
        seed=options.seed,
        count_tokens=lambda text: len(vocabulary.encode(text)),
        max_tokens=li - 1,
        mode=options.template_mode,
      )
      texts.append(prompt)
      shots.append(kept)
    enc = [r["inputs"] for r in tasks.tokenize({"inputs": texts}, vocabulary, {"inputs": li})]
  if stats is not None:
    stats["truncated_inputs"] = stats.get("truncated_inputs", 0) + _count_truncated(
      vocabulary, texts, enc, li
    )
  input_length = inference.padded_length(max(len(e) for e in enc), li)
  records = [
    {
      "dataset": dataset,
      "template": template_idx,
      "split": split,
      "example_id": p.example_id,
      "inputs": text,
      "target": p.target_text,
    }
    for p, text in zip(prompts, texts)
  ]
  for r, k in zip(records, shots):
    r["num_shots"] = k

  task = data.task
  names = task_metrics.metric_names(spec, data.kind)
  targets = [t for p in prompts for t in p.targets]
  values: dict[str, float] = {}
  if data.kind == task_metrics.RANK_CLASSIFICATION:
    option_ids = [[o.tolist() for o in p.options] for p in prompts]
    target_length = inference.padded_length(max(len(o) for opts in option_ids for o in opts), lt)
    per_example = runner.score_options(
      params, [e.tolist() for e in enc], option_ids, (input_length, target_length)
    )
    scores = [s for per in per_example for s in per]  # the task's rows, in order
    for fn in task.score_metric_fns:
      values.update(fn(targets, scores))
    fields, best, _ = task_metrics.rank_predictions(targets, scores)
    for r, f, per, i in zip(records, fields, per_example, best):
      prediction = f["options"][i]
      r.update(
        options=list(f["options"]),
        scores=per,
        prediction=prediction,
        correct=prediction in examples_lib.correct_answers(f),
      )
  else:
    tokens = runner.predict(params, [e.tolist() for e in enc], input_length, options.decode_length)
    predictions = [
      task.postprocess_fn(vocabulary.decode(t), example=None, is_target=False) for t in tokens
    ]
    for fn in task.predict_metric_fns:
      values.update(fn(targets, predictions))
    for r, t, pred in zip(records, targets, predictions):
      refs = t["references"]
      r.update(references=refs, prediction=pred, correct=pred.strip() in [x.strip() for x in refs])
  for r in records:
    r["kind"] = data.kind
  summary = {
    "kind": data.kind,
    "num_examples": len(prompts),
    "metrics": values,
    "score": metrics_lib.primary(names, values),
  }
  if shots:
    summary["mean_shots"] = float(np.mean(shots))
  return summary, records


# ----------------------------------------------------------------------------- drivers


def task_config(
  data_dir: str | None, vocabulary: seqio.Vocabulary, options: EvalOptions
) -> tasks.Config:
  """The task configuration an evaluation reads its examples with."""
  return tasks.Config(data_dir=data_dir, vocabulary=vocabulary, template_mode=options.template_mode)


def load_dataset(dataset: str, config: tasks.Config, options: EvalOptions) -> dict[str, Any]:
  """Every evaluated template of `dataset` (`TemplateData`, test and dev prompts) and, for
  few-shot, the train examples the exemplars come from."""
  start = time.perf_counter()
  count = len(examples_lib.get_templates(dataset))
  templates = []
  for i in range(count)[: options.num_templates]:
    task = tasks.evaluated_task(dataset, i, config)
    splits = {
      split: read_prompts(task, split, options.feature_lengths, options.max_examples)
      for split in SPLITS
    }
    kind = tasks.evaluated_kind(dataset, i, config)
    templates.append(TemplateData(task, kind, splits))
  train = ()
  if options.num_shots:
    train = examples_lib.load_examples(dataset, "train", config.data_dir)
  logging.info(
    "Loaded %s for evaluation: %d test and %d dev examples%s, templates: %d, in %.1f s.",
    dataset,
    len(templates[0].splits["test"]) if templates else 0,
    len(templates[0].splits["validation"]) if templates else 0,
    f" ({len(train)} train for the exemplars)" if options.num_shots else "",
    len(templates),
    time.perf_counter() - start,
  )
  return {"templates": templates, "train": train}


def _has_test(d: Mapping[str, Any]) -> bool:
  return bool(d.get("templates")) and bool(d["templates"][0].splits["test"])


def evaluate_model(
  runner: inference.ModelRunner,
  params: Any,
  vocabulary: seqio.Vocabulary,
  label: str,
  data: Mapping[str, Mapping[str, Any]],
  options: EvalOptions,
  stats: dict[str, int] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """Evaluates one set of parameters on every loaded dataset (`load_dataset`) and template."""
  start = time.perf_counter()
  total = sum(
    sum(len(t.splits[s]) for t in d["templates"] for s in SPLITS)
    for d in data.values()
    if _has_test(d)
  )
  progress = report.EvalProgress(label, total)
  results, records = {}, []
  for name, d in data.items():
    if not _has_test(d):
      results[name] = {"status": "missing", "error": d.get("error", "no test examples")}
      continue
    templates = []
    for i, (template, loaded) in enumerate(
      zip(examples_lib.get_templates(name), d["templates"], strict=False)
    ):
      entry = {"template": i, "input": template.input, "target": template.target}
      for split in SPLITS:
        if not loaded.splits[split]:
          entry[split] = None
          continue
        summary, recs = evaluate_template(
          runner, params, vocabulary, name, i, loaded, split, d["train"], options, stats
        )
        entry[split] = summary
        records.extend(dict(r, model=label) for r in recs)
        progress.update(
          len(loaded.splits[split]), f"{name} t{i} {split} score={summary['score']:.1f}"
        )
      entry["kind"] = loaded.kind
      entry["counted"] = loaded.kind != task_metrics.TURNED_AROUND
      templates.append(entry)
    first = d["templates"][0].splits
    results[name] = {
      "status": "ok",
      "metrics": list(datasets_lib.get(name).metrics),
      "num_test_examples": len(first["test"]),
      "num_dev_examples": len(first["validation"]),
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


def evaluate_baseline(
  runner: inference.ModelRunner,
  params: Any,
  vocabulary: seqio.Vocabulary,
  data: Mapping[str, Mapping[str, Any]],
  options: EvalOptions,
  cluster: str,
  data_dir: str | None,
  cache: baseline_cache_lib.BaselineCache | None = None,
  stats: dict[str, int] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """`evaluate_model` of the baseline, or its results read back from `cache` when an earlier
  run stored them. `params`: the parameters, or a function that returns them, called only
  when the baseline is evaluated (a cache hit neither restores nor evaluates it)."""

  def run():
    placed = runner.place(params() if callable(params) else params)
    return evaluate_model(runner, placed, vocabulary, "baseline", data, options, stats)

  if cache is None:
    return run()
  return cache.reuse_or_evaluate(
    run, cluster=cluster, options=options, data=data, data_dir=data_dir, vocabulary=vocabulary
  )


def load_cluster(
  members: Sequence[str], config: tasks.Config, options: EvalOptions, context: str = "Skipping"
) -> dict[str, dict[str, Any]]:
  """`load_dataset` of every member; a member whose data is missing is recorded, with a
  warning, rather than failing the evaluation of the others."""
  data = {}
  for name in members:
    try:
      data[name] = load_dataset(name, config, options)
    except (examples_lib.DataNotPreparedError, ValueError) as e:
      logging.warning("%s %s: %s", context, name, str(e).splitlines()[0])
      data[name] = {"error": str(e)}
  return data


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
  data = load_cluster(members, task_config(data_dir, vocabulary, options), options)
  runner = runner or inference.ModelRunner(model, mesh, batch_size, num_beams=num_beams)
  models, records, stats = {}, [], {"truncated_inputs": 0}
  models["tuned"], recs = evaluate_model(
    runner, runner.place(params), vocabulary, "tuned", data, options, stats
  )
  records.extend(recs)
  if baseline_params is not None:
    models["baseline"], recs = evaluate_baseline(
      runner, baseline_params, vocabulary, data, options, cluster, data_dir, baseline_cache, stats
    )
    records.extend(recs)
  results = {
    "cluster": cluster,
    "datasets": list(members),
    "options": {**dataclasses.asdict(options), "batch_size": batch_size, "mesh": dict(mesh.shape)},
    "metadata": dict(metadata or {}),
    "models": models,
    "stats": {**runner.stats, **stats},
  }
  if output_dir and jax.process_index() == 0:
    report.write_all(output_dir, results, records)
  return results
