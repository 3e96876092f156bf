"""Coreference cluster: Definite Pronoun Resolution, WinoGrande and WSC.

All three are two-way choices. DPR and WinoGrande choose between two candidate noun
phrases, so the options are those phrases (in source order). SuperGLUE WSC pairs a pronoun
with one candidate noun phrase and labels whether they co-refer, so its options are
"no"/"yes" (as FLAN does for `super_glue/wsc`).

Differences from FLAN v1's preprocessing, on purpose (`flan_compat` has FLAN's): FLAN's
WinoGrande is a continuation: the context is the sentence before `_`, and each option is
a filler followed by the rest of the sentence; ours keeps the sentence with its blank and
the fillers as options (a cloze).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flan.data.preprocessors import Fields, preprocessor

NO_YES = ("no", "yes")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?](?:\s|$))")
_SPLIT_CLITIC = re.compile(r"(\w) ('(?:s|re|ve|ll|d|m)\b|n't\b)")
_SPACES = re.compile(r"\s+")


def _clean(text: str) -> str:
  """Collapses whitespace and reattaches punctuation split off by tokenization.

  WSC texts are partly PTB-tokenized ("Chester 's apartment", "reach it ."); joining the
  pieces back never changes a word.
  """
  text = _SPACES.sub(" ", text).strip()
  text = _SPLIT_CLITIC.sub(r"\1\2", text)
  return _SPACE_BEFORE_PUNCT.sub(r"\1", text).strip()


def _label(example: Mapping[str, Any], num_classes: int) -> int | None:
  label = example.get("label", -1)
  return label if isinstance(label, int) and 0 <= label < num_classes else None


@preprocessor("definite_pronoun_resolution", fields=("sentence", "pronoun", "options", "answer"))
def definite_pronoun_resolution(example: Mapping[str, Any]) -> Fields | None:
  """Which of the two candidates does the pronoun in the sentence refer to?"""
  candidates = [_clean(c) for c in example["candidates"]]
  label = _label(example, len(candidates))
  sentence, pronoun = _clean(example["sentence"]), _clean(example["pronoun"])
  if (
    label is None
    or len(candidates) < 2
    or not all(candidates)
    or not sentence
    or not pronoun
    or len(set(candidates)) < len(candidates)
  ):
    return None
  return {
    "sentence": sentence,
    "pronoun": pronoun,
    "options": candidates,
    "answer": candidates[label],
  }


@preprocessor("winogrande", fields=("sentence", "options", "answer"))
def winogrande(example: Mapping[str, Any]) -> Fields | None:
  """The sentence keeps its "_" blank; the options are the two fillers.

  TFDS maps the source answer "1"/"2" to label 0/1 and gives the unlabeled test split
  label -1, which is dropped.
  """
  options = [_clean(example["option1"]), _clean(example["option2"])]
  label = _label(example, 2)
  sentence = _clean(example["sentence"])
  if label is None or not sentence or not all(options) or options[0] == options[1]:
    return None
  return {"sentence": sentence, "options": options, "answer": options[label]}


@preprocessor("wsc", fields=("text", "noun", "pronoun", "options", "answer"))
def wsc(example: Mapping[str, Any]) -> Fields | None:
  """Does the pronoun (span2) refer to the noun phrase (span1)? label 1 = yes."""
  label = _label(example, 2)
  text = _clean(example["text"])
  noun, pronoun = _clean(example["span1_text"]), _clean(example["span2_text"])
  if label is None or not text or not noun or not pronoun:
    return None
  return {
    "text": text,
    "noun": noun,
    "pronoun": pronoun,
    "options": list(NO_YES),
    "answer": NO_YES[label],
  }
