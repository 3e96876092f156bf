"""Commonsense cluster: COPA, HellaSwag, PIQA and StoryCloze.

All four pick the plausible continuation among candidates, so the options are the
candidates themselves, in source order, and the answer is the labeled one. Examples whose
label does not index a candidate (unlabeled test rows, -1) or whose candidates are empty or
duplicated (rank classification could not tell them apart) are dropped.

Differences from FLAN v1's preprocessing, on purpose (`flan_compat` has FLAN's): FLAN's
HellaSwag turns WikiHow step markers (`[step] `, `[title] `) into line breaks and deletes
`[header] `; ours replaces them with a space. FLAN passes the other texts as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from flan.data.preprocessors import Fields, preprocessor
from flan.data.preprocessors.text import class_index, normalize_space

# WikiHow contexts in HellaSwag carry section markers such as "[header]" and "[step]".
_WIKIHOW_MARKER = re.compile(r"\s*\[(?:header|title|step|substeps|sub)\]\s*", re.IGNORECASE)


def _choice_fields(candidates: Sequence[Any], label: int | None) -> Fields | None:
  """`options` (cleaned candidates) and `answer`, or None if unusable."""
  options = [normalize_space(c) for c in candidates]
  if label is None or not options or not all(options) or len(set(options)) < len(options):
    return None
  return {"options": options, "answer": options[label]}


def _strip_wikihow(text: Any) -> str:
  return normalize_space(_WIKIHOW_MARKER.sub(" ", str(text)))


@preprocessor("copa", fields=("premise", "question", "connector", "options", "answer"))
def copa(example: Mapping[str, Any]) -> Fields | None:
  """COPA: which of two alternatives is the cause (or effect) of the premise?

  `question` is "cause" or "effect"; `connector` is the word that joins premise and answer
  in a sentence ("because" for a cause, "so" for an effect). The source has only those two
  question values; anything other than "cause" (random mock strings) is read as "effect".
  """
  premise = normalize_space(example["premise"])
  fields = _choice_fields([example["choice1"], example["choice2"]], class_index(example, 2))
  if fields is None or not premise:
    return None
  question = "cause" if str(example["question"]).strip().lower() == "cause" else "effect"
  return {
    "premise": premise,
    "question": question,
    "connector": "because" if question == "cause" else "so",
    **fields,
  }


@preprocessor("hellaswag", fields=("context", "activity", "options", "answer"))
def hellaswag(example: Mapping[str, Any]) -> Fields | None:
  """HellaSwag: the context (often ending mid-sentence) and four candidate endings."""
  endings = [_strip_wikihow(e) for e in example["endings"]]
  fields = _choice_fields(endings, class_index(example, len(endings)))
  context = _strip_wikihow(example["context"])
  if fields is None or not context:
    return None
  return {"context": context, "activity": normalize_space(example["activity_label"]), **fields}


@preprocessor("piqa", fields=("goal", "options", "answer"))
def piqa(example: Mapping[str, Any]) -> Fields | None:
  """PIQA: a goal and two solutions; label 0/1 picks sol1/sol2."""
  goal = normalize_space(example["goal"])
  fields = _choice_fields([example["sol1"], example["sol2"]], class_index(example, 2))
  if fields is None or not goal:
    return None
  return {"goal": goal, **fields}


@preprocessor("story_cloze", fields=("context", "options", "answer"))
def story_cloze(example: Mapping[str, Any]) -> Fields | None:
  """StoryCloze 2016: four sentences and two endings.

  TFDS keeps the source's 1-based `AnswerRightEnding` as `label` (1 or 2; -1 when absent).
  """
  endings = list(example["endings"])
  label = class_index(example, len(endings) + 1)
  fields = _choice_fields(endings, None if not label else label - 1)
  context = normalize_space(example["context"])
  if fields is None or not context:
    return None
  return {"context": context, **fields}
