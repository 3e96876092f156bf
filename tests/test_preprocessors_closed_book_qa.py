"""Closed-book QA preprocessors (ARC, Natural Questions, TriviaQA) and their templates."""

import pytest
import tensorflow_datasets as tfds

from flan.data import preprocessors

DATASETS = ("arc", "natural_questions", "trivia_qa")


def test_arc_answer_is_the_choice_labelled_with_the_answer_key():
  example = {
    "question": "Which is a gas?",
    "answerKey": 2,
    "choices": {"label": [0, 1, 2, 3], "text": ["ice", "iron", "steam", "wood"]},
  }
  fields = preprocessors.get("arc")(example)
  assert fields == {
    "question": "Which is a gas?",
    "options": ["ice", "iron", "steam", "wood"],
    "answer": "steam",
  }


def test_arc_drops_an_answer_key_that_matches_no_choice():
  example = {
    "question": "Q?",
    "answerKey": 4,
    "choices": {"label": [0, 1, 2, 3], "text": ["a", "b", "c", "d"]},
  }
  assert preprocessors.get("arc")(example) is None


def test_natural_questions_turns_the_query_into_a_question_and_keeps_all_answers():
  fields = preprocessors.get("natural_questions")(
    {"question": "who wrote hamlet", "answer": ["Shakespeare", " William Shakespeare "]}
  )
  assert fields == {
    "question": "Who wrote hamlet?",
    "answer": "Shakespeare",
    "references": ["Shakespeare", "William Shakespeare"],
  }
  assert preprocessors.get("natural_questions")({"question": "q", "answer": []}) is None


def test_trivia_qa_targets_the_value_and_references_every_alias():
  fields = preprocessors.get("trivia_qa")(
    {
      "question": "Capital of France?",
      "answer": {"value": "Paris", "aliases": ["Paris", "City of Light"]},
    }
  )
  assert fields["answer"] == "Paris"
  assert fields["references"] == ["Paris", "City of Light"]


@pytest.mark.realdata
def test_arc_challenge_real_example_gets_its_keyed_answer(data_dir):
  ds = tfds.load("ai2_arc/ARC-Challenge:1.0.0", split="train", data_dir=data_dir)
  pp = preprocessors.get("arc")
  for example in tfds.as_numpy(ds):
    example = preprocessors.decode(example)
    if example["question"].startswith("Alan is using cabbage juice"):
      fields = pp(example)
      assert fields["answer"] == "Record observations and data in a journal"
      assert len(fields["options"]) == 4
      return
  pytest.fail("the cabbage-juice question is not in the ARC-Challenge sample")
