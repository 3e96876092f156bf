"""Evaluation metrics, by the names that `flan.data.datasets` lists for each dataset.

Every metric is a pure function of plain Python values (targets first, then predictions)
that returns a dict of floats on a 0-100 scale, as the FLAN and T5 papers report them.
They live with the data because a seqio task carries its metrics (as t5's task definitions
import t5's metrics): `flan.data.task_metrics` wraps them as the eval tasks' `metric_fns`
and `score_metric_fns`, which seqio's Evaluator and `flan.evaluation` both call. `get`
dispatches by name and `primary` picks the one number that stands for a dataset in the
per-cluster averages.

The reference implementations these follow: sacrebleu (BLEU), rouge-score (ROUGE), the
official SQuAD v1.1 and TriviaQA evaluation scripts (answer normalisation, EM and token
F1, max over the gold answers), SuperGLUE's MultiRC scoring (F1 over all answer options,
exact match per question) and ReCoRD scoring (max over the gold entities).
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np

Scores = dict[str, float]


def _check_lengths(targets: Sequence[Any], predictions: Sequence[Any]) -> None:
  if len(targets) != len(predictions):
    raise ValueError(
      f"{len(targets)} targets but {len(predictions)} predictions; each "
      "prediction must have exactly one target."
    )
  if not targets:
    raise ValueError("No examples to score: the metric needs at least one prediction.")


# ----------------------------------------------------------------------------- labels


def accuracy(targets: Sequence[Any], predictions: Sequence[Any]) -> Scores:
  """Percent of predictions equal to the target (or in it, when a target is a list/set).

  A list target holds every correct answer (ReCoRD entities, MultiRC-style answer sets).
  """
  _check_lengths(targets, predictions)
  hits = [
    p in t if isinstance(t, (list, tuple, set, frozenset)) else p == t
    for t, p in zip(targets, predictions)
  ]
  return {"accuracy": 100.0 * float(np.mean(hits))}


def _binary_f1(
  targets: Sequence[Hashable], predictions: Sequence[Hashable], positive: Hashable
) -> float:
  tp = sum(t == positive and p == positive for t, p in zip(targets, predictions))
  fp = sum(t != positive and p == positive for t, p in zip(targets, predictions))
  fn = sum(t == positive and p != positive for t, p in zip(targets, predictions))
  # No positive gold and no positive prediction: F1 is undefined; 0, as scikit-learn does.
  return 0.0 if tp == 0 else 2.0 * tp / (2 * tp + fp + fn)


def f1(
  targets: Sequence[Hashable], predictions: Sequence[Hashable], positive: Hashable = 1
) -> Scores:
  """F1 of the positive class (GLUE's MRPC and QQP: positive = "paraphrase")."""
  _check_lengths(targets, predictions)
  return {"f1": 100.0 * _binary_f1(targets, predictions, positive)}


def mean_f1(
  targets: Sequence[Hashable],
  predictions: Sequence[Hashable],
  labels: Sequence[Hashable] | None = None,
) -> Scores:
  """Unweighted mean of the per-class F1 (SuperGLUE's CB reports it over its 3 classes).

  Args:
    targets: gold labels.
    predictions: predicted labels.
    labels: the classes to average over (CB: all three, even if one is never seen);
      default: every label that occurs in targets or predictions.
  """
  _check_lengths(targets, predictions)
  if labels is None:
    labels = sorted(set(targets) | set(predictions), key=repr)
  return {
    "mean_f1": 100.0 * float(np.mean([_binary_f1(targets, predictions, label) for label in labels]))
  }


def _as_floats(values: Sequence[Any], what: str) -> np.ndarray:
  try:
    return np.asarray([float(v) for v in values], dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(
      f"Correlation metrics need numeric {what} (e.g. STS-B scores as '3.2'); got {e}."
    ) from None


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
  x, y = x - x.mean(), y - y.mean()
  denom = np.sqrt((x * x).sum() * (y * y).sum())
  # A constant series has no correlation; report 0 rather than NaN so tables stay finite.
  return 0.0 if denom == 0 else float((x * y).sum() / denom)


def _ranks(x: np.ndarray) -> np.ndarray:
  """Ranks with ties sharing their average rank (as Spearman's rho needs)."""
  order = np.argsort(x, kind="stable")
  ranks = np.empty(len(x), dtype=np.float64)
  sorted_x = x[order]
  start = 0
  while start < len(x):
    stop = start
    while stop + 1 < len(x) and sorted_x[stop + 1] == sorted_x[start]:
      stop += 1
    ranks[order[start : stop + 1]] = (start + stop) / 2.0
    start = stop + 1
  return ranks


def pearson(targets: Sequence[Any], predictions: Sequence[Any]) -> Scores:
  """Pearson correlation x 100 (STS-B); values are parsed as floats."""
  _check_lengths(targets, predictions)
  x, y = _as_floats(targets, "targets"), _as_floats(predictions, "predictions")
  return {"pearson": 100.0 * _pearson(x, y)}


def spearman(targets: Sequence[Any], predictions: Sequence[Any]) -> Scores:
  """Spearman rank correlation x 100 (STS-B): Pearson of the tie-averaged ranks."""
  _check_lengths(targets, predictions)
  x, y = _as_floats(targets, "targets"), _as_floats(predictions, "predictions")
  return {"spearman": 100.0 * _pearson(_ranks(x), _ranks(y))}


def matthews(targets: Sequence[Hashable], predictions: Sequence[Hashable]) -> Scores:
  """Matthews correlation x 100 (CoLA), the multiclass form (Gorodkin's R_K)."""
  _check_lengths(targets, predictions)
  labels = sorted(set(targets) | set(predictions), key=repr)
  index = {label: i for i, label in enumerate(labels)}
  confusion = np.zeros((len(labels), len(labels)), dtype=np.float64)  # [gold, predicted]
  for t, p in zip(targets, predictions):
    confusion[index[t], index[p]] += 1
  n = confusion.sum()
  correct = np.trace(confusion)
  gold, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
  cov_ty = correct * n - gold @ predicted
  cov_yy = n * n - predicted @ predicted
  cov_tt = n * n - gold @ gold
  denom = np.sqrt(cov_yy * cov_tt)
  return {"matthews": 0.0 if denom == 0 else 100.0 * float(cov_ty / denom)}


# ----------------------------------------------------------------------------- text


def _references(targets: Sequence[str | Sequence[str]]) -> list[list[str]]:
  """Each target as a non-empty list of reference strings."""
  refs = [[t] if isinstance(t, str) else list(t) for t in targets]
  for i, r in enumerate(refs):
    if not r:
      raise ValueError(
        f"Target {i} has no reference string; every example needs at least "
        "one (the preprocessor's `references` or its rendered target)."
      )
  return refs


def bleu(targets: Sequence[str | Sequence[str]], predictions: Sequence[str]) -> Scores:
  """Corpus BLEU with sacrebleu, T5's settings (13a-intl tokenisation, exp smoothing).

  A target may be a list of references; examples with fewer references than the most
  have their lists padded with their first reference, as sacrebleu needs equal streams.
  """
  _check_lengths(targets, predictions)
  import sacrebleu  # imported here: only translation needs it.

  refs = _references(targets)
  width = max(len(r) for r in refs)
  streams = [[r[i] if i < len(r) else r[0] for r in refs] for i in range(width)]
  score = sacrebleu.corpus_bleu(
    list(predictions),
    streams,
    smooth_method="exp",
    smooth_value=0.0,
    force=False,
    lowercase=False,
    tokenize="intl",
    use_effective_order=False,
  )
  return {"bleu": float(score.score)}


ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def _rouge_scorer():
  from rouge_score import rouge_scorer  # imported here: only summarisation needs it.

  return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge(targets: Sequence[str], predictions: Sequence[str]) -> Scores:
  """ROUGE-1/2/L F-measure x 100 (rouge-score, Porter stemming), mean over examples."""
  _check_lengths(targets, predictions)
  scorer = _rouge_scorer()
  totals = collections.defaultdict(float)
  for t, p in zip(targets, predictions):
    for name, s in scorer.score(t, p).items():
      totals[name] += s.fmeasure
  return {name: 100.0 * totals[name] / len(targets) for name in ROUGE_TYPES}


def multi_rouge(targets: Sequence[str | Sequence[str]], predictions: Sequence[str]) -> Scores:
  """ROUGE against several references (GEM): per example and ROUGE type, the best F."""
  _check_lengths(targets, predictions)
  scorer = _rouge_scorer()
  totals = collections.defaultdict(float)
  for refs, p in zip(_references(targets), predictions):
    per_ref = [scorer.score(r, p) for r in refs]
    for name in ROUGE_TYPES:
      totals[name] += max(s[name].fmeasure for s in per_ref)
  return {name: 100.0 * totals[name] / len(targets) for name in ROUGE_TYPES}


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
_TRIVIA_PUNCTUATION = frozenset(string.punctuation + "\u2018\u2019\u00b4`")


def normalize_squad(text: str) -> str:
  """SQuAD answer normalisation: lower case, drop punctuation and articles, squeeze spaces."""
  text = "".join(c for c in text.lower() if c not in _PUNCTUATION)
  return " ".join(_ARTICLES.sub(" ", text).split())


def normalize_trivia_qa(text: str) -> str:
  """TriviaQA answer normalisation: like SQuAD's, but underscores and punctuation
  (including typographic quotes) become spaces instead of vanishing."""
  text = text.replace("_", " ").lower()
  text = "".join(" " if c in _TRIVIA_PUNCTUATION else c for c in text)
  return " ".join(_ARTICLES.sub(" ", text).split())


def _token_f1(gold: str, prediction: str) -> float:
  gold_tokens, pred_tokens = gold.split(), prediction.split()
  common = collections.Counter(gold_tokens) & collections.Counter(pred_tokens)
  overlap = sum(common.values())
  if overlap == 0:
    return 0.0
  precision, recall = overlap / len(pred_tokens), overlap / len(gold_tokens)
  return 2 * precision * recall / (precision + recall)


def _qa_scores(
  targets: Sequence[str | Sequence[str]],
  predictions: Sequence[str],
  normalize: Callable[[str], str],
) -> Scores:
  _check_lengths(targets, predictions)
  em, f = [], []
  for refs, p in zip(_references(targets), predictions):
    p = normalize(p)
    golds = [normalize(r) for r in refs]
    em.append(max(float(g == p) for g in golds))
    f.append(max(_token_f1(g, p) for g in golds))
  return {"em": 100.0 * float(np.mean(em)), "f1": 100.0 * float(np.mean(f))}


def squad(targets: Sequence[str | Sequence[str]], predictions: Sequence[str]) -> Scores:
  """SQuAD exact match and token F1 x 100, each the max over the gold answers."""
  return _qa_scores(targets, predictions, normalize_squad)


def trivia_qa(targets: Sequence[str | Sequence[str]], predictions: Sequence[str]) -> Scores:
  """TriviaQA exact match and token F1 x 100, max over the answer aliases."""
  return _qa_scores(targets, predictions, normalize_trivia_qa)


def record(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> Scores:
  """ReCoRD: SQuAD-normalised EM and F1 against the deduplicated gold entities."""
  return _qa_scores(
    [list(dict.fromkeys(_references([t])[0])) for t in targets], predictions, normalize_squad
  )


def multirc(
  targets: Sequence[Hashable],
  predictions: Sequence[Hashable],
  groups: Sequence[Hashable],
  positive: Hashable = 1,
) -> Scores:
  """MultiRC: F1a (binary F1 over every answer option) and per-question exact match.

  Args:
    targets: per answer option, its gold label.
    predictions: per answer option, the predicted label.
    groups: per answer option, the question it belongs to; a question counts as exact
      only when all of its options are labelled right.
    positive: the label meaning "this answer is correct".
  """
  _check_lengths(targets, predictions)
  if len(groups) != len(targets):
    raise ValueError(f"{len(groups)} group ids for {len(targets)} MultiRC answers.")
  per_group = collections.defaultdict(list)
  for g, t, p in zip(groups, targets, predictions):
    per_group[g].append(t == p)
  return {
    "f1a": 100.0 * _binary_f1(targets, predictions, positive),
    "em": 100.0 * float(np.mean([all(v) for v in per_group.values()])),
  }


def _levenshtein(a: Sequence[str], b: Sequence[str]) -> int:
  previous = list(range(len(b) + 1))
  for i, x in enumerate(a, 1):
    current = [i]
    for j, y in enumerate(b, 1):
      current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
    previous = current
  return previous[-1]


def edit_distance(targets: Sequence[str], predictions: Sequence[str], lower: bool = True) -> Scores:
  """Word-level Levenshtein distance (FLAN's text-formatting metric, lower is better).

  Also reports `edit_similarity` = 100 * (1 - distance / max(words)), higher is better,
  so that the dataset can join per-cluster averages with the other scores.
  """
  _check_lengths(targets, predictions)
  distances, similarities = [], []
  for t, p in zip(targets, predictions):
    if lower:
      t, p = t.lower(), p.lower()
    t_words, p_words = t.split(), p.split()
    d = _levenshtein(t_words, p_words)
    distances.append(d)
    similarities.append(1.0 - d / max(len(t_words), len(p_words), 1))
  return {
    "mean_edit": float(np.mean(distances)),
    "edit_similarity": 100.0 * float(np.mean(similarities)),
  }


# ----------------------------------------------------------------------------- dispatch

METRICS: Mapping[str, Callable[..., Scores]] = {
  "accuracy": accuracy,
  "f1": f1,
  "mean_f1": mean_f1,
  "pearson": pearson,
  "spearman": spearman,
  "matthews": matthews,
  "bleu": bleu,
  "rouge": rouge,
  "multi_rouge": multi_rouge,
  "squad": squad,
  "trivia_qa": trivia_qa,
  "multirc": multirc,
  "record": record,
  "edit_distance": edit_distance,
}

# The key of each metric's output that stands for it in averages (all higher-is-better).
PRIMARY: Mapping[str, str] = {
  "accuracy": "accuracy",
  "f1": "f1",
  "mean_f1": "mean_f1",
  "pearson": "pearson",
  "spearman": "spearman",
  "matthews": "matthews",
  "bleu": "bleu",
  "rouge": "rouge1",
  "multi_rouge": "rouge1",
  "squad": "f1",
  "trivia_qa": "em",
  "multirc": "f1a",
  "record": "em",
  "edit_distance": "edit_similarity",
}


def get(name: str) -> Callable[..., Scores]:
  """The metric function called `name`."""
  try:
    return METRICS[name]
  except KeyError:
    raise KeyError(f"Unknown metric {name!r}; known metrics: {', '.join(METRICS)}.") from None


def primary(metric_names: Sequence[str], scores: Mapping[str, float]) -> float:
  """A dataset's headline score: the primary value of its first metric."""
  return float(scores[PRIMARY[metric_names[0]]])


# ----------------------------------------------------------------------------- per dataset


def _positive(options: Sequence[str]) -> str:
  """The positive option of a binary task: GLUE/SuperGLUE's label 1.

  Preprocessors list options in label order, so MRPC/QQP's "yes" (paraphrase) and
  MultiRC's "yes" (a correct answer) come second.
  """
  return options[1] if len(options) > 1 else options[0]


def classification_scores(
  names: Sequence[str], fields: Sequence[Mapping[str, Any]], predictions: Sequence[str]
) -> Scores:
  """A classification dataset's metrics, fed from its examples' fields.

  Args:
    names: the dataset's metric names.
    fields: the evaluated examples (preprocessor fields: `options`, `answer`, optional
      `answers`, `score` (STS-B's exact score), `question_id` (MultiRC's question)).
    predictions: the predicted option of each example.
  """
  answers = [f["answer"] for f in fields]
  options = fields[0]["options"]
  out = {}
  for name in names:
    if name in ("accuracy", "record"):
      gold = [list(f.get("answers") or [f["answer"]]) for f in fields]
      out.update(METRICS[name](gold, predictions))
    elif name == "f1":
      out.update(f1(answers, predictions, positive=_positive(options)))
    elif name == "mean_f1":
      out.update(mean_f1(answers, predictions, labels=options))
    elif name == "multirc":
      groups = [f.get("question_id", f["example_id"]) for f in fields]
      out.update(multirc(answers, predictions, groups, positive=_positive(options)))
    elif name in ("pearson", "spearman"):  # STS-B: against the exact gold score if kept.
      gold = [f.get("score", f["answer"]) for f in fields]
      out.update(METRICS[name](gold, predictions))
    else:  # matthews: label-valued.
      out.update(METRICS[name](answers, predictions))
  return out


def generation_scores(
  names: Sequence[str], references: Sequence[Sequence[str]], predictions: Sequence[str]
) -> Scores:
  """Dataset metrics of generated texts; `references[i]` lists example i's gold texts."""
  out = {}
  for name in names:
    if name in ("multi_rouge", "squad", "trivia_qa", "bleu", "record"):
      out.update(METRICS[name](references, predictions))
    elif name == "accuracy":
      out.update(
        accuracy(
          [[r.strip() for r in refs] for refs in references], [p.strip() for p in predictions]
        )
      )
    else:  # rouge, edit_distance: one reference (the first).
      out.update(METRICS[name]([refs[0] for refs in references], predictions))
  return out
