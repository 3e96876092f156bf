"""Paraphrase cluster: MRPC, QQP, PAWS (Wikipedia) and STS-B.

MRPC, QQP and PAWS are binary (do the two texts mean the same?): options `NO_YES`, with a
`relation` phrase for the turned-around templates. STS-B is a regression dataset (a
similarity score in [0, 5]); like FLAN, the score is rounded to a whole number to give
six options "0".."5", and the exact score is kept in `score` for Pearson/Spearman.

Differences from FLAN v1's preprocessing, on purpose (`flan_compat` has FLAN's): STS-B
rounds half up (2.5 -> "3"), where FLAN's printf-style `as_string(label, precision=0)`
rounds the float32 label half to even (2.5 -> "2", 0.5 -> "0"); PTB-tokenized sources are
detokenized; QQP's doubled quotes are not rewritten to an apostrophe as FLAN does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from flan.data.preprocessors import Fields, preprocessor
from flan.data.preprocessors.text import class_index, detokenize, normalize_space

NO, YES = "no", "yes"
NO_YES = (NO, YES)
RELATION = {YES: "means the same as", NO: "does not mean the same as"}
STSB_OPTIONS = tuple(str(i) for i in range(6))
PAIR_FIELDS = ("sentence1", "sentence2", "relation", "options", "answer")


def _pair(
  first: str, second: str, label: int | None, keys: tuple[str, str] = ("sentence1", "sentence2")
) -> Fields | None:
  if label is None or not first or not second:
    return None
  answer = NO_YES[label]
  return {
    keys[0]: first,
    keys[1]: second,
    "relation": RELATION[answer],
    "options": list(NO_YES),
    "answer": answer,
  }


@preprocessor("mrpc", fields=PAIR_FIELDS)
def mrpc(example: Mapping[str, Any]) -> Fields | None:
  """GLUE MRPC news sentence pairs: not_equivalent / equivalent."""
  return _pair(
    normalize_space(example["sentence1"]),
    normalize_space(example["sentence2"]),
    class_index(example, 2),
  )


@preprocessor("qqp", fields=("question1", "question2", "relation", "options", "answer"))
def qqp(example: Mapping[str, Any]) -> Fields | None:
  """GLUE QQP Quora question pairs: not_duplicate / duplicate."""
  return _pair(
    normalize_space(example["question1"]),
    normalize_space(example["question2"]),
    class_index(example, 2),
    keys=("question1", "question2"),
  )


@preprocessor("paws_wiki", fields=PAIR_FIELDS)
def paws_wiki(example: Mapping[str, Any]) -> Fields | None:
  """PAWS-Wiki (tokenized at the source): different_meaning / paraphrase."""
  return _pair(
    detokenize(example["sentence1"]), detokenize(example["sentence2"]), class_index(example, 2)
  )


def round_score(score: float) -> str:
  """The STS-B option of a score: rounded half up, clamped to 0..5 ("2.5" -> "3")."""
  return STSB_OPTIONS[min(5, max(0, math.floor(score + 0.5)))]


@preprocessor("stsb", fields=("sentence1", "sentence2", "score", "options", "answer"))
def stsb(example: Mapping[str, Any]) -> Fields | None:
  """GLUE STS-B: `answer` is the rounded score, `score` the exact one (as a string).

  The unlabeled test split has score -1 and is dropped; the score, stored as float32, is
  written with 4 decimals at most ("4.8", not "4.800000190734863").
  """
  score = example["label"]
  sentence1 = normalize_space(example["sentence1"])
  sentence2 = normalize_space(example["sentence2"])
  if (
    not isinstance(score, (int, float))
    or not math.isfinite(score)
    or score < 0
    or not sentence1
    or not sentence2
  ):
    return None
  return {
    "sentence1": sentence1,
    "sentence2": sentence2,
    "score": f"{round(score, 4):g}",
    "options": list(STSB_OPTIONS),
    "answer": round_score(score),
  }
