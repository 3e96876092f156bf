"""Closed-book QA: ARC (easy and challenge), Natural Questions (open) and TriviaQA.

The model sees only the question. ARC is multiple choice (options are the choice texts);
Natural Questions and TriviaQA are generation, with every accepted answer (TriviaQA's
aliases) kept as `references` for the TriviaQA-style EM/F1.

Differences from FLAN v1's preprocessing, on purpose (`flan_compat` has FLAN's): FLAN's
TriviaQA target is the lower-cased `normalized_value` (references: the normalized aliases);
ours is the answer as written (`value`). FLAN appends "?" to every NQ-open question (some
of its templates add another one); ours capitalizes the query and adds "?" only when
missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from flan.data.preprocessors import Fields, preprocessor

_SPACES = re.compile(r"\s+")


def clean(text: Any) -> str:
  """Collapses whitespace runs and strips the ends."""
  return _SPACES.sub(" ", str(text)).strip()


def unique(texts: Iterable[Any]) -> list[str]:
  """Cleaned, non-empty, de-duplicated strings in first-seen order."""
  return list(dict.fromkeys(t for t in map(clean, texts) if t))


def as_question(text: str) -> str:
  """A search-style query (`who was cast as phoebe`) as a question: capital, `?`."""
  text = clean(text)
  if not text:
    return text
  text = text[0].upper() + text[1:]
  return text if text[-1] in "?.!" else text + "?"


@preprocessor("arc", fields=("question", "options", "answer"))
def arc(example: Mapping[str, Any]) -> Fields | None:
  """ARC: the answer is the choice whose label equals `answerKey` (both ClassLabels)."""
  choices = example.get("choices") or {}
  texts, labels = choices.get("text") or [], choices.get("label") or []
  key = example.get("answerKey")
  answer = next((clean(t) for t, l in zip(texts, labels) if l == key), "")
  question = clean(example.get("question", ""))
  options = unique(texts)
  if not question or not answer or len(options) < 2:
    return None
  return {"question": question, "options": options, "answer": answer}


@preprocessor("natural_questions", fields=("question", "answer", "references"))
def natural_questions(example: Mapping[str, Any]) -> Fields | None:
  """NQ-open: lower-case queries become questions; the first answer is the target."""
  answers = unique(example.get("answer") or [])
  question = as_question(example.get("question", ""))
  if not question or not answers:
    return None
  return {"question": question, "answer": answers[0], "references": answers}


@preprocessor("trivia_qa", fields=("question", "answer", "references"))
def trivia_qa(example: Mapping[str, Any]) -> Fields | None:
  """TriviaQA (rc config, evidence unused): target `value`, references value + aliases."""
  answer = example.get("answer") or {}
  references = unique([answer.get("value", "")] + list(answer.get("aliases") or []))
  question = clean(example.get("question", ""))
  if not question or not references:
    return None
  return {"question": question, "answer": references[0], "references": references}
