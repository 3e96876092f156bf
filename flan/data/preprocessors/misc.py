"""Misc. cluster: CoQA, QuAC, TREC, CoLA, WiC, Math and Fix Punctuation.

Reductions that differ from the raw TFDS records, and why:
  coqa: TFDS gives one record per conversation (a story, all questions, all answers). We
    emit one example per conversation: the story, the earlier turns as a "Q: / A:"
    transcript, and the LAST answerable turn (answer not "unknown"): its question is asked,
    its answer is the target. That keeps the conversational context, and the target is a
    single answer that the `squad` metric can score. Later unanswerable turns are dropped.
  quac: TFDS already gives one record per question, without the earlier turns of the
    dialogue (only the Wikipedia section, its title and background). Each example is
    that section plus the question; unanswerable questions (CANNOTANSWER) are dropped and
    every distinct annotator answer becomes a reference for the `trivia_qa` metric.
  fix_punct: the English side of para_crawl/enda with sentence punctuation deleted is the
    input, the original sentence the target. Punctuation inside a token (between two
    letters or digits: "don't", "3.5", "well-known", "e.g") is kept: it is part of the
    word, not of the sentence's punctuation, and restoring it would be guesswork.

Differences from FLAN v1's preprocessing, on purpose (`flan_compat` has FLAN's): FLAN's
CoQA example is the whole conversation (every question and every answer, numbered "1. ...",
the story as `text`), with templates that ask for all answers at once; FLAN's fix_punct
deletes every character outside ASCII letters, digits and spaces (accents and in-word
apostrophes too) and drops sentences it leaves unchanged; FLAN's TREC calls the NUM class
"numeric" (we say "number"); WiC options are "different meanings" / "the same meaning" in
FLAN, "no" / "yes" here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from flan.data.preprocessors import Fields, preprocessor

NO_YES = ("no", "yes")
# TREC coarse classes in TFDS ClassLabel order (DESC, ENTY, ABBR, HUM, NUM, LOC), in words.
TREC_CLASSES = ("description", "entity", "abbreviation", "human", "number", "location")
COLA_CLASSES = ("unacceptable", "acceptable")
COQA_UNANSWERABLE = frozenset({"", "unknown", "unknown."})
QUAC_UNANSWERABLE = "CANNOTANSWER"
NO_HISTORY = "(This is the first question.)"

_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\s*\n\s*")
_BYTES_REPR = re.compile(r"""^b(['"])(.*)\1$""", re.DOTALL)


def _clean(text: str) -> str:
  """Collapses runs of spaces, trims each line and drops empty lines."""
  text = _SPACES.sub(" ", text.replace("\r\n", "\n"))
  return _BLANK_LINES.sub("\n", text).strip()


def _detokenize(text: str) -> str:
  """Light PTB-style detokenization for TREC questions ("What is it ?" -> "What is it?")."""
  text = text.replace("``", '"').replace("''", '"')
  text = _clean(text).replace("\n", " ")
  text = re.sub(r"\s+([?.!,;:])", r"\1", text)
  text = re.sub(r"(\w) n't\b", r"\1n't", text)
  text = re.sub(r"(\w) '(s|re|ve|ll|d|m)\b", r"\1'\2", text)
  return text.strip()


def _label(example: Mapping[str, Any], key: str, num_classes: int) -> int | None:
  label = example.get(key, -1)
  return label if isinstance(label, int) and 0 <= label < num_classes else None


def _column(records: Any, key: str) -> list[Any]:
  """One column of a decoded `Sequence(FeaturesDict)`: a dict of lists, or list of dicts."""
  if isinstance(records, Mapping):
    return list(records.get(key, []))
  if isinstance(records, Sequence):
    return [r.get(key) for r in records if isinstance(r, Mapping)]
  return []


# ----------------------------------------------------------------------------- QA


@preprocessor("coqa", fields=("story", "history", "question", "answer"))
def coqa(example: Mapping[str, Any]) -> Fields | None:
  """Story + earlier turns + the last answerable question -> its free-form answer."""
  story = _clean(example["story"])
  questions = [_clean(str(q or "")) for q in example["questions"]]
  answers = [_clean(str(a or "")) for a in _column(example["answers"], "input_text")]
  turns = list(zip(questions, answers))  # mock data may give lists of unequal length
  last = next(
    (
      i
      for i in reversed(range(len(turns)))
      if turns[i][0] and turns[i][1].lower() not in COQA_UNANSWERABLE
    ),
    None,
  )
  if last is None or not story:
    return None
  history = "\n".join(f"Q: {q}\nA: {a}" for q, a in turns[:last])
  question, answer = turns[last]
  return {"story": story, "history": history or NO_HISTORY, "question": question, "answer": answer}


@preprocessor(
  "quac",
  fields=("title", "section_title", "background", "context", "question", "answer", "references"),
)
def quac(example: Mapping[str, Any]) -> Fields | None:
  """Wikipedia section + question -> the annotated span; all distinct spans as references."""
  context = _clean(example["context"])
  if context.endswith(QUAC_UNANSWERABLE):  # QuAC appends the no-answer token to contexts
    context = context[: -len(QUAC_UNANSWERABLE)].rstrip()
  question = _clean(example["question"])
  orig = example.get("orig_answer") or {}
  spans = [_clean(str(t or "")) for t in [orig.get("text"), *_column(example["answers"], "text")]]
  references = list(dict.fromkeys(s for s in spans if s and s != QUAC_UNANSWERABLE))
  fields = {
    "title": _clean(example["title"]),
    "section_title": _clean(example["section_title"]),
    "background": _clean(example["background"]),
    "context": context,
    "question": question,
  }
  if not all(fields.values()) or not references:
    return None
  return {**fields, "answer": references[0], "references": references}


# ----------------------------------------------------------------------------- classification


@preprocessor("trec", fields=("question", "options", "answer"))
def trec(example: Mapping[str, Any]) -> Fields | None:
  """Question -> the kind of answer it asks for (the 6 coarse TREC classes, in words)."""
  label = _label(example, "label-coarse", len(TREC_CLASSES))
  question = _detokenize(example["text"])
  if label is None or not question:
    return None
  return {"question": question, "options": list(TREC_CLASSES), "answer": TREC_CLASSES[label]}


@preprocessor("cola", fields=("sentence", "options", "answer"))
def cola(example: Mapping[str, Any]) -> Fields | None:
  """Sentence -> grammatically acceptable or not (GLUE label 1 = acceptable)."""
  label = _label(example, "label", 2)
  sentence = _clean(example["sentence"])
  if label is None or not sentence:
    return None
  return {"sentence": sentence, "options": list(COLA_CLASSES), "answer": COLA_CLASSES[label]}


@preprocessor("wic", fields=("word", "sentence1", "sentence2", "options", "answer"))
def wic(example: Mapping[str, Any]) -> Fields | None:
  """Is `word` used with the same meaning in both sentences? (label 1 = yes)."""
  label = _label(example, "label", 2)
  fields = {k: _clean(example[k]) for k in ("word", "sentence1", "sentence2")}
  if label is None or not all(fields.values()):
    return None
  return {**fields, "options": list(NO_YES), "answer": NO_YES[label]}


# ----------------------------------------------------------------------------- generation


def _unwrap_bytes_repr(text: str) -> str:
  """Undoes `str(b'...')` artefacts ("b'Solve x = 2.\\n'") of some math_dataset versions."""
  text = text.strip()
  match = _BYTES_REPR.match(text)
  if match:
    text = match.group(2)
  while text.endswith("\\n"):
    text = text[:-2]
  return text.strip()


@preprocessor("math_dataset", fields=("question", "answer"))
def math_dataset(example: Mapping[str, Any]) -> Fields | None:
  """Linear equation in one variable -> its solution."""
  question = _unwrap_bytes_repr(example["question"])
  answer = _unwrap_bytes_repr(example["answer"])
  if not question or not answer:
    return None
  return {"question": question, "answer": answer}


def remove_punctuation(text: str) -> str:
  """Deletes punctuation that is not inside a token, then collapses whitespace."""
  kept = []
  for i, ch in enumerate(text):
    if unicodedata.category(ch).startswith("P"):
      inside = 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()
      if not inside:
        kept.append(" ")
        continue
    kept.append(ch)
  return " ".join("".join(kept).split())


@preprocessor("fix_punct", fields=("unpunctuated", "sentence"))
def fix_punct(example: Mapping[str, Any]) -> Fields | None:
  """English sentence without its punctuation -> the original sentence."""
  sentence = " ".join(str(example["en"]).split())
  unpunctuated = remove_punctuation(sentence)
  if not sentence or not unpunctuated:
    return None
  return {"unpunctuated": unpunctuated, "sentence": sentence}
