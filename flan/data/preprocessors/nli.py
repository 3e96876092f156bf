"""Natural language inference cluster: ANLI, RTE, CB, SNLI, MNLI, QNLI and WNLI.

Every dataset asks whether one text follows from another, so all share one set of option
strings: three-way datasets (entailment / neutral / contradiction) answer from
`THREE_WAY` and two-way ones (entailment / not) from `TWO_WAY`, always in that fixed
order, whatever order the TFDS `ClassLabel` uses (CB's is entailment, contradiction,
neutral). Unlabeled examples (label -1: SNLI's no-consensus pairs, GLUE/SuperGLUE test
splits) are dropped.

Each example also gets a `relation` phrase ("follows from", "contradicts", ...) naming its
label in words, so the turned-around templates can ask for a hypothesis of a given kind.

Tokenized sources (SNLI, the MNLI sample) are cleaned with `flan.data.preprocessors.text`.

Differences from FLAN v1's preprocessing, on purpose (`flan_compat` has FLAN's): FLAN's
option strings vary per dataset (ANLI and CB "Yes" / "It's impossible to say" / "No", CB
in its label order yes, no, maybe; WNLI "no", "yes"; RTE and QNLI "yes", "no"); we use one
set in one order for the whole cluster. FLAN passes the text raw (tokenized, untrimmed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flan.data.preprocessors import Fields, preprocessor
from flan.data.preprocessors.text import class_index, detokenize, normalize_space

YES, MAYBE, NO = "yes", "it is not possible to tell", "no"
THREE_WAY = (YES, MAYBE, NO)
TWO_WAY = (YES, NO)

# The relation of the hypothesis to the premise, phrased to follow "a sentence that ...".
RELATION_3 = {YES: "follows from", MAYBE: "neither follows from nor contradicts", NO: "contradicts"}
RELATION_2 = {YES: "follows from", NO: "does not follow from"}

NLI_FIELDS = ("premise", "hypothesis", "relation", "options", "answer")


def _pair(
  premise: str, hypothesis: str, label: int | None, answers: Sequence[str], options: Sequence[str]
) -> Fields | None:
  """Fields of a premise/hypothesis pair; `answers[label]` is the option it maps to."""
  if label is None or not premise or not hypothesis:
    return None
  answer = answers[label]
  relations = RELATION_3 if len(options) == 3 else RELATION_2
  return {
    "premise": premise,
    "hypothesis": hypothesis,
    "relation": relations[answer],
    "options": list(options),
    "answer": answer,
  }


@preprocessor("anli", fields=NLI_FIELDS)
def anli(example: Mapping[str, Any]) -> Fields | None:
  """ANLI rounds 1-3: `context` is the premise; labels e / n / c."""
  return _pair(
    normalize_space(example["context"]),
    normalize_space(example["hypothesis"]),
    class_index(example, 3),
    (YES, MAYBE, NO),
    THREE_WAY,
  )


@preprocessor("rte", fields=NLI_FIELDS)
def rte(example: Mapping[str, Any]) -> Fields | None:
  """SuperGLUE RTE: entailment / not_entailment."""
  return _pair(
    normalize_space(example["premise"]),
    normalize_space(example["hypothesis"]),
    class_index(example, 2),
    (YES, NO),
    TWO_WAY,
  )


@preprocessor("cb", fields=NLI_FIELDS)
def cb(example: Mapping[str, Any]) -> Fields | None:
  """CommitmentBank: TFDS label order is entailment, contradiction, neutral."""
  return _pair(
    normalize_space(example["premise"]),
    normalize_space(example["hypothesis"]),
    class_index(example, 3),
    (YES, NO, MAYBE),
    THREE_WAY,
  )


@preprocessor("snli", fields=NLI_FIELDS)
def snli(example: Mapping[str, Any]) -> Fields | None:
  """SNLI: entailment, neutral, contradiction; -1 (no gold label) is dropped."""
  return _pair(
    detokenize(example["premise"]),
    detokenize(example["hypothesis"]),
    class_index(example, 3),
    (YES, MAYBE, NO),
    THREE_WAY,
  )


@preprocessor("mnli", fields=NLI_FIELDS)
def mnli(example: Mapping[str, Any]) -> Fields | None:
  """GLUE MNLI (matched and mismatched): entailment, neutral, contradiction."""
  return _pair(
    detokenize(example["premise"]),
    detokenize(example["hypothesis"]),
    class_index(example, 3),
    (YES, MAYBE, NO),
    THREE_WAY,
  )


@preprocessor("qnli", fields=("question", "sentence", "relation", "options", "answer"))
def qnli(example: Mapping[str, Any]) -> Fields | None:
  """GLUE QNLI: does the sentence answer the question? entailment / not_entailment."""
  question = normalize_space(example["question"])
  sentence = normalize_space(example["sentence"])
  label = class_index(example, 2)
  if label is None or not question or not sentence:
    return None
  answer = (YES, NO)[label]
  return {
    "question": question,
    "sentence": sentence,
    "relation": "answers" if answer == YES else "does not answer",
    "options": list(TWO_WAY),
    "answer": answer,
  }


@preprocessor("wnli", fields=("sentence1", "sentence2", "options", "answer"))
def wnli(example: Mapping[str, Any]) -> Fields | None:
  """GLUE WNLI: does sentence2 (a pronoun resolved) follow?

  TFDS order: not_entailment, entailment.
  """
  sentence1 = normalize_space(example["sentence1"])
  sentence2 = normalize_space(example["sentence2"])
  label = class_index(example, 2)
  if label is None or not sentence1 or not sentence2:
    return None
  return {
    "sentence1": sentence1,
    "sentence2": sentence2,
    "options": list(TWO_WAY),
    "answer": (NO, YES)[label],
  }
