"""Metrics on fixed predictions: reference libraries (sacrebleu, rouge-score, scipy) and
hand-computed cases."""

import math

import numpy as np
import pytest
import sacrebleu
import scipy.stats
from rouge_score import rouge_scorer

from flan.data import datasets, metrics


def test_every_metric_named_in_the_dataset_table_exists():
  names = {m for spec in datasets.DATASETS for m in spec.metrics}
  assert names <= set(metrics.METRICS)
  assert set(metrics.PRIMARY) == set(metrics.METRICS)


def test_accuracy_counts_exact_matches_and_membership_in_answer_lists():
  assert metrics.accuracy(["a", "b", "c", "d"], ["a", "b", "x", "y"]) == {"accuracy": 50.0}
  assert metrics.accuracy([["a", "b"], ["c"]], ["b", "d"]) == {"accuracy": 50.0}


def test_metrics_reject_mismatched_lengths_with_a_clear_message():
  with pytest.raises(ValueError, match="2 targets but 1 predictions"):
    metrics.accuracy(["a", "b"], ["a"])
  with pytest.raises(ValueError, match="No examples"):
    metrics.bleu([], [])


def test_f1_of_the_positive_class_hand_computed():
  # tp=2, fp=1, fn=1 -> F1 = 4 / 6.
  out = metrics.f1([1, 1, 1, 0, 0], [1, 1, 0, 1, 0], positive=1)
  assert out["f1"] == pytest.approx(100 * 4 / 6)
  assert metrics.f1(["no", "no"], ["no", "no"], positive="yes")["f1"] == 0.0


def test_cb_mean_f1_averages_three_classes_hand_computed():
  targets = ["entailment", "contradiction", "neutral", "entailment", "contradiction"]
  predictions = ["entailment", "contradiction", "entailment", "entailment", "neutral"]
  # entailment: tp=2 fp=1 fn=0 -> 0.8; contradiction: tp=1 fp=0 fn=1 -> 2/3; neutral: 0.
  out = metrics.mean_f1(targets, predictions, labels=["entailment", "contradiction", "neutral"])
  assert out["mean_f1"] == pytest.approx(100 * (0.8 + 2 / 3 + 0) / 3)


def test_mean_f1_counts_a_class_never_seen_as_zero_when_labels_are_given():
  out = metrics.mean_f1([0, 1, 0, 1], [0, 1, 0, 1], labels=[0, 1, 2])
  assert out["mean_f1"] == pytest.approx(100 * 2 / 3)
  assert metrics.mean_f1([0, 1, 0, 1], [0, 1, 0, 1])["mean_f1"] == pytest.approx(100.0)


def test_correlations_match_scipy_including_ties():
  rng = np.random.default_rng(0)
  targets = rng.integers(0, 6, size=40).astype(float)
  predictions = np.clip(targets + rng.integers(-2, 3, size=40), 0, 5)
  got_p = metrics.pearson([str(t) for t in targets], [str(p) for p in predictions])
  got_s = metrics.spearman(list(targets), list(predictions))
  assert got_p["pearson"] == pytest.approx(100 * scipy.stats.pearsonr(targets, predictions)[0])
  assert got_s["spearman"] == pytest.approx(100 * scipy.stats.spearmanr(targets, predictions)[0])


def test_correlation_of_constant_predictions_is_zero_not_nan():
  assert metrics.pearson([1, 2, 3], [2, 2, 2]) == {"pearson": 0.0}


def test_matthews_matches_the_binary_formula_and_perfect_agreement():
  t = [1, 1, 1, 0, 0, 0, 1, 0]
  p = [1, 0, 1, 0, 1, 0, 1, 0]
  tp, tn, fp, fn = 3, 3, 1, 1
  expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
  assert metrics.matthews(t, p)["matthews"] == pytest.approx(100 * expected)
  assert metrics.matthews(["a", "b", "c"], ["a", "b", "c"])["matthews"] == pytest.approx(100)


def test_bleu_matches_sacrebleu_metric_object():
  targets = [
    "The cat sat on the mat.",
    "There is a dog in the garden today.",
    "I like green apples very much.",
  ]
  predictions = [
    "The cat sat on a mat.",
    "A dog is in the garden today.",
    "I like apples very much.",
  ]
  reference = sacrebleu.metrics.BLEU(tokenize="intl", smooth_method="exp")
  expected = reference.corpus_score(predictions, [targets]).score
  assert metrics.bleu(targets, predictions)["bleu"] == pytest.approx(expected)
  assert metrics.bleu(targets, targets)["bleu"] == pytest.approx(100.0)


def test_rouge_matches_rouge_score_and_a_hand_computed_case():
  # "the cat" against "the cat sat": P = 1, R = 2/3 -> F = 0.8 for ROUGE-1 and ROUGE-L.
  out = metrics.rouge(["the cat sat"], ["the cat"])
  assert out["rouge1"] == pytest.approx(80.0)
  assert out["rougeL"] == pytest.approx(80.0)
  assert out["rouge2"] == pytest.approx(100 * 2 * (1 * 0.5) / 1.5)
  targets = ["police killed the gunman in the street", "markets rallied after the news"]
  predictions = ["the gunman was killed by police", "the news made markets rally"]
  scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
  ref = [scorer.score(t, p) for t, p in zip(targets, predictions)]
  got = metrics.rouge(targets, predictions)
  for name in ("rouge1", "rouge2", "rougeL"):
    assert got[name] == pytest.approx(100 * np.mean([r[name].fmeasure for r in ref]))


def test_multi_rouge_takes_the_best_reference_per_example():
  targets = [["a dog runs in the park", "the cat sat on the mat"], ["blue sky"]]
  predictions = ["the cat sat on the mat", "red sky"]
  got = metrics.multi_rouge(targets, predictions)
  # Example 1 matches its second reference exactly; example 2: P = R = 1/2.
  assert got["rouge1"] == pytest.approx(100 * (1.0 + 0.5) / 2)
  scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
  for name in ("rouge1", "rouge2", "rougeL"):
    ref = np.mean([scorer.score_multi(t, p)[name].fmeasure for t, p in zip(targets, predictions)])
    assert got[name] == pytest.approx(100 * ref)


def test_squad_normalisation_em_and_f1_hand_computed():
  assert metrics.normalize_squad("The  Eiffel-Tower!") == "eiffeltower"
  out = metrics.squad(
    [["Eiffel Tower", "the tower"], ["Paris, France"]], ["the Eiffel Tower.", "in Paris"]
  )
  # Ex 1: exact after normalisation. Ex 2: tokens {in, paris} vs {paris, france}:
  # P = R = 1/2 -> F1 = 1/2, EM = 0.
  assert out["em"] == pytest.approx(50.0)
  assert out["f1"] == pytest.approx(100 * (1.0 + 0.5) / 2)


def test_trivia_qa_normalisation_turns_punctuation_and_underscores_into_spaces():
  assert metrics.normalize_trivia_qa("Eiffel-Tower_Paris") == "eiffel tower paris"
  assert metrics.normalize_trivia_qa("\u2018The Beatles\u2019") == "beatles"
  out = metrics.trivia_qa([["Eiffel Tower"]], ["eiffel-tower"])
  assert out == {"em": 100.0, "f1": 100.0}
  # SQuAD's normalisation deletes the hyphen and so does not match.
  assert metrics.squad([["Eiffel Tower"]], ["eiffel-tower"])["em"] == 0.0


def test_record_takes_the_max_over_deduplicated_entities():
  out = metrics.record([["Barack Obama", "Obama", "Obama"], ["NASA"]], ["Obama", "ESA"])
  assert out == {"em": 50.0, "f1": 50.0}


def test_multirc_f1a_and_exact_match_per_question_group():
  groups = [0, 0, 0, 1, 1, 2]
  targets = [1, 0, 1, 1, 0, 0]
  predictions = [1, 0, 1, 0, 0, 1]
  out = metrics.multirc(targets, predictions, groups, positive=1)
  # tp=2 fp=1 fn=1 -> F1a = 2/3; only question 0 is entirely right -> EM = 1/3.
  assert out["f1a"] == pytest.approx(100 * 2 / 3)
  assert out["em"] == pytest.approx(100 / 3)


def test_edit_distance_is_word_level_and_case_insensitive():
  out = metrics.edit_distance(
    ["Hello, world. How are you?", "a b c"], ["hello, world how are you?", "a b c"]
  )
  # "world." -> "world": one substitution over 5 words; second example is exact.
  assert out["mean_edit"] == pytest.approx(0.5)
  assert out["edit_similarity"] == pytest.approx(100 * (0.8 + 1.0) / 2)


def test_primary_uses_the_first_metric_of_a_dataset():
  scores = {**metrics.accuracy([1, 0], [1, 1]), **metrics.f1([1, 0], [1, 1])}
  assert metrics.primary(("accuracy", "f1"), scores) == 50.0
  assert metrics.primary(("f1",), scores) == pytest.approx(100 * 2 / 3)


def test_classification_scores_feed_each_metric_from_the_example_fields():
  yes_no = ["no", "yes"]
  mrpc = [{"options": yes_no, "answer": a} for a in ("yes", "yes", "no", "no")]
  out = metrics.classification_scores(("accuracy", "f1"), mrpc, ["yes", "no", "yes", "no"])
  # Positive = "yes" (label 1): tp=1 fp=1 fn=1 -> F1 = 1/2.
  assert out == {"accuracy": 50.0, "f1": pytest.approx(50.0)}
  multirc = [
    {"options": yes_no, "answer": a, "question_id": q, "example_id": i}
    for i, (a, q) in enumerate([("yes", "0-0"), ("no", "0-0"), ("yes", "0-1")])
  ]
  out = metrics.classification_scores(("multirc",), multirc, ["yes", "no", "no"])
  assert out["em"] == pytest.approx(50.0) and out["f1a"] == pytest.approx(100 * 2 / 3)
  stsb = [
    {"options": list("012345"), "answer": a, "score": s}
    for a, s in (("1", "1.2"), ("3", "2.6"), ("4", "4.4"))
  ]
  got = metrics.classification_scores(("pearson",), stsb, ["1", "3", "4"])["pearson"]
  assert got == pytest.approx(100 * scipy.stats.pearsonr([1.2, 2.6, 4.4], [1, 3, 4])[0])
  record = [{"options": ["A", "B", "C"], "answer": "A", "answers": ["A", "B"]}]
  assert metrics.classification_scores(("accuracy",), record, ["B"]) == {"accuracy": 100.0}


def test_generation_scores_use_all_references_where_the_metric_takes_several():
  refs = [["Eiffel Tower", "the tower"], ["Paris"]]
  out = metrics.generation_scores(("trivia_qa",), refs, ["the tower", "paris"])
  assert out == {"em": 100.0, "f1": 100.0}
  out = metrics.generation_scores(("rouge",), [["a b c", "x y z"]], ["x y z"])
  assert out["rouge1"] == 0.0  # single-reference ROUGE scores against the first
  assert metrics.generation_scores(("accuracy",), [[" 7 "]], ["7"]) == {"accuracy": 100.0}
