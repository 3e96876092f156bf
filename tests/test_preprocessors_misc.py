"""Misc. preprocessors (CoQA, QuAC, TREC, CoLA, WiC, Math, Fix Punctuation) and templates."""

import pytest
import tensorflow_datasets as tfds

from flan.data import preprocessors
from flan.data import templates as templates_lib
from flan.data.preprocessors import misc

DATASETS = ("coqa", "quac", "trec", "cola", "wic", "math_dataset", "fix_punct")


@pytest.mark.parametrize("dataset", DATASETS)
def test_templates_are_ten_and_only_marked_ones_are_turned_around(dataset):
  templates = templates_lib.load(dataset)
  assert len(templates) == 10
  main_target = templates[0].target
  turned = [i for i, t in enumerate(templates) if t.target != main_target]
  assert turned == list(range(10 - len(turned), 10)) and len(turned) <= 3


def test_coqa_asks_the_last_answerable_question_after_the_earlier_turns():
  fields = preprocessors.get("coqa")(
    {
      "source": "mctest",
      "story": "Ann has a red cat.  It sleeps a lot.",
      "questions": ["Who has a cat?", "What color?", "Is it a dog?"],
      "answers": {
        "input_text": ["Ann", "red", "unknown"],
        "answer_start": [0, 0, -1],
        "answer_end": [3, 3, -1],
      },
    }
  )
  assert fields == {
    "story": "Ann has a red cat. It sleeps a lot.",
    "history": "Q: Who has a cat?\nA: Ann",
    "question": "What color?",
    "answer": "red",
  }


def test_coqa_single_turn_gets_a_placeholder_history_and_unanswerable_is_dropped():
  pp = preprocessors.get("coqa")
  row = {
    "source": "",
    "story": "A story.",
    "questions": ["Q?"],
    "answers": {"input_text": ["A"], "answer_start": [0], "answer_end": [1]},
  }
  assert pp(row)["history"] == misc.NO_HISTORY
  assert pp({**row, "answers": {"input_text": ["unknown"]}}) is None
  assert pp({**row, "questions": []}) is None


def test_quac_strips_cannotanswer_keeps_distinct_references_and_drops_unanswerable():
  pp = preprocessors.get("quac")
  row = {
    "context": "He was born in 1950. CANNOTANSWER",
    "question": "When was he born?",
    "orig_answer": {"text": "in 1950", "answer_start": 11},
    "answers": {"text": ["in 1950", "1950", "CANNOTANSWER"], "answer_start": [11, 14, 21]},
    "title": "Someone",
    "section_title": "Early life",
    "background": "A singer.",
    "followup": "y",
    "yesno": "x",
  }
  fields = pp(row)
  assert fields["context"] == "He was born in 1950."
  assert fields["answer"] == "in 1950" and fields["references"] == ["in 1950", "1950"]
  unanswerable = {
    **row,
    "orig_answer": {"text": "CANNOTANSWER", "answer_start": 21},
    "answers": {"text": ["CANNOTANSWER"], "answer_start": [21]},
  }
  assert pp(unanswerable) is None


def test_trec_uses_the_coarse_class_in_words_and_detokenizes():
  fields = preprocessors.get("trec")(
    {"text": "What is the capital of Peru ?", "label-coarse": 5, "label-fine": 0}
  )
  assert fields["question"] == "What is the capital of Peru?"
  assert fields["answer"] == "location" and len(fields["options"]) == 6


def test_cola_and_wic_labels_map_to_their_options():
  cola = preprocessors.get("cola")
  assert cola({"sentence": "John sounded very.", "label": 0, "idx": 0})["answer"] == "unacceptable"
  assert cola({"sentence": "x", "label": -1, "idx": 0}) is None
  wic = preprocessors.get("wic")(
    {"word": "bank", "sentence1": "A river bank.", "sentence2": "A savings bank.", "label": 0}
  )
  assert wic["options"] == ["no", "yes"] and wic["answer"] == "no"


def test_math_dataset_strips_bytes_repr_artefacts():
  fields = preprocessors.get("math_dataset")(
    {"question": "b'Solve 2*x = 4 for x.\\n'", "answer": "b'2\\n'"}
  )
  assert fields == {"question": "Solve 2*x = 4 for x.", "answer": "2"}
  clean = {"question": "Solve -3*a = 9 for a.", "answer": "-3"}
  assert preprocessors.get("math_dataset")(clean) == clean


def test_fix_punct_removes_sentence_punctuation_but_keeps_word_internal_marks():
  fields = preprocessors.get("fix_punct")(
    {"en": 'Well, I don\'t know: the "well-known" price is 3.5 euros (roughly)!', "da": "..."}
  )
  assert fields == {
    "unpunctuated": "Well I don't know the well-known price is 3.5 euros roughly",
    "sentence": 'Well, I don\'t know: the "well-known" price is 3.5 euros (roughly)!',
  }
  assert preprocessors.get("fix_punct")({"en": " ... ", "da": "x"}) is None


@pytest.mark.realdata
def test_real_trec_and_cola_rows_keep_their_labels(data_dir):
  ds = tfds.load("trec:1.0.0", split="train", data_dir=data_dir)
  rows = [preprocessors.decode(e) for e in tfds.as_numpy(ds)]
  row = next(r for r in rows if "Russian seaport" in r["text"])
  assert preprocessors.get("trec")(row)["answer"] == "location"
  ds = tfds.load("glue/cola:2.0.0", split="train", data_dir=data_dir)
  rows = [preprocessors.decode(e) for e in tfds.as_numpy(ds)]
  row = next(r for r in rows if r["sentence"] == "John sounded very.")
  assert preprocessors.get("cola")(row)["answer"] == "unacceptable"
