"""Checks shared by the per-cluster preprocessor tests: the fields contract of
`flan.data.preprocessors` and the templates of `flan.data.templates`, on mock and on real TFDS data.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import tensorflow_datasets as tfds

from flan.data import datasets as datasets_lib
from flan.data import preprocessors
from flan.data import templates as templates_lib


def check_fields(dataset: str, fields: Mapping[str, Any]) -> None:
  """One preprocessed example obeys the contract and renders with every template."""
  spec, pp = datasets_lib.get(dataset), preprocessors.get(dataset)
  assert set(fields) <= set(pp.fields), f"{dataset}: undeclared keys {set(fields) - set(pp.fields)}"
  for name, value in fields.items():
    if name in preprocessors.LIST_FIELDS:
      assert isinstance(value, list) and value, f"{dataset}.{name}: {value!r}"
      assert all(isinstance(v, str) and v for v in value), f"{dataset}.{name}: {value!r}"
    else:
      assert isinstance(value, str) and value, f"{dataset}.{name}: {value!r}"
  if spec.classification:
    assert fields["answer"] in fields["options"], f"{dataset}: answer not in options"
    assert set(fields.get("answers", [])) <= set(fields["options"])
  for template in templates_lib.load(dataset):
    for mode in ("instructions", "no_template"):
      inputs, targets = templates_lib.render(template, fields, mode, dataset)
      assert inputs.strip() and targets.strip(), (dataset, template)
      leftover = [f for f in pp.fields if "{" + f + "}" in inputs + targets]
      assert not leftover, f"{dataset}: unfilled {leftover} in {inputs!r} -> {targets!r}"


def mock_examples(dataset: str, num_examples: int) -> list[dict]:
  """Decoded `tfds.testing.mock_data` examples of every source and split of `dataset`."""
  spec = datasets_lib.get(dataset)
  out = []
  # Small random ints, so label-indexed candidates (hellaswag, story_cloze) mostly survive.
  with tfds.testing.mock_data(num_examples=num_examples, max_value=3):
    for source in spec.sources:
      splits = {source.train_split, *source.eval_splits} - {None, datasets_lib.TRAIN_TAIL}
      for split in sorted(splits):
        ds = tfds.load(source.tfds_name, split=split)
        out += [preprocessors.decode(ex) for ex in tfds.as_numpy(ds)]
  return out


def check_mock(dataset: str, num_examples: int = 12) -> int:
  """Runs the preprocessor over mock data and checks every survivor; returns their count."""
  pp = preprocessors.get(dataset)
  kept = 0
  for example in mock_examples(dataset, num_examples):
    fields = pp(example)
    if fields is not None:
      check_fields(dataset, fields)
      kept += 1
  return kept


def available_sources(dataset: str, data_dir: str) -> list[str]:
  """The TFDS names of `dataset`'s sources that are prepared under `data_dir`."""
  spec = datasets_lib.get(dataset)
  return [
    s.tfds_name
    for s in spec.sources
    if (pathlib.Path(data_dir) / s.tfds_name.replace(":", "/")).is_dir()
  ]


def check_real(dataset: str, data_dir: str) -> dict[str, tuple[int, int]]:
  """Checks every example of every split of the prepared sources of `dataset`.

  Returns `{"<tfds_name> <split>": (examples, kept)}`; asserts each split keeps one.
  """
  pp = preprocessors.get(dataset)
  counts = {}
  for tfds_name in available_sources(dataset, data_dir):
    builder = tfds.builder(tfds_name, data_dir=data_dir)
    for split in builder.info.splits:
      total = kept = 0
      for example in tfds.as_numpy(builder.as_dataset(split=split)):
        total += 1
        fields = pp(preprocessors.decode(example))
        if fields is not None:
          check_fields(dataset, fields)
          kept += 1
      assert kept > 0, f"{dataset}: no example of {tfds_name} {split} survives"
      counts[f"{tfds_name} {split}"] = (total, kept)
  return counts
