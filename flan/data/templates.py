"""Instruction templates: data files under `templates/`, loaded, validated and rendered here.

A template file is `templates/<dataset>.yaml` (or a file shared by several datasets, named by
their `template_file` in `flan.data.datasets`, which lists them under `datasets:`):

    dataset: rte
    templates:
      - input: "{premise}\n\nIs it true that \"{hypothesis}\"?\n\n{options}"
        target: "{answer}"
      - ...

Placeholders are `{field}` with `field` one of the fields the dataset's preprocessor emits
(`flan.data.preprocessors`). `{options}` renders the choices as FLAN's OPTIONS block. There is no
escaping: a brace that does not form a known placeholder is an error. A template whose
target is not `{answer}` (or that has no `{options}`) on a classification dataset is
"turned around": it trains, but rank classification skips it.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from flan.errors import UserError

TEMPLATES_DIR = pathlib.Path(__file__).resolve().parents[2] / "templates"
NUM_TEMPLATES = 10
PLACEHOLDER = re.compile(r"\{(\w+)\}")
MODES = ("instructions", "no_template", "dataset_name")


class TemplateError(UserError):
  """A template file that does not fit its dataset."""


@dataclasses.dataclass(frozen=True)
class Template:
  """One (input, target) pattern."""

  input: str
  target: str

  @property
  def fields(self) -> tuple[str, ...]:
    """Placeholders in order of first appearance (input, then target)."""
    seen = dict.fromkeys(PLACEHOLDER.findall(self.input) + PLACEHOLDER.findall(self.target))
    return tuple(seen)

  @property
  def is_classification(self) -> bool:
    """Input shows the options and the target is the answer: rank classification applies."""
    return "{options}" in self.input and self.target.strip() == "{answer}"


def format_options(options: Sequence[str]) -> str:
  """FLAN's OPTIONS block: a header line, then one `- choice` per line."""
  return "OPTIONS:\n- " + "\n- ".join(options)


def _check_braces(text: str, where: str) -> None:
  stripped = PLACEHOLDER.sub("", text)
  if "{" in stripped or "}" in stripped:
    raise TemplateError(
      f"{where}: stray brace in {text!r}; placeholders are {{field}} with "
      "letters, digits and underscores only."
    )


def parse(
  data: Mapping[str, Any], path: str, fields: Sequence[str], classification: bool
) -> tuple[Template, ...]:
  """Validates a loaded template file against the fields of its dataset."""
  items = data.get("templates") if isinstance(data, Mapping) else None
  if not isinstance(items, list) or not items:
    raise TemplateError(f"{path}: expected a mapping with a non-empty `templates:` list.")
  known = set(fields) - {"answers", "references"}
  templates = []
  for i, item in enumerate(items):
    where = f"{path}: template {i}"
    if (
      not isinstance(item, Mapping)
      or set(item) - {"input", "target", "note"}
      or not isinstance(item.get("input"), str)
      or not isinstance(item.get("target"), str)
    ):
      raise TemplateError(
        f"{where}: expected string keys `input` and `target` (and an "
        f"optional `note`), got {item!r}."
      )
    t = Template(item["input"], item["target"])
    for text in (t.input, t.target):
      _check_braces(text, where)
    for name in t.fields:
      if name not in known:
        raise TemplateError(
          f"{where}: unknown field {{{name}}}. The preprocessor of this dataset emits: "
          f"{', '.join('{' + f + '}' for f in sorted(known))}."
        )
    if "{options}" in t.target:
      raise TemplateError(f"{where}: {{options}} belongs in the input, not the target.")
    templates.append(t)
  if classification and not templates[0].is_classification:
    raise TemplateError(
      f"{path}: template 0 of a classification dataset must show "
      "{options} in its input and have target {answer}."
    )
  return tuple(templates)


@functools.cache
def load(dataset: str, directory: str | None = None) -> tuple[Template, ...]:
  """Loads and validates the templates of `dataset`.

  `templates/<dataset>.yaml` if it exists, else the shared `templates/<template_file>.yaml`
  named in the dataset's table row.
  """
  from flan.data import datasets as datasets_lib
  from flan.data import preprocessors

  spec = datasets_lib.get(dataset)
  root = pathlib.Path(directory) if directory else TEMPLATES_DIR
  path = root / f"{dataset}.yaml"
  if not path.exists() and spec.template_file:
    path = root / f"{spec.template_file}.yaml"
  if not path.exists():
    raise TemplateError(f"No template file for dataset {dataset!r}: expected {path}.")
  try:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
  except yaml.YAMLError as e:  # name the file and line: the parser's own message has neither
    mark = getattr(e, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    raise TemplateError(
      f"{where}: YAML syntax error: {problem}; fix the file (quote a value "
      "holding ': ' or starting with '{')."
    ) from None
  if isinstance(data, Mapping):
    owners = data.get("datasets", [data.get("dataset", dataset)])
    if dataset not in owners:
      raise TemplateError(
        f"{path}: is the file of {', '.join(map(str, owners))}, not of "
        f"{dataset!r}; fix its `dataset:`/`datasets:` line."
      )
  return parse(data, str(path), preprocessors.get(dataset).fields, spec.classification)


def _value(fields: Mapping[str, Any], name: str) -> str:
  if name == "options":
    return format_options(fields["options"])
  value = fields[name]
  if not isinstance(value, str):
    raise TypeError(f"Field {name!r} must be a string to fill a template, got {value!r}.")
  return value


def fill(text: str, fields: Mapping[str, Any]) -> str:
  """Replaces every `{field}` in `text` with its value (no format specs, no escaping)."""
  return PLACEHOLDER.sub(lambda m: _value(fields, m.group(1)), text)


def render(
  template: Template, fields: Mapping[str, Any], mode: str = "instructions", dataset: str = ""
) -> tuple[str, str]:
  """Renders `(inputs, targets)` strings for one example.

  Args:
    template: the pattern.
    fields: the preprocessor's output for the example.
    mode: "instructions" (the template as written); "no_template" (the paper's ablation:
      only the input fields' values, one per paragraph, options kept); "dataset_name"
      (no_template prefixed with `[dataset]`).
    dataset: the dataset name, for "dataset_name".
  """
  if mode == "instructions":
    return fill(template.input, fields), fill(template.target, fields)
  if mode not in MODES:
    raise UserError(f"Unknown template mode {mode!r}; choose one of {', '.join(MODES)}.")
  names = list(PLACEHOLDER.findall(template.input))
  inputs = "\n\n".join(_value(fields, n) for n in dict.fromkeys(names))
  if mode == "dataset_name":
    inputs = f"[{dataset}] {inputs}"
  return inputs, fill(template.target, fields)


# ----------------------------------------------------------------------------- replication

FLAN_IMPORT_COMMAND = (
  "python scripts/import_flan_templates.py PATH/TO/FLAN/flan/templates.py --out {directory}"
)


@functools.cache
def load_flan(pattern_key: str, directory: str) -> tuple[Template, ...]:
  """FLAN's templates of one `PATTERNS` key, as `scripts/import_flan_templates.py` wrote them.

  The replication mode's templates: `<directory>/<pattern_key>.yaml`, validated against the
  fields FLAN's preprocessing of that key emits (`flan.data.preprocessors.flan_compat`).
  """
  from flan.data.preprocessors import flan_compat

  fields = flan_compat.pattern_keys().get(pattern_key)
  if fields is None:
    raise TemplateError(f"No FLAN task config uses PATTERNS key {pattern_key!r}.")
  path = pathlib.Path(directory) / f"{pattern_key}.yaml"
  if not path.exists():
    raise TemplateError(
      f"No converted FLAN template file {path}. Convert FLAN's templates.py with: "
      f"{FLAN_IMPORT_COMMAND.format(directory=directory)}"
    )
  data = yaml.safe_load(path.read_text(encoding="utf-8"))
  if not isinstance(data, Mapping) or data.get("pattern_key") != pattern_key:
    raise TemplateError(
      f"{path}: expected `pattern_key: {pattern_key}` (a file written by "
      "scripts/import_flan_templates.py)."
    )
  return parse(data, str(path), fields, classification=False)
