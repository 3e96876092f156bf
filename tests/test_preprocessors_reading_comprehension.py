"""Reading-comprehension preprocessors (BoolQ, DROP, MultiRC, OpenBookQA, SQuAD, CosmosQA,
ReCoRD) and their templates."""

import pytest
import tensorflow_datasets as tfds

from flan.data import preprocessors

DATASETS = ("bool_q", "drop", "multirc", "openbookqa", "squad", "cosmos_qa", "record")


def test_bool_q_label_one_is_yes_and_unlabelled_is_dropped():
  pp = preprocessors.get("bool_q")
  fields = pp({"passage": "Cats -- Cats purr.", "question": "do cats purr", "label": 1})
  assert fields == {
    "passage": "Cats -- Cats purr.",
    "question": "Do cats purr?",
    "options": ["no", "yes"],
    "answer": "yes",
  }
  assert pp({"passage": "p", "question": "q", "label": -1}) is None


def test_multirc_asks_whether_the_candidate_is_correct():
  fields = preprocessors.get("multirc")(
    {
      "paragraph": "P.",
      "question": "Q?",
      "answer": "A",
      "label": 0,
      "idx": {"paragraph": 3, "question": 7, "answer": 11},
    }
  )
  assert (fields["response"], fields["answer"], fields["question_id"]) == ("A", "no", "3-7")


def test_squad_drops_unanswerable_v2_questions_and_keeps_every_answer():
  pp = preprocessors.get("squad")
  base = {"title": "Notre_Dame", "context": "C.", "question": "Q?"}
  assert pp({**base, "is_impossible": True, "answers": {"text": []}}) is None
  fields = pp({**base, "is_impossible": False, "answers": {"text": ["x", "x", "y"]}})
  assert fields["title"] == "Notre Dame"
  assert (fields["answer"], fields["references"]) == ("x", ["x", "y"])


def test_cosmos_qa_detokenizes_options_and_picks_the_labelled_one():
  fields = preprocessors.get("cosmos_qa")(
    {
      "context": "You 're here .",
      "question": "Why ?",
      "label": 2,
      "answer0": "a .",
      "answer1": "b .",
      "answer2": "None of the above choices .",
      "answer3": "d .",
    }
  )
  assert fields["context"] == "You're here."
  assert fields["answer"] == "None of the above choices."
  assert fields["options"] == ["a.", "b.", "None of the above choices.", "d."]


def test_record_blanks_the_placeholder_and_marks_every_gold_entity():
  fields = preprocessors.get("record")(
    {
      "passage": "Body text.\n@highlight\nFirst point\n@highlight\nSecond point!",
      "query": "@placeholder said hello.",
      "entities": ["Ann", "Bob", "Ann Lee"],
      "answers": ["Ann Lee", "Ann"],
    }
  )
  assert fields["passage"] == "Body text.\n\nFirst point. Second point!"
  assert fields["query"] == "___ said hello."
  assert fields["options"] == ["Ann", "Bob", "Ann Lee"]
  assert (fields["answer"], fields["answers"]) == ("Ann Lee", ["Ann Lee", "Ann"])


def test_openbookqa_uses_the_fact_and_the_keyed_choice():
  fields = preprocessors.get("openbookqa")(
    {
      "fact1": "the sun heats the earth",
      "answerKey": 1,
      "question": {
        "stem": "The sun provides",
        "choice_A": "cold",
        "choice_B": "heat",
        "choice_C": "rain",
        "choice_D": "wind",
      },
    }
  )
  assert (fields["fact"], fields["answer"]) == ("the sun heats the earth", "heat")


@pytest.mark.realdata
def test_squad_keeps_answerable_v2_questions_only(data_dir):
  pp = preprocessors.get("squad")
  examples = [
    preprocessors.decode(e)
    for e in tfds.as_numpy(tfds.load("squad/v2.0:3.0.0", split="train", data_dir=data_dir))
  ]
  kept = [pp(e) for e in examples]
  assert [f is None for f in kept] == [bool(e["is_impossible"]) for e in examples]
  assert any(f is None for f in kept)
