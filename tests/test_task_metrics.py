"""The eval tasks' seqio metric functions: what seqio's Evaluator and flan.evaluation both call."""

import pytest

from flan.data import datasets, task_metrics, templates


def _row(example_id, option_idx, fields):
  return {
    "metric_fields": task_metrics.metric_fields(fields, ()),
    "example_id": example_id,
    "option_idx": option_idx,
    "is_correct": int(fields["options"][option_idx] == fields["answer"]),
  }


def test_a_target_postprocesses_to_its_fields_and_a_prediction_stays_text():
  fields = {"options": ["yes", "no"], "answer": "no", "premise": "not carried"}
  target = task_metrics.postprocess("no", example=_row(7, 1, fields), is_target=True)
  assert target == {
    "options": ["yes", "no"],
    "answer": "no",
    "references": [],
    "example_id": 7,
    "option_idx": 1,
    "is_correct": 1,
  }
  assert task_metrics.postprocess(" no ", example=None, is_target=False) == " no "
  with pytest.raises(ValueError, match="metric_fields"):
    task_metrics.postprocess("no", example={}, is_target=True)


def test_rank_classification_picks_each_examples_best_option_first_on_a_tie():
  a = {"options": ["yes", "no"], "answer": "no"}
  b = {"options": ["yes", "no", "maybe"], "answer": "maybe"}
  rows = [_row(0, 0, a), _row(0, 1, a), _row(1, 0, b), _row(1, 1, b), _row(1, 2, b)]
  targets = [task_metrics.postprocess("", example=r, is_target=True) for r in rows]
  fields, best, scores = task_metrics.rank_predictions(targets, [-2.0, -1.0, -3.0, -3.0, -5.0])
  assert [f["example_id"] for f in fields] == [0, 1]
  assert best == [1, 0] and scores == [[-2.0, -1.0], [-3.0, -3.0, -5.0]]
  metric = task_metrics.rank_classification_metric(("accuracy",))
  assert metric(targets, [-2.0, -1.0, -3.0, -3.0, -5.0]) == {"accuracy": 50.0}
  assert metric(targets, [-2.0, -1.0, -3.0, -3.0, 0.0]) == {"accuracy": 100.0}


def test_generation_scores_decoded_text_against_every_reference():
  targets = [{"references": ["a dog runs", "the dog runs"]}, {"references": ["cats sleep"]}]
  metric = task_metrics.generation_metric(("squad",))
  assert metric(targets, ["the dog runs", "dogs bark"]) == pytest.approx({"em": 50.0, "f1": 50.0})


def test_a_template_is_ranked_generated_or_turned_around_by_its_target():
  nli = datasets.get("rte")
  shows = templates.Template("{premise} {hypothesis} {options}", "{answer}")
  writes = templates.Template("Write a hypothesis for: {premise}", "{hypothesis}")
  assert task_metrics.kind(nli, (shows, writes), 0) == task_metrics.RANK_CLASSIFICATION
  assert task_metrics.kind(nli, (shows, writes), 1) == task_metrics.TURNED_AROUND
  assert task_metrics.metric_names(nli, task_metrics.TURNED_AROUND) == ("rouge",)
  gen = datasets.get("common_gen")
  a, b = templates.Template("{concepts}", "{answer}"), templates.Template("{answer}", "{concepts}")
  assert task_metrics.kind(gen, (a, b), 0) == task_metrics.GENERATION
  assert task_metrics.kind(gen, (a, b), 1) == task_metrics.TURNED_AROUND
