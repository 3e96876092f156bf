"""Coreference preprocessors (DPR, WinoGrande, WSC) and their templates."""

import pytest
import tensorflow_datasets as tfds

from flan.data import preprocessors
from flan.data import templates as templates_lib

DATASETS = ("definite_pronoun_resolution", "winogrande", "wsc")


@pytest.mark.parametrize("dataset", DATASETS)
def test_all_ten_templates_rank_the_options(dataset):
  templates = templates_lib.load(dataset)
  assert len(templates) == 10 and all(t.is_classification for t in templates)


def test_dpr_answer_is_the_labelled_candidate():
  fields = preprocessors.get("definite_pronoun_resolution")(
    {
      "sentence": "The bee landed on the flower because it had pollen.",
      "pronoun": "it",
      "candidates": ["The bee", "the flower"],
      "label": 1,
    }
  )
  assert fields["options"] == ["The bee", "the flower"] and fields["answer"] == "the flower"


def test_winogrande_maps_labels_to_options_and_drops_unlabelled_test_rows():
  pp = preprocessors.get("winogrande")
  row = {
    "sentence": "Ian ran faster than Dennis because _ trained more.",
    "option1": "Ian",
    "option2": "Dennis",
    "label": 0,
  }
  assert pp(row)["answer"] == "Ian"
  assert pp({**row, "label": 1})["answer"] == "Dennis"
  assert pp({**row, "label": -1}) is None


def test_wsc_asks_yes_no_about_span1_and_detokenizes_the_final_period():
  fields = preprocessors.get("wsc")(
    {
      "text": "The path to the lake was blocked, so we couldn't reach it .",
      "span1_text": "the lake",
      "span2_text": "it",
      "span1_index": 3,
      "span2_index": 11,
      "idx": 0,
      "label": 1,
    }
  )
  assert fields == {
    "text": "The path to the lake was blocked, so we couldn't reach it.",
    "noun": "the lake",
    "pronoun": "it",
    "options": ["no", "yes"],
    "answer": "yes",
  }


@pytest.mark.realdata
def test_real_wsc_row_keeps_its_label(data_dir):
  ds = tfds.load("super_glue/wsc.fixed:1.0.2", split="train", data_dir=data_dir)
  rows = [preprocessors.decode(e) for e in tfds.as_numpy(ds)]
  row = next(
    r for r in rows if r["text"].endswith("couldn't reach it .") and r["span1_text"] == "The path"
  )
  assert row["label"] == 0
  assert preprocessors.get("wsc")(row)["answer"] == "no"
