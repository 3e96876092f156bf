"""Preprocessors and templates of the NLI, commonsense, sentiment and paraphrase clusters.

On TFDS mock data (random strings and labels, the data smoke runs use) every kept example
must render with all 10 templates of its dataset, emit only declared fields and answer with
one of its options. The realdata test does the same over every example of every split in
../shared, and a few hand-checked real examples pin the label mappings.
"""

from __future__ import annotations

import math
import re

import pytest

from flan.data import datasets as datasets_lib
from flan.data import preprocessors, templates
from flan.data.datasets import TRAIN_TAIL
from flan.data.preprocessors import commonsense, nli, paraphrase, sentiment, text

CLUSTERS = ("nli", "commonsense", "sentiment", "paraphrase")
DATASETS = tuple(d.name for d in datasets_lib.DATASETS if d.cluster in CLUSTERS)
MOCK_EXAMPLES = 30


def _splits(source: datasets_lib.Source) -> list[str]:
  splits = [source.train_split] if source.train_split else []
  return splits + [s for s in source.eval_splits if s != TRAIN_TAIL and s not in splits]


def _check(dataset: str, fields: dict) -> None:
  """Asserts the contract of one preprocessed example and renders every template."""
  spec = datasets_lib.get(dataset)
  declared = set(preprocessors.get(dataset).fields)
  assert set(fields) <= declared, f"{dataset}: undeclared fields {set(fields) - declared}"
  for key, value in fields.items():
    if key in preprocessors.LIST_FIELDS:
      assert isinstance(value, list) and all(isinstance(v, str) and v for v in value), key
    else:
      assert isinstance(value, str) and value == value.strip() and value, (key, value)
  if spec.classification:
    options = fields["options"]
    assert len(options) >= 2 and len(set(options)) == len(options), options
    assert fields["answer"] in options
  # Real values may hold braces of their own (QQP's LaTeX); only others count as leftovers.
  values = "\n".join(v for v in fields.values() if isinstance(v, str))
  for i, template in enumerate(templates.load(dataset)):
    inputs, targets = templates.render(template, fields)
    for rendered in (inputs, targets):
      leftover = [
        m.group(0) for m in templates.PLACEHOLDER.finditer(rendered) if m.group(0) not in values
      ]
      assert not leftover, f"{dataset} template {i}: {leftover} left in {rendered!r}"
    assert inputs.strip() and targets.strip(), f"{dataset} template {i}"
    if spec.classification and template.is_classification:
      assert targets == fields["answer"]
      assert templates.format_options(fields["options"]) in inputs


def _load(tfds_name: str, split: str, data_dir: str | None = None) -> list[dict]:
  import tensorflow_datasets as tfds

  ds = tfds.load(tfds_name, split=split, data_dir=data_dir)
  return [preprocessors.decode(ex) for ex in tfds.as_numpy(ds)]


# ----------------------------------------------------------------------------- fast checks


@pytest.mark.parametrize("dataset", DATASETS)
def test_templates_load_ten_and_start_with_a_classification_template(dataset):
  loaded = templates.load(dataset)
  assert len(loaded) == templates.NUM_TEMPLATES
  assert loaded[0].is_classification
  # Turned-around templates (if any) come last.
  kinds = [t.is_classification for t in loaded]
  assert kinds == sorted(kinds, reverse=True)


def test_detokenize_undoes_ptb_spacing_but_keeps_plain_text():
  assert text.detokenize("it 's a solid film , is n't it ? ") == "it's a solid film, isn't it?"
  assert text.detokenize("he said `` go ( now ) '' .") == 'he said "go (now)".'
  assert text.detokenize('they said " no way " and left') == 'they said "no way" and left'
  plain = 'She said "hi" and "bye", then left.\n\nA second paragraph: 3.5%.'
  assert text.detokenize(plain) == plain


def test_nli_label_orders_map_to_the_same_options():
  pair = {"premise": "A man sleeps.", "hypothesis": "A person rests."}
  cb_answers = [nli.cb({**pair, "label": i})["answer"] for i in range(3)]
  assert cb_answers == [nli.YES, nli.NO, nli.MAYBE]  # entailment, contradiction, neutral
  snli_answers = [nli.snli({**pair, "label": i})["answer"] for i in range(3)]
  assert snli_answers == [nli.YES, nli.MAYBE, nli.NO]  # entailment, neutral, contradiction
  assert nli.snli({**pair, "label": -1}) is None
  wnli = {"sentence1": "x", "sentence2": "y"}
  assert [nli.wnli({**wnli, "label": i})["answer"] for i in range(2)] == [nli.NO, nli.YES]
  assert nli.anli({"context": "c", "hypothesis": "h", "label": 2})["relation"] == "contradicts"


def test_sentiment140_drops_neutral_and_maps_polarity():
  tweet = {"text": "loving it &amp; more", "date": "", "query": "", "user": ""}
  assert sentiment.sentiment140({**tweet, "polarity": 2}) is None
  assert sentiment.sentiment140({**tweet, "polarity": 0})["answer"] == "negative"
  out = sentiment.sentiment140({**tweet, "polarity": 4})
  assert out["answer"] == "positive" and out["text"] == "loving it & more"


def test_reviews_lose_html_breaks_and_csv_escapes():
  imdb = sentiment.imdb_reviews({"text": "great film .<br /><br />go see it !", "label": 1})
  assert imdb == {
    "text": "great film.\n\ngo see it!",
    "options": ["negative", "positive"],
    "answer": "positive",
  }
  yelp = sentiment.yelp_polarity_reviews(
    {"text": 'he said \\""no\\"".\\n\\nbad service .', "label": 0}
  )
  assert yelp["text"] == 'he said "no".\n\nbad service.' and yelp["answer"] == "negative"


def test_story_cloze_label_is_one_based():
  story = {"context": "Four sentences.", "endings": ["End A.", "End B."]}
  assert commonsense.story_cloze({**story, "label": 1})["answer"] == "End A."
  assert commonsense.story_cloze({**story, "label": 2})["answer"] == "End B."
  assert commonsense.story_cloze({**story, "label": 0}) is None
  assert commonsense.story_cloze({**story, "label": -1}) is None


def test_hellaswag_drops_out_of_range_labels_and_empty_endings():
  ex = {
    "context": "[header] How to x [title] Do y.",
    "activity_label": "Home",
    "endings": ["a.", "b.", "c.", "d."],
    "label": 3,
    "source_id": "",
    "split_type": "",
  }
  assert commonsense.hellaswag(ex)["context"] == "How to x Do y."
  assert commonsense.hellaswag({**ex, "label": 4}) is None
  assert commonsense.hellaswag({**ex, "endings": []}) is None


def test_copa_connects_cause_with_because_and_effect_with_so():
  ex = {
    "premise": "The man grew old.",
    "choice1": "His hair turned gray.",
    "choice2": "He sold his belongings.",
    "question": "effect",
    "label": 0,
    "idx": 0,
  }
  out = commonsense.copa(ex)
  assert (out["question"], out["connector"], out["answer"]) == ("effect", "so", ex["choice1"])
  assert commonsense.copa({**ex, "question": "cause"})["connector"] == "because"


def test_stsb_rounds_score_into_options_and_keeps_exact_score():
  pair = {"sentence1": "a", "sentence2": "b", "idx": 0}
  out = paraphrase.stsb({**pair, "label": 4.800000190734863})
  assert (out["answer"], out["score"]) == ("5", "4.8")
  assert out["options"] == ["0", "1", "2", "3", "4", "5"]
  assert [paraphrase.round_score(s) for s in (0.0, 0.49, 0.5, 2.5, 5.0)] == [
    "0",
    "0",
    "1",
    "3",
    "5",
  ]
  assert paraphrase.stsb({**pair, "label": -1.0}) is None


# ----------------------------------------------------------------------------- real data


def _real_splits(tfds_name: str, data_dir: str) -> dict[str, int] | None:
  import tensorflow_datasets as tfds

  try:
    builder = tfds.builder(tfds_name, data_dir=data_dir)
  except Exception:  # pylint: disable=broad-except
    return None
  if not builder.is_prepared():
    return None
  return {name: info.num_examples for name, info in builder.info.splits.items()}


def _find(tfds_name: str, split: str, data_dir: str, **match) -> dict:
  for ex in _load(tfds_name, split, data_dir):
    if all(ex[k] == v for k, v in match.items()):
      return ex
  raise AssertionError(f"no {tfds_name} {split} example with {match}")


@pytest.mark.realdata
def test_known_real_examples_get_the_right_answers(data_dir):
  rte = nli.rte(_find("super_glue/rte", "train", data_dir, idx=55))
  assert rte["answer"] == "no"  # "Two British tanks ... were set alight" is not entailed
  cb = nli.cb(_find("super_glue/cb", "train", data_dir, idx=6))
  assert cb["answer"] == "yes" and cb["hypothesis"] == "it was three hours long"
  copa = commonsense.copa(_find("super_glue/copa", "train", data_dir, idx=39))
  assert copa["answer"] == "His hair turned gray." and copa["question"] == "effect"
  sst2 = sentiment.sst2(_find("glue/sst2", "train", data_dir, idx=386))
  assert sst2 == {
    "sentence": "it's a remarkably solid and subtly satirical tour de force.",
    "options": ["negative", "positive"],
    "answer": "positive",
  }
  stsb = paraphrase.stsb(_find("glue/stsb", "train", data_dir, idx=499))
  assert (stsb["answer"], stsb["score"]) == ("5", "4.8")
  mrpc = paraphrase.mrpc(_find("glue/mrpc", "train", data_dir, idx=499))
  assert mrpc["answer"] == "yes"


@pytest.mark.realdata
def test_real_stsb_scores_round_trip_and_reviews_are_clean(data_dir):
  for ex in _load("glue/stsb", "validation", data_dir):
    out = paraphrase.stsb(ex)
    assert math.isclose(float(out["score"]), ex["label"], abs_tol=1e-4)
    assert abs(float(out["score"]) - int(out["answer"])) <= 0.5
  for name, fn in (
    ("imdb_reviews/plain_text", sentiment.imdb_reviews),
    ("yelp_polarity_reviews", sentiment.yelp_polarity_reviews),
  ):
    for ex in _load(name, "test", data_dir):
      text = fn(ex)["text"]
      assert "<br" not in text and "\\n" not in text, text[:200]
      assert not re.search(r" [.,!?](\s|$)", text), text[:200]  # tokenized punctuation
