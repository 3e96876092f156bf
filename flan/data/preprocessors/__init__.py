"""Per-dataset preprocessors: a decoded TFDS example -> the fields its templates name.

A preprocessor is a pure Python function of one example, already decoded by `decode`
(bytes -> str, arrays -> lists, numpy scalars -> Python scalars). It returns a dict of
template fields, or None to drop the example (e.g. a SQuAD v2 question with no answer).

Field conventions (shared by templates, tasks and evaluation):
  options:    list[str], classification datasets only: the choices, rendered by the
              `{options}` placeholder as an OPTIONS block.
  answer:     str, classification: the correct option (always one of `options`);
              generation: the main target text.
  answers:    list[str], optional: every correct option (ReCoRD, MultiRC-style sets);
              rank classification marks each of them correct. Defaults to [answer].
  references: list[str], optional, generation: all reference targets (GEM multi-reference
              ROUGE, SQuAD/TriviaQA answer aliases). Defaults to [the rendered target].
  any other:  str fields named after what they hold (premise, hypothesis, question, ...).

Each cluster has its own module; importing this package registers all of them.
`flan_compat` is apart: FLAN v1's own preprocessing per FLAN task config, used only by the
exact-replication mode (`flan.data.tasks.register(flan_templates_dir=...)`).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

Fields = dict[str, Any]
LIST_FIELDS = frozenset({"options", "answers", "references"})


@dataclasses.dataclass(frozen=True)
class Preprocessor:
  """A dataset's preprocessor and the fields it emits (every key it may return)."""

  dataset: str
  fn: Callable[[Mapping[str, Any]], Fields | None]
  fields: tuple[str, ...]

  def __call__(self, example: Mapping[str, Any]) -> Fields | None:
    return self.fn(example)


REGISTRY: dict[str, Preprocessor] = {}


def preprocessor(dataset: str, fields: tuple[str, ...]):
  """Decorator: registers `fn` as the preprocessor of `dataset`, emitting `fields`."""

  def register(fn):
    if dataset in REGISTRY:
      raise ValueError(f"Preprocessor for {dataset!r} registered twice.")
    REGISTRY[dataset] = Preprocessor(dataset, fn, tuple(fields))
    return fn

  return register


def decode(value: Any) -> Any:
  """Converts a `tfds.as_numpy` example into plain Python values."""
  if isinstance(value, bytes):
    return value.decode("utf-8", errors="replace")
  if isinstance(value, Mapping):
    return {k: decode(v) for k, v in value.items()}
  if isinstance(value, np.ndarray):
    if value.dtype.kind in "SO":
      return [decode(v) for v in value.tolist()]
    return value.tolist()
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, (list, tuple)):
    return [decode(v) for v in value]
  return value


_CLUSTER_MODULES = (
  "nli",
  "commonsense",
  "sentiment",
  "paraphrase",
  "closed_book_qa",
  "struct_to_text",
  "translation",
  "reading_comprehension",
  "coreference",
  "misc",
  "summarization",
)


def get(dataset: str) -> Preprocessor:
  """The registered preprocessor of `dataset` (importing every cluster module once)."""
  load_all()
  try:
    return REGISTRY[dataset]
  except KeyError:
    raise KeyError(f"No preprocessor registered for dataset {dataset!r}.") from None


def load_all() -> Mapping[str, Preprocessor]:
  """Imports every cluster module (each registers its datasets); returns the registry."""
  for module in _CLUSTER_MODULES:
    importlib.import_module(f"{__name__}.{module}")
  return REGISTRY
