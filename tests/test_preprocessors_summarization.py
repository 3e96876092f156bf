"""Summarization preprocessors (ten summarization sets and AG News) and their templates."""

import pytest
import tensorflow_datasets as tfds

from flan.data import preprocessors
from flan.data import templates as templates_lib
from flan.data.preprocessors import summarization

DATASETS = (
  "aeslc",
  "cnn_dailymail",
  "gigaword",
  "multi_news",
  "newsroom",
  "opinion_abstracts_idebate",
  "opinion_abstracts_rotten_tomatoes",
  "samsum",
  "xsum",
  "wiki_lingua_english_en",
  "ag_news_subset",
)


@pytest.mark.parametrize("dataset", DATASETS)
def test_templates_are_ten_and_only_the_last_two_are_turned_around(dataset):
  templates = templates_lib.load(dataset)
  assert len(templates) == 10
  assert len({t.target for t in templates[:8]}) == 1
  assert all(t.target != templates[0].target for t in templates[8:])


def test_cnn_highlights_become_one_paragraph():
  fields = preprocessors.get("cnn_dailymail")(
    {
      "article": "(CNN) -- Text.  More text.",
      "highlights": "First point.\nSecond point.",
      "id": "x",
      "publisher": "cnn",
    }
  )
  assert fields == {"article": "(CNN) -- Text. More text.", "summary": "First point. Second point."}


def test_gigaword_maps_ptb_escapes_back_and_reattaches_punctuation():
  fields = preprocessors.get("gigaword")(
    {
      "document": "the un -lrb- united nations -rrb- said `` no '' on monday , it 's over .",
      "summary": "un says no",
    }
  )
  assert fields["document"] == 'the un (united nations) said " no " on monday, it\'s over.'


def test_multi_news_splits_sources_into_paragraphs_and_drops_the_summary_dash():
  fields = preprocessors.get("multi_news")(
    {
      "document": "First story.\n ||||| Second story. |||||  ",
      "summary": "– Both stories happened.",
    }
  )
  assert fields == {
    "document": "First story.\n\nSecond story.",
    "summary": "Both stories happened.",
  }


def test_opinion_abstracts_flatten_the_nested_key_value_sequences():
  debate = preprocessors.get("opinion_abstracts_idebate")(
    {
      "_debate_name": "Ban cars",
      "_claim_id": "c1",
      "_claim": "Cars pollute.",
      "_argument_sentences": {"key": ["2", "10", "1"], "value": ["B.", "C.", "A."]},
    }
  )
  assert debate == {"topic": "Ban cars", "argument": "A. B. C.", "claim": "Cars pollute."}
  movie = preprocessors.get("opinion_abstracts_rotten_tomatoes")(
    {
      "_movie_name": "Film",
      "_movie_id": "m1",
      "_critic_consensus": "Fun.",
      "_critics": [
        {"key": "critic_a", "value": "Great."},
        {"key": "critic_b", "value": " "},
        {"key": "critic_c", "value": "Dull."},
      ],
    }
  )
  assert movie == {"movie": "Film", "reviews": "Great.\nDull.", "consensus": "Fun."}
  assert (
    preprocessors.get("opinion_abstracts_rotten_tomatoes")(
      {
        "_movie_name": "F",
        "_movie_id": "",
        "_critic_consensus": "Fun.",
        "_critics": {"key": [], "value": []},
      }
    )
    is None
  )


def test_samsum_turns_are_one_per_line_and_wiki_lingua_collects_references():
  fields = preprocessors.get("samsum")(
    {"dialogue": "A: hi\r\nB: hello", "summary": "Hi.", "id": ""}
  )
  assert fields["dialogue"] == "A: hi\nB: hello"
  wl = preprocessors.get("wiki_lingua_english_en")(
    {
      "source": "Do this. Then that.",
      "target": "Do this and that.",
      "references": ["Do this and that.", "Other ref."],
      "gem_id": "",
      "gem_parent_id": "",
    }
  )
  assert wl["summary"] == "Do this and that."
  assert wl["references"] == ["Do this and that.", "Other ref."]


def test_ag_news_cleans_source_entities_and_names_the_topic():
  fields = preprocessors.get("ag_news_subset")(
    {
      "title": "Stocks up",
      "label": 2,
      "description": "Reuters - AMD #39;s shares rose #36;5 as the dwindling\\band of bears fled.",
    }
  )
  assert fields["text"] == "Reuters - AMD's shares rose $5 as the dwindling band of bears fled."
  assert fields["answer"] == "Business"
  assert fields["options"] == list(summarization.AG_NEWS_TOPICS)


@pytest.mark.realdata
def test_real_aeslc_subject_is_stripped_of_its_newline(data_dir):
  ds = tfds.load("aeslc:1.0.0", split="test", data_dir=data_dir)
  rows = [preprocessors.decode(e) for e in tfds.as_numpy(ds)]
  row = next(r for r in rows if r["subject_line"] == "Fantasy NBA\n")
  assert preprocessors.get("aeslc")(row)["subject"] == "Fantasy NBA"
