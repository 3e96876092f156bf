"""Reading comprehension (BoolQ, DROP, MultiRC, OpenBookQA, SQuAD) and reading
comprehension with commonsense (CosmosQA, ReCoRD).

Classification datasets emit `options` and `answer` (ReCoRD also `answers`: every correct
entity); the extractive/abstractive ones emit `answer` and all gold answers as
`references` for SQuAD-style EM/F1.

Differences from FLAN v1's preprocessing, on purpose (`flan_compat` has FLAN's): FLAN's
ReCoRD cuts the passage at its first `@highlight`, shows the query's text before
`@placeholder` and appends the text after it to every option and answer (a continuation);
ours keeps the highlights as closing sentences and shows the query with a `___` blank.
FLAN's SQuAD v2.0 keeps unanswerable questions with the target "unanswerable" (its v2
templates say so); ours drops them, so `squad` renders v1 and v2 with one template set.
FLAN reads BoolQ from the `bool_q` builder (with a title); ours from super_glue/boolq.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flan.data.preprocessors import Fields, preprocessor
from flan.data.preprocessors.closed_book_qa import as_question, clean, unique
from flan.data.preprocessors.translation import detokenize

YES_NO = ("no", "yes")  # index = label: 0 false, 1 true.
_LATEX_QUOTES = re.compile(r"``|''")  # BoolQ's Wikipedia text quotes ``like this''.


def _options_fields(options: list[str], label: Any) -> tuple[list[str], str] | None:
  """(options, answer) for a label indexing `options`; None if it cannot be used."""
  if not isinstance(label, int) or not 0 <= label < len(options) or not all(options):
    return None
  answer = options[label]
  return list(dict.fromkeys(options)), answer


@preprocessor("bool_q", fields=("passage", "question", "options", "answer"))
def bool_q(example: Mapping[str, Any]) -> Fields | None:
  """BoolQ (super_glue/boolq): `label` 1 = the answer is yes; -1 (unlabelled) is dropped.

  The passage keeps its `Title -- text` form (its ``LaTeX'' quotes become plain ones); the
  lower-case question gets a capital and a question mark.
  """
  passage = clean(_LATEX_QUOTES.sub('"', str(example.get("passage", ""))))
  question = as_question(example.get("question", ""))
  picked = _options_fields(list(YES_NO), example.get("label"))
  if not passage or not question or picked is None:
    return None
  return {"passage": passage, "question": question, "options": picked[0], "answer": picked[1]}


@preprocessor("drop", fields=("passage", "question", "answer", "references"))
def drop(example: Mapping[str, Any]) -> Fields | None:
  """DROP: the target is `answer`; `validated_answers` join it as references."""
  references = unique([example.get("answer", "")] + list(example.get("validated_answers") or []))
  passage, question = clean(example.get("passage", "")), clean(example.get("question", ""))
  if not passage or not question or not references:
    return None
  return {
    "passage": passage,
    "question": question,
    "answer": references[0],
    "references": references,
  }


@preprocessor(
  "multirc", fields=("paragraph", "question", "response", "options", "answer", "question_id")
)
def multirc(example: Mapping[str, Any]) -> Fields | None:
  """MultiRC: is the candidate `response` a correct answer to the question? (no/yes).

  `question_id` ("<paragraph>-<question>" from `idx`) groups the candidates of one
  question, for MultiRC's exact-match-per-question metric.
  """
  paragraph, question = clean(example.get("paragraph", "")), clean(example.get("question", ""))
  response = clean(example.get("answer", ""))
  picked = _options_fields(list(YES_NO), example.get("label"))
  if not paragraph or not question or not response or picked is None:
    return None
  idx = example.get("idx") or {}
  return {
    "paragraph": paragraph,
    "question": question,
    "response": response,
    "options": picked[0],
    "answer": picked[1],
    "question_id": f"{idx.get('paragraph', '')}-{idx.get('question', '')}",
  }


@preprocessor("openbookqa", fields=("fact", "question", "options", "answer"))
def openbookqa(example: Mapping[str, Any]) -> Fields | None:
  """OpenBookQA: a science fact (`fact1`), a question stem and four choices A-D."""
  q = example.get("question") or {}
  options = [clean(q.get(f"choice_{c}", "")) for c in "ABCD"]
  picked = _options_fields(options, example.get("answerKey"))
  fact, stem = clean(example.get("fact1", "")), clean(q.get("stem", ""))
  if not fact or not stem or picked is None:
    return None
  return {"fact": fact, "question": stem, "options": picked[0], "answer": picked[1]}


@preprocessor("squad", fields=("title", "context", "question", "answer", "references"))
def squad(example: Mapping[str, Any]) -> Fields | None:
  """SQuAD v1.1 and v2.0: unanswerable v2 questions are dropped (no gold span)."""
  if example.get("is_impossible"):
    return None
  references = unique((example.get("answers") or {}).get("text") or [])
  title = clean(str(example.get("title", "")).replace("_", " "))
  context, question = clean(example.get("context", "")), clean(example.get("question", ""))
  if not context or not question or not references:
    return None
  return {
    "title": title or "Untitled",
    "context": context,
    "question": question,
    "answer": references[0],
    "references": references,
  }


@preprocessor("cosmos_qa", fields=("context", "question", "options", "answer"))
def cosmos_qa(example: Mapping[str, Any]) -> Fields | None:
  """CosmosQA: four candidate answers, `label` picks one; the tokenized text is joined."""
  options = [detokenize(str(example.get(f"answer{i}", ""))) for i in range(4)]
  picked = _options_fields(options, example.get("label"))
  context = detokenize(str(example.get("context", "")))
  question = detokenize(str(example.get("question", "")))
  if not context or not question or picked is None:
    return None
  return {"context": context, "question": question, "options": picked[0], "answer": picked[1]}


_HIGHLIGHT = re.compile(r"\s*@highlight\s*")
BLANK = "___"


def record_passage(passage: str) -> str:
  """A ReCoRD passage with its `@highlight` bullet points as closing sentences."""
  body, *highlights = _HIGHLIGHT.split(passage)
  sentences = [h if h[-1] in ".?!\"'" else h + "." for h in map(clean, highlights) if h]
  return "\n\n".join(p for p in (clean(body), " ".join(sentences)) if p)


@preprocessor("record", fields=("passage", "query", "options", "answer", "answers"))
def record(example: Mapping[str, Any]) -> Fields | None:
  """ReCoRD: which entity of the passage fills the blank in the query?

  Options are the passage's entities (any gold answer missing from them is appended, so
  every answer is an option); `answers` holds all gold entities, `answer` the first. The
  query's `@placeholder` is shown as a blank `___`.
  """
  answers = unique(example.get("answers") or [])
  options = unique(list(example.get("entities") or []) + answers)
  passage = record_passage(str(example.get("passage", "")))
  query = clean(str(example.get("query", "")).replace("@placeholder", BLANK))
  if not passage or not query or not answers:
    return None
  return {
    "passage": passage,
    "query": query,
    "options": options,
    "answer": answers[0],
    "answers": answers,
  }
