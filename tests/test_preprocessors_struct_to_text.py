"""Structure-to-text preprocessors (GEM CommonGen, DART, E2E, WebNLG) and their templates."""

import pytest

from flan.data import preprocessors
from flan.data import templates as templates_lib

DATASETS = ("common_gen", "dart", "e2e_nlg", "web_nlg_en")


def test_gem_train_example_without_references_references_its_target():
  fields = preprocessors.get("common_gen")(
    {"concepts": ["dog", "run"], "target": "A dog runs.", "references": []}
  )
  assert fields == {"concepts": "dog, run", "answer": "A dog runs.", "references": ["A dog runs."]}


def test_gem_eval_example_keeps_every_reference():
  fields = preprocessors.get("e2e_nlg")(
    {
      "meaning_representation": "name[X], food[Thai]",
      "target": "X serves Thai food.",
      "references": ["X serves Thai food.", "Thai food is served at X."],
    }
  )
  assert fields["answer"] == "X serves Thai food."
  assert fields["references"] == ["X serves Thai food.", "Thai food is served at X."]


def test_gem_example_without_any_target_is_dropped():
  assert (
    preprocessors.get("web_nlg_en")({"input": ["A | b | C"], "target": "", "references": []})
    is None
  )


def test_web_nlg_triples_lose_dbpedia_underscores():
  fields = preprocessors.get("web_nlg_en")(
    {
      "input": ["AFC_Ajax | manager | Frank_de_Boer", "Frank_de_Boer | club | Ajax"],
      "target": "Frank de Boer manages AFC Ajax.",
      "references": [],
    }
  )
  assert fields["triples"] == "AFC Ajax | manager | Frank de Boer; Frank de Boer | club | Ajax"


@pytest.mark.parametrize("dataset", DATASETS)
def test_main_templates_target_the_answer_and_turned_around_ones_come_last(dataset):
  targets = [t.target for t in templates_lib.load(dataset)]
  main = [t == "{answer}" for t in targets]
  assert main[0] and sum(main) >= 8
  assert main == sorted(main, reverse=True)  # the turned-around templates are at the end
