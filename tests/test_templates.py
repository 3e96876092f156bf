"""Template files: validation, rendering and the 62 shipped files (importer: test_replication)."""

import shutil

import pytest
import yaml

from flan.data import datasets as D
from flan.data import (
  preprocessors,
  tasks,  # registers the shipped templates before any test patches them.
)
from flan.data import templates as T

NLI = ("premise", "hypothesis", "options", "answer")


def _parse(items, fields=NLI, classification=True):
  return T.parse({"templates": items}, "x.yaml", fields, classification)


def test_unknown_field_names_file_template_index_and_field():
  items = [
    {"input": "{premise}\n{options}", "target": "{answer}"},
    {"input": "{premise} {nope}", "target": "{answer}"},
  ]
  with pytest.raises(T.TemplateError, match=r"x\.yaml: template 1: unknown field \{nope\}"):
    _parse(items)


def test_stray_brace_options_in_target_and_bad_shapes_are_rejected():
  with pytest.raises(T.TemplateError, match="stray brace"):
    _parse([{"input": "{premise} {", "target": "{answer}"}])
  with pytest.raises(T.TemplateError, match="stray brace"):
    _parse([{"input": "{ premise }", "target": "{answer}"}])
  with pytest.raises(T.TemplateError, match="belongs in the input"):
    _parse(
      [
        {"input": "{premise}\n{options}", "target": "{answer}"},
        {"input": "{premise}", "target": "{options}"},
      ]
    )
  with pytest.raises(T.TemplateError, match="expected string keys"):
    _parse([{"input": "{premise}"}])
  with pytest.raises(T.TemplateError, match="non-empty `templates:` list"):
    T.parse({"templates": []}, "x.yaml", NLI, True)


def test_classification_dataset_needs_an_options_template_first():
  with pytest.raises(T.TemplateError, match="template 0 of a classification dataset"):
    _parse([{"input": "{premise}", "target": "{answer}"}])
  # Generation datasets have no such rule; answers/references are never placeholders.
  _parse([{"input": "{premise}", "target": "{answer}"}], classification=False)
  with pytest.raises(T.TemplateError, match=r"unknown field \{references\}"):
    _parse(
      [{"input": "{references}", "target": "{answer}"}],
      fields=("answer", "references"),
      classification=False,
    )


def test_turned_around_templates_are_not_classification():
  assert T.Template("{premise}\n{options}", "{answer}").is_classification
  assert not T.Template("Write about {answer}.", "{premise}").is_classification
  assert not T.Template("{premise}", "{answer}").is_classification


def test_render_modes():
  t = T.Template("Premise: {premise}\nHypothesis: {hypothesis}\n{options}", "{answer}")
  fields = {
    "premise": "A cat sat.",
    "hypothesis": "An animal sat.",
    "options": ["yes", "no"],
    "answer": "yes",
  }
  inputs, targets = T.render(t, fields)
  assert inputs == "Premise: A cat sat.\nHypothesis: An animal sat.\nOPTIONS:\n- yes\n- no"
  assert targets == "yes"
  inputs, _ = T.render(t, fields, "no_template")
  assert inputs == "A cat sat.\n\nAn animal sat.\n\nOPTIONS:\n- yes\n- no"
  inputs, _ = T.render(t, fields, "dataset_name", "rte")
  assert inputs.startswith("[rte] A cat sat.")
  with pytest.raises(ValueError, match="Unknown template mode"):
    T.render(t, fields, "bogus")
  assert T.format_options(["a", "b"]) == "OPTIONS:\n- a\n- b"


def test_values_are_not_reinterpreted_as_placeholders():
  t = T.Template("{premise}", "{answer}")
  inputs, _ = T.render(t, {"premise": "f(x) = {x}", "answer": "y"})
  assert inputs == "f(x) = {x}"


def test_load_reports_missing_file_and_wrong_dataset(tmp_path):
  with pytest.raises(T.TemplateError, match="No template file"):
    T.load("rte", str(tmp_path))
  (tmp_path / "rte.yaml").write_text("dataset: cb\ntemplates: []\n")
  with pytest.raises(T.TemplateError, match="is the file of cb, not of .rte."):
    T.load("rte", str(tmp_path))


@pytest.mark.parametrize("dataset", [d.name for d in D.DATASETS])
def test_shipped_template_file_is_valid(dataset):
  templates = T.load(dataset)
  assert len(templates) == T.NUM_TEMPLATES
  if D.get(dataset).classification:
    assert sum(t.is_classification for t in templates) >= 1
  fields = set(preprocessors.get(dataset).fields)
  for t in templates:
    assert set(t.fields) <= fields


@pytest.fixture
def broken_templates(tmp_path, monkeypatch):
  """A copy of templates/ whose rte template 3 names an unknown field."""
  shutil.copytree(T.TEMPLATES_DIR, tmp_path / "templates")
  path = tmp_path / "templates" / "rte.yaml"
  data = yaml.safe_load(path.read_text())
  data["templates"][3]["input"] += " {not_a_field}"
  path.write_text(yaml.safe_dump(data))
  monkeypatch.setattr(T, "TEMPLATES_DIR", tmp_path / "templates")
  T.load.cache_clear()
  yield path
  monkeypatch.undo()
  T.load.cache_clear()


def test_registration_fails_on_a_template_with_an_unknown_placeholder(broken_templates):
  before = tasks.registered_names()
  with pytest.raises(T.TemplateError) as e:
    tasks.register()
  message = str(e.value)
  assert str(broken_templates) in message
  assert "template 3" in message
  assert "{not_a_field}" in message
  assert tasks.registered_names() == before  # the previous registration is untouched.
