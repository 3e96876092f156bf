"""Translation preprocessors (ParaCrawl en-es, WMT'14 en-fr, WMT'16 xx-en) and templates."""

import pytest

from flan.data import preprocessors
from flan.data import templates as templates_lib
from flan.data.preprocessors import text, translation

DATASETS = tuple(translation.PAIRS)


def test_pair_names_the_other_language_and_keeps_both_sides():
  fields = preprocessors.get("wmt16_deen")({"de": "Guten Tag.", "en": "Good day ."})
  assert fields == {"en": "Good day.", "xx": "Guten Tag.", "xx_language": "German"}
  assert preprocessors.get("para_crawl_enes")({"en": "Hi", "es": " "}) is None


@pytest.mark.parametrize("dataset", DATASETS)
def test_half_the_templates_translate_into_english_and_half_out_of_it(dataset):
  targets = [t.target for t in templates_lib.load(dataset)]
  assert targets.count("{en}") == 5 and targets.count("{xx}") == 5


def test_detokenize_joins_tokenized_english_and_leaves_clean_text_alone():
  assert text.detokenize("a person , who is ( not at all ) here ; we do n't know it 's true .") == (
    "a person, who is (not at all) here; we don't know it's true."
  )
  clean = 'He said: "Yes, it\'s (mostly) fine."'
  assert text.detokenize(clean) == clean
