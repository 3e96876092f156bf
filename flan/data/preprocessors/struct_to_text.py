"""Structure to text: the GEM versions of CommonGen, DART, E2E NLG and WebNLG (English).

GEM builders give one `target` per training example and, on eval splits, every
reference in `references` (empty on train). We emit `answer` (the target) and
`references` (all references, or `[answer]` where the split has none) for multi-reference
ROUGE. Structured inputs are flattened into one readable string.

Differences from FLAN v1's preprocessing, on purpose (`flan_compat` has FLAN's): FLAN
rewrites E2E's `name[X]` as `name = X`, joins WebNLG triples with "; " and turns " | " into
", ", deletes DART's bracketed cells (`[TITLE]`), and also emits newline-separated forms
(`concepts_newline`, `tripleset_newline`) for some templates; its GEM references are the
eval references followed by the target.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flan.data.preprocessors import Fields, preprocessor
from flan.data.preprocessors.closed_book_qa import clean, unique


def _targets(example: Mapping[str, Any]) -> tuple[str, list[str]] | None:
  """(answer, references) of a GEM example, or None when it has no target text."""
  references = unique([example.get("target", "")] + list(example.get("references") or []))
  if not references:
    return None
  return references[0], references


def _with_targets(fields: Fields, example: Mapping[str, Any]) -> Fields | None:
  targets = _targets(example)
  if targets is None or not all(fields.values()):
    return None
  fields["answer"], fields["references"] = targets
  return fields


@preprocessor("common_gen", fields=("concepts", "answer", "references"))
def common_gen(example: Mapping[str, Any]) -> Fields | None:
  """CommonGen: a concept set (`ski, mountain, skier`) -> a sentence using all of them."""
  return _with_targets({"concepts": ", ".join(unique(example.get("concepts") or []))}, example)


@preprocessor("dart", fields=("triples", "answer", "references"))
def dart(example: Mapping[str, Any]) -> Fields | None:
  """DART: `subject PREDICATE object` triples (space-joined by TFDS), `; `-separated."""
  return _with_targets({"triples": "; ".join(unique(example.get("tripleset") or []))}, example)


@preprocessor("e2e_nlg", fields=("meaning_representation", "answer", "references"))
def e2e_nlg(example: Mapping[str, Any]) -> Fields | None:
  """E2E: a restaurant meaning representation `name[X], food[Y], ...` -> a description."""
  return _with_targets(
    {"meaning_representation": clean(example.get("meaning_representation", ""))}, example
  )


def _webnlg_triple(triple: str) -> str:
  """`AFC_Ajax | manager | Frank_de_Boer` -> `AFC Ajax | manager | Frank de Boer`."""
  return " | ".join(clean(part.replace("_", " ")) for part in triple.split("|"))


@preprocessor("web_nlg_en", fields=("triples", "answer", "references"))
def web_nlg_en(example: Mapping[str, Any]) -> Fields | None:
  """WebNLG: `subject | predicate | object` triples (DBpedia underscores removed)."""
  triples = unique(_webnlg_triple(t) for t in example.get("input") or [])
  return _with_targets({"triples": "; ".join(triples)}, example)
