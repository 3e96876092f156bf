"""What a run records about itself in MODEL_DIR, as data: the model config and vocabulary.

`MODEL_DIR/model_config.json` holds the network's config fields (`T5Config`), the
vocabulary's path and SHA-256, and the task feature lengths. Readers (`flan.convert`,
`flan.evaluate`) take it as plain JSON: nothing in a model or checkpoint directory is ever
parsed as gin, since gin can call any registered function, and a directory is data that
anyone may have written. `config.gin` stays for people to read.

Both files are written by `write` only after the run was validated and its MODEL_DIR
locked (so a refused run never replaces the record of the run that made the checkpoints),
each atomically: a temporary file in the same directory, then a rename.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from flan import paths
from flan.errors import UserError

RECORD_NAME = "model_config.json"
CONFIG_GIN = "config.gin"


def model_fields(config: Any) -> dict[str, Any]:
  """A model config dataclass as JSON-able fields (tuples become lists)."""
  return json.loads(json.dumps(dataclasses.asdict(config)))


def write(
  model_dir: str | os.PathLike,
  *,
  model_config: Any,
  vocabulary: Mapping[str, Any],
  feature_lengths: Mapping[str, int],
  config_gin: str,
) -> None:
  """Writes MODEL_DIR/model_config.json and MODEL_DIR/config.gin (call on process 0)."""
  record = {
    "model": model_fields(model_config),
    "model_class": type(model_config).__name__,
    "vocabulary": dict(vocabulary),
    "task_feature_lengths": {k: int(v) for k, v in feature_lengths.items()},
  }
  paths.write_atomic(paths.path(model_dir) / RECORD_NAME, json.dumps(record, indent=2) + "\n")
  paths.write_atomic(paths.path(model_dir) / CONFIG_GIN, config_gin)


def read(model_dir: str | os.PathLike) -> dict[str, Any] | None:
  """The record in `model_dir`, or None if it has none.

  Raises:
    UserError: the file exists but is not a record (damaged or hand-edited).
  """
  path = paths.path(model_dir) / RECORD_NAME
  if not path.is_file():
    return None
  try:
    record = json.loads(path.read_text())
  except ValueError as e:
    raise UserError(
      f"{path} is not valid JSON ({e}); it is written by flan.train: restore it "
      "or pass the model config explicitly."
    ) from None
  if not isinstance(record, dict) or not isinstance(record.get("model"), dict):
    raise UserError(f"{path} has no `model` mapping; it is written by flan.train.")
  return record


def check_vocabulary(model_dir: str | os.PathLike, vocabulary: Mapping[str, Any]) -> None:
  """Raises UserError if `vocabulary` (a `vocabularies.fingerprint`) is not the recorded one.

  A MODEL_DIR without a record (an older run, a converted model) is not checked.
  """
  record = read(model_dir)
  if record is None or "vocabulary" not in record:
    return
  recorded = record["vocabulary"]
  if recorded.get("sha256") != vocabulary.get("sha256"):
    raise UserError(
      f"VOCABULARY={vocabulary.get('path')!r} is not the vocabulary the checkpoints in "
      f"{str(model_dir)!r} were trained with ({recorded.get('path')!r}, recorded in "
      f"{RECORD_NAME}); scores with another vocabulary are meaningless: set "
      f"--gin.VOCABULARY=\"'{recorded.get('path')}'\"."
    )
