"""Leave-one-cluster-out evaluation: every dataset of the held-out cluster, every template.

For each dataset of `flan.clusters.members(cluster)` and each of its templates, the test
split (the zero-shot evaluation splits) and, where the dataset has one, the dev split (the
held-out tail of train, used only to pick a template) are evaluated:
  - classification templates (options shown, target = the answer): rank classification.
    Each option is scored by the sum of its token log-probabilities given the input (t5x's
    `score_batch`, with the input encoded once for all options), and the prediction is the
    best-scoring option.
  - generation templates: `model.predict_batch` (greedy, or beam search), decoded and
    scored with the dataset's metrics against its references.
  - "turned-around" templates, whose target is not the dataset's answer (e.g. "Write a
    positive review", "Write an email with this subject"; the target differs from template
    0's): generated and scored with ROUGE against the rendered target, reported, but left
    out of the dataset's averages, whose metrics assume the answer as target. Translation
    templates of both directions are all translation and all count.
Batches have fixed shapes (lengths rounded up to one of a few sizes, rows padded with copies
of the first row that are dropped afterwards), are split over the mesh's "data" axis like
training batches, and go through one jitted function per model, compiled once per shape.

Aggregation follows the FLAN paper: per dataset the mean over templates and the test
score of the template with the best dev score; per cluster the mean over datasets.
The contract with the examples is `flan.examples` (pure Python, no seqio Evaluator).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from flan import clusters as clusters_lib
from flan import datasets as datasets_lib
from flan import examples as examples_lib
from flan import few_shot
from flan import metrics as metrics_lib
from flan import partitioning
from flan import report
from flan import templates as templates_lib

PAD_ID, EOS_ID = 0, 1
MIN_LENGTH = 8  # smallest padded length: keeps the number of compiled shapes small.
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
    template_mode: "instructions", or an ablation mode of `flan.templates.render`.
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


def padded_length(n: int, cap: int) -> int:
  """`n` rounded up to the next of 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, ... (four steps per
  power of two: at most 25% padding, few compiled shapes), at most `cap`."""
  n = max(int(n), MIN_LENGTH)
  step = max(MIN_LENGTH, 1 << max(0, (n - 1).bit_length() - 3))
  return min(cap, -(-n // step) * step)


def _rows_array(rows: Sequence[Sequence[int]], length: int, size: int) -> np.ndarray:
  """Token rows as [size, length] int32, padded with copies of the first row."""
  out = np.zeros((size, length), dtype=np.int32)
  for i in range(size):
    row = rows[i] if i < len(rows) else rows[0]
    out[i, :len(row)] = row
  return out


def shared_encoder_scorer(model: Any):
  """Rank-classification scores that encode each input once for all of its options.

  The same sum of target log-probs as `model.score_batch` (teacher forcing, no length
  normalisation), but the encoder, which dominates the cost (inputs are long, options
  short), runs on [E, Li] examples rather than on [E * K, Li] (example, option) rows.

  Returns:
    fn(params, {"encoder_input_tokens": [E, Li], "decoder_target_tokens": [E, K, Lt]})
    -> [E, K] float32; all-PAD option rows score 0.
  """
  module = model.module

  def score(params, batch):
    enc = batch["encoder_input_tokens"]  # [E, Li]
    tgt = batch["decoder_target_tokens"]  # [E, K, Lt]
    e, k, lt = tgt.shape
    encoded = module.apply({"params": params}, enc, enable_dropout=False,
                           method=module.encode)  # [E, Li, D]
    tgt = tgt.reshape(e * k, lt)  # [E*K, Lt]
    dec_in = jnp.pad(tgt[:, :-1], ((0, 0), (1, 0)))  # shifted right, 0 first
    logits = module.apply({"params": params}, jnp.repeat(encoded, k, axis=0),
                          jnp.repeat(enc, k, axis=0), dec_in, tgt, enable_dropout=False,
                          method=module.decode)  # [E*K, Lt, V]
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
    token = jnp.take_along_axis(log_probs, tgt[..., None], axis=-1)[..., 0]  # [E*K, Lt]
    return jnp.sum(token * (tgt != PAD_ID), axis=-1).reshape(e, k)

  return score


class ModelRunner:
  """Runs the model's scoring and decoding on fixed-shape batches sharded over "data".

  Every host builds the same global batch and hands `shard_batch` its own slice; outputs
  are replicated so that every host reads all of them. Rank classification encodes each
  input once (`shared_encoder_scorer`) when the model exposes its flax module, else calls
  `model.score_batch` on (example, option) rows.
  """

  def __init__(self, model: Any, mesh: jax.sharding.Mesh, batch_size: int, *,
               num_beams: int = 1, share_encoder: bool | None = None):
    partitioning.check_batch_size(batch_size, mesh)
    self.model, self.mesh, self.batch_size, self.num_beams = model, mesh, batch_size, num_beams
    self.shard_index, self.num_shards = partitioning.data_shard_info(mesh)
    self._unit = math.lcm(mesh.shape["data"], self.num_shards)
    if share_encoder is None:
      share_encoder = hasattr(getattr(model, "module", None), "encode")
    self.share_encoder = share_encoder
    replicated = NamedSharding(mesh, P())
    self._score = jax.jit(model.score_batch, out_shardings=replicated)
    if share_encoder:
      self._score_shared = jax.jit(shared_encoder_scorer(model), out_shardings=replicated)
    self._predict = functools.lru_cache(maxsize=None)(
        lambda length: jax.jit(functools.partial(model.predict_batch, max_decode_length=length,
                                                 num_beams=num_beams),
                               out_shardings=replicated))
    self.stats = collections.Counter()

  def place(self, params: Any) -> Any:
    """Puts parameters on the mesh as training shards them (no-op when they already are)."""
    try:
      shardings = partitioning.logical_to_sharding(self.model.param_logical_specs(),
                                                   self.mesh, shapes=params)
    except (AttributeError, TypeError, ValueError) as e:
      logging.warning("Parameter specs do not match the parameters (%s); replicating.", e)
      shardings = NamedSharding(self.mesh, P())
    return jax.device_put(params, shardings)

  def _global(self, batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    local = {}
    for k, v in batch.items():
      per_host = v.shape[0] // self.num_shards
      local[k] = v[self.shard_index * per_host:(self.shard_index + 1) * per_host]
    return partitioning.shard_batch(local, self.mesh)

  def score_options(self, params: Any, inputs: Sequence[Sequence[int]],
                    options: Sequence[Sequence[Sequence[int]]],
                    lengths: tuple[int, int]) -> list[list[float]]:
    """Rank classification: per example, the score of each of its options."""
    if not self.share_encoder:
      flat = [(i, o) for i, opts in enumerate(options) for o in opts]
      scores = self.score(params, [inputs[i] for i, _ in flat], [o for _, o in flat], lengths)
      out = [[] for _ in inputs]
      for (i, _), s in zip(flat, scores.tolist()):
        out[i].append(s)
      return out
    li, lt = lengths
    k = max(len(o) for o in options)
    # About batch_size (example, option) rows per batch, in whole examples per data shard.
    size = max(self._unit, self.batch_size // k // self._unit * self._unit)
    out = []
    for start in range(0, len(inputs), size):
      enc = _rows_array(inputs[start:start + size], li, size)  # [E, Li]
      tgt = np.zeros((size, k, lt), np.int32)  # [E, K, Lt]
      for e in range(size):
        src = start + e if start + e < len(options) else start  # padding: copy the first
        for j, o in enumerate(options[src]):
          tgt[e, j, :len(o)] = o
      batch = {"encoder_input_tokens": enc, "decoder_target_tokens": tgt}
      with partitioning.activation_rules(self.mesh):
        scores = np.asarray(self._score_shared(params, self._global(batch)))  # [E, K]
      n = min(size, len(inputs) - start)
      out.extend(scores[e, :len(options[start + e])].tolist() for e in range(n))
      self.stats["score_batches"] += 1
      self.stats["padding_rows"] += (size - n) * k
    return out

  def score(self, params: Any, inputs: Sequence[Sequence[int]],
            targets: Sequence[Sequence[int]], lengths: tuple[int, int]) -> np.ndarray:
    """Sum of target log-probs per row: [num_rows] float32."""
    li, lt = lengths
    out = []
    for start in range(0, len(inputs), self.batch_size):
      enc = _rows_array(inputs[start:start + self.batch_size], li, self.batch_size)
      tgt = _rows_array(targets[start:start + self.batch_size], lt, self.batch_size)
      dec_in = np.zeros_like(tgt)
      dec_in[:, 1:] = tgt[:, :-1]  # teacher forcing: targets shifted right, 0 first.
      batch = {"encoder_input_tokens": enc, "decoder_input_tokens": dec_in,
               "decoder_target_tokens": tgt,
               "decoder_loss_weights": (tgt != PAD_ID).astype(np.int32)}
      with partitioning.activation_rules(self.mesh):
        scores = np.asarray(self._score(params, self._global(batch)))  # [B]
      n = min(self.batch_size, len(inputs) - start)
      out.append(scores[:n])
      self.stats["score_batches"] += 1
      self.stats["padding_rows"] += self.batch_size - n
    return np.concatenate(out) if out else np.zeros((0,), np.float32)

  def predict(self, params: Any, inputs: Sequence[Sequence[int]], input_length: int,
              decode_length: int) -> list[list[int]]:
    """Generated tokens per row, cut at the first EOS."""
    out = []
    for start in range(0, len(inputs), self.batch_size):
      enc = _rows_array(inputs[start:start + self.batch_size], input_length, self.batch_size)
      blank = np.zeros((self.batch_size, decode_length), np.int32)  # [B, Ld]
      batch = {"encoder_input_tokens": enc, "decoder_input_tokens": blank,
               "decoder_target_tokens": blank, "decoder_loss_weights": blank}
      with partitioning.activation_rules(self.mesh):
        tokens = np.asarray(self._predict(decode_length)(params, self._global(batch)))
      n = min(self.batch_size, len(inputs) - start)
      for row in tokens[:n].tolist():
        row = row[:row.index(EOS_ID)] if EOS_ID in row else row
        out.append([t for t in row if t != PAD_ID])
      self.stats["predict_batches"] += 1
      self.stats["padding_rows"] += self.batch_size - n
    return out


class Tokenizer:
  """Vocabulary encoding with EOS and truncation, cached for repeated strings (options)."""

  def __init__(self, vocabulary: Any):
    self.vocabulary = vocabulary
    self.truncated = 0
    self._cache: dict[str, list[int]] = {}

  def ids(self, text: str) -> list[int]:
    if text not in self._cache:
      if len(self._cache) > 100_000:
        self._cache.clear()
      self._cache[text] = list(self.vocabulary.encode(text))
    return self._cache[text]

  def count(self, text: str) -> int:
    return len(self.vocabulary.encode(text))

  def with_eos(self, text: str, length: int) -> list[int]:
    ids = self.ids(text)
    if len(ids) > length - 1:
      self.truncated += 1
      ids = ids[:length - 1]
    return ids + [EOS_ID]

  def decode(self, ids: Sequence[int]) -> str:
    return self.vocabulary.decode(list(ids))


# ----------------------------------------------------------------------------- one template


def _references(fields: Mapping[str, Any], template: templates_lib.Template,
                target: str) -> list[str]:
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


def evaluate_template(runner: ModelRunner, params: Any, tokenizer: Tokenizer, dataset: str,
                      template_idx: int, split_examples: Sequence[Mapping[str, Any]],
                      train_examples: Sequence[Mapping[str, Any]], options: EvalOptions,
                      split: str = "test") -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """Evaluates one template on one split.

  Returns:
    (summary with kind, metrics, score, num_examples; one record per example for the
    predictions file).
  """
  if not split_examples:
    raise ValueError(f"No {split} examples of {dataset!r} to evaluate.")
  spec = datasets_lib.get(dataset)
  template = examples_lib.get_templates(dataset)[template_idx]
  li, lt = options.feature_lengths["inputs"], options.feature_lengths["targets"]
  prompts, targets, shots = [], [], []
  for fields in split_examples:
    inputs, target = examples_lib.render_example(dataset, fields, template_idx,
                                                 options.template_mode)
    if options.num_shots:
      inputs, kept = few_shot.few_shot_inputs(
          dataset, fields, template_idx, inputs, train_examples, options.num_shots,
          seed=options.seed, count_tokens=tokenizer.count, max_tokens=li - 1,
          mode=options.template_mode)
      shots.append(kept)
    prompts.append(inputs)
    targets.append(target)
  enc = [tokenizer.with_eos(p, li) for p in prompts]
  input_length = padded_length(max(len(e) for e in enc), li)
  records = [{"dataset": dataset, "template": template_idx, "split": split,
              "example_id": f["example_id"], "inputs": p, "target": t}
             for f, p, t in zip(split_examples, prompts, targets)]
  if shots:
    for r, k in zip(records, shots):
      r["num_shots"] = k

  turned_around = is_turned_around(dataset, template_idx)
  names = TURNED_AROUND_METRICS if turned_around else spec.metrics
  if spec.classification and not turned_around:
    kind = "rank_classification"
    option_ids = [[tokenizer.with_eos(templates_lib.fill(template.target,
                                                        {**fields, "answer": option}), lt)
                   for option in fields["options"]] for fields in split_examples]
    target_length = padded_length(max(len(o) for opts in option_ids for o in opts), lt)
    per_example = runner.score_options(params, enc, option_ids, (input_length, target_length))
    predictions = [f["options"][int(np.argmax(s))] for f, s in zip(split_examples, per_example)]
    values = metrics_lib.classification_scores(spec.metrics, split_examples, predictions)
    for r, f, s, pred in zip(records, split_examples, per_example, predictions):
      r.update(options=list(f["options"]), scores=s, prediction=pred,
               correct=pred in examples_lib.correct_answers(f))
  else:
    kind = "generation_turned_around" if turned_around else "generation"
    tokens = runner.predict(params, enc, input_length, options.decode_length)
    predictions = [tokenizer.decode(t) for t in tokens]
    refs = [_references(f, template, t) for f, t in zip(split_examples, targets)]
    values = metrics_lib.generation_scores(names, refs, predictions)
    for r, ref, pred in zip(records, refs, predictions):
      r.update(references=ref, prediction=pred,
               correct=pred.strip() in [x.strip() for x in ref])
  for r in records:
    r["kind"] = kind
  summary = {"kind": kind, "num_examples": len(split_examples), "metrics": values,
             "score": metrics_lib.primary(names, values)}
  if shots:
    summary["mean_shots"] = float(np.mean(shots))
  return summary, records


# ----------------------------------------------------------------------------- drivers


def load_dataset_splits(dataset: str, data_dir: str | None, options: EvalOptions
                        ) -> dict[str, list[dict[str, Any]]]:
  """test, validation (possibly empty) and, for few-shot, train examples of `dataset`."""
  cap = options.max_examples
  out = {}
  for split in ("test", "validation") + (("train",) if options.num_shots else ()):
    rows = examples_lib.load_examples(dataset, split, data_dir)
    out[split] = rows if cap is None or split == "train" else rows[:cap]
  return out


def evaluate_model(runner: ModelRunner, params: Any, tokenizer: Tokenizer, label: str,
                   data: Mapping[str, Mapping[str, Any]], options: EvalOptions
                   ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """Evaluates one set of parameters on every loaded dataset and template."""
  start = time.perf_counter()
  total = 0
  for name, d in data.items():
    if d.get("examples") and d["examples"]["test"]:
      n = len(examples_lib.get_templates(name)[:options.num_templates])
      total += n * (len(d["examples"]["test"]) + len(d["examples"]["validation"]))
  progress = report.Progress(label, total)
  results, records = {}, []
  for name, d in data.items():
    if not d.get("examples") or not d["examples"]["test"]:
      results[name] = {"status": "missing", "error": d.get("error", "no test examples")}
      continue
    templates = []
    for i, template in enumerate(examples_lib.get_templates(name)[:options.num_templates]):
      entry = {"template": i, "input": template.input, "target": template.target}
      for split in ("test", "validation"):
        rows = d["examples"][split]
        if not rows:
          entry[split] = None
          continue
        summary, recs = evaluate_template(runner, params, tokenizer, name, i, rows,
                                          d["examples"].get("train", ()), options, split)
        entry[split] = summary
        records.extend(dict(r, model=label) for r in recs)
        progress.update(len(rows), f"{name} t{i} {split} score={summary['score']:.1f}")
      entry["kind"] = entry["test"]["kind"]
      entry["counted"] = entry["kind"] != "generation_turned_around"
      templates.append(entry)
    results[name] = {"status": "ok", "metrics": list(datasets_lib.get(name).metrics),
                     "num_test_examples": len(d["examples"]["test"]),
                     "num_dev_examples": len(d["examples"]["validation"]),
                     "templates": templates, **report.summarize_dataset(templates)}
  seconds = time.perf_counter() - start
  return {"datasets": results, "cluster": report.summarize_cluster(results), "seconds": seconds,
          "example_templates_per_second": progress.done / max(seconds, 1e-9)}, records


def evaluate_cluster(model: Any, params: Any, mesh: jax.sharding.Mesh, *, cluster: str,
                     vocabulary: Any, data_dir: str | None, feature_lengths: Mapping[str, int],
                     output_dir: str | None, batch_size: int, baseline_params: Any = None,
                     num_shots: int = 0, seed: int = 0, num_beams: int = 1,
                     max_decode_length: int | None = None, num_templates: int | None = None,
                     max_examples: int | None = None, datasets: Sequence[str] | None = None,
                     template_mode: str = "instructions",
                     metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """Evaluates the held-out `cluster` (and a zero-shot baseline) and writes the report.

  Args:
    model: an `EncoderDecoderModel` (score_batch, predict_batch, param_logical_specs).
    params: the instruction-tuned parameters.
    mesh: the training mesh; batches split over its "data" axis.
    cluster: a name from `flan.clusters.CLUSTERS`.
    vocabulary: the seqio vocabulary the model was trained with.
    data_dir: TFDS data_dir.
    feature_lengths: {"inputs", "targets"} token lengths.
    output_dir: where results.json, results.md, the chart and predictions go (None: only
      return the results).
    batch_size: rows per batch (a multiple of the mesh's data-parallel size).
    baseline_params: parameters of the initial checkpoint, evaluated the same way.
    num_shots, seed, num_beams, max_decode_length, num_templates, max_examples,
      template_mode: see `EvalOptions`.
    datasets: restrict to these members of the cluster.
    metadata: recorded as-is in results.json (checkpoint paths, step, ...).

  Returns:
    The results dict written to `output_dir/results.json`.
  """
  members = clusters_lib.members(cluster)
  if datasets:
    unknown = sorted(set(datasets) - set(members))
    if unknown:
      raise ValueError(f"Datasets {unknown} are not in cluster {cluster!r}, whose members "
                       f"are: {', '.join(members)}.")
    members = tuple(m for m in members if m in datasets)
  options = EvalOptions(dict(feature_lengths), num_shots, seed, num_beams, max_decode_length,
                        num_templates, max_examples, template_mode)
  data = {}
  for name in members:
    try:
      data[name] = {"examples": load_dataset_splits(name, data_dir, options)}
    except (examples_lib.DataNotPreparedError, ValueError) as e:
      logging.warning("Skipping %s: %s", name, str(e).splitlines()[0])
      data[name] = {"error": str(e)}
  runner = ModelRunner(model, mesh, batch_size, num_beams=num_beams)
  tokenizer = Tokenizer(vocabulary)
  models, records = {}, []
  for label, p in (("tuned", params), ("baseline", baseline_params)):
    if p is None:
      continue
    models[label], recs = evaluate_model(runner, params=runner.place(p), tokenizer=tokenizer,
                                         label=label, data=data, options=options)
    records.extend(recs)
  results = {"cluster": cluster, "datasets": list(members),
             "options": {**dataclasses.asdict(options), "batch_size": batch_size,
                         "mesh": dict(mesh.shape)},
             "metadata": dict(metadata or {}), "models": models,
             "stats": {**runner.stats, "truncated_inputs_or_targets": tokenizer.truncated}}
  if output_dir and jax.process_index() == 0:
    report.write_all(output_dir, results, records)
  return results

