"""Natural language inference cluster: ANLI, RTE, CB, SNLI, MNLI, QNLI and WNLI.

Every dataset asks whether one text follows from another, so all share one set of option
strings: three-way datasets (entailment / neutral / contradiction) answer from
`THREE_WAY` and two-way ones (entailment / not) from `TWO_WAY`, always in that fixed
order, whatever order the TFDS `ClassLabel` uses (CB's is entailment, contradiction,
neutral). Unlabeled examples (label -1: SNLI's no-consensus pairs, GLUE/SuperGLUE test
splits) are dropped.

Each example also gets a `relation` phrase ("follows from", "contradicts", ...) naming its
label in words, so the turned-around templates can ask for a hypothesis of a given kind.

`detokenize` lives here and is shared with the sentiment and paraphrase modules: several
sources (SNLI, the MNLI sample, SST-2, PAWS, the IMDB/Yelp samples) are PTB-tokenized
(`it 's a film .`), and targets should read like ordinary text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from flan.preprocessors import Fields, preprocessor

YES, MAYBE, NO = "yes", "it is not possible to tell", "no"
THREE_WAY = (YES, MAYBE, NO)
TWO_WAY = (YES, NO)

# The relation of the hypothesis to the premise, phrased to follow "a sentence that ...".
RELATION_3 = {YES: "follows from", MAYBE: "neither follows from nor contradicts",
              NO: "contradicts"}
RELATION_2 = {YES: "follows from", NO: "does not follow from"}

NLI_FIELDS = ("premise", "hypothesis", "relation", "options", "answer")

_PTB_BRACKETS = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "(",
                 "-RCB-": ")"}
_BRACKET_TOKEN = re.compile("|".join(map(re.escape, _PTB_BRACKETS)))
_PTB_QUOTES = re.compile(r"``|''")
_CONTRACTION = re.compile(r"[ \t]+(n't|'s|'re|'ve|'m|'ll|'d)\b", re.IGNORECASE)
_BEFORE_PUNCT = re.compile(r"[ \t]+([.,;:!?%)\]]|\.\.\.)(?=\s|$|[\"'.,;:!?)\]])")
_AFTER_OPEN = re.compile(r"([(\[$])[ \t]+")
_PLURAL_POSSESSIVE = re.compile(r"(?<=\ws) '(?=\s|$)")  # `parents ' house`
_DECADE = re.compile(r"' (\d0s)\b")  # `the ' 60s`
_BACKTICK_QUOTED = re.compile(r"`[ \t]*([^`'\n]*?)[ \t]*'")  # `` ` word ' ``
_LONE_QUOTE = re.compile(r'(?<!\S)"(?!\S)')  # a quote token with space on both sides
_SPACES = re.compile(r"[ \t\r\f\v]+")
_SPACE_AROUND_NEWLINE = re.compile(r" *\n *")
_MANY_NEWLINES = re.compile(r"\n{3,}")


def normalize_space(text: Any) -> str:
  """Collapses runs of spaces and tabs, trims lines, keeps at most one blank line."""
  text = _SPACES.sub(" ", str(text))
  text = _SPACE_AROUND_NEWLINE.sub("\n", text)
  return _MANY_NEWLINES.sub("\n\n", text).strip()


def _join_quotes(text: str) -> str:
  """Attaches free-standing quote tokens to the words they enclose, pairing them in order.

  Quotes already attached to a word (untokenized text) are not free-standing and stay.
  """
  parts = _LONE_QUOTE.split(text)
  out = parts[0]
  for i, part in enumerate(parts[1:]):
    if i % 2 == 0:  # an opening quote: glue it to the next word
      out += '"' + part.lstrip(" ")
    else:  # a closing quote: glue it to the previous word
      out = out.rstrip(" ") + '"' + part
  return out


def detokenize(text: Any) -> str:
  """Joins PTB-style tokens back into ordinary text (`it 's good .` -> `it's good.`).

  Conservative: removes only the spaces that tokenization inserts (before closing
  punctuation, inside split contractions and quotes, after opening brackets), maps PTB
  bracket and quote tokens back, and keeps line breaks. Untokenized text passes unchanged
  apart from whitespace normalization.
  """
  text = normalize_space(text)
  text = _BRACKET_TOKEN.sub(lambda m: _PTB_BRACKETS[m.group(0)], text)
  text = _PTB_QUOTES.sub('"', text)
  text = _CONTRACTION.sub(r"\1", text)
  text = _PLURAL_POSSESSIVE.sub("'", text)
  text = _DECADE.sub(r"'\1", text)
  text = _BACKTICK_QUOTED.sub(r"'\1'", text)
  text = _join_quotes(text)
  text = _BEFORE_PUNCT.sub(r"\1", text)
  return _AFTER_OPEN.sub(r"\1", text)


def class_index(example: Mapping[str, Any], num_classes: int, key: str = "label") -> int | None:
  """The example's label if it is a valid class id, else None (unlabeled or corrupt)."""
  label = example.get(key, -1)
  if isinstance(label, bool) or not isinstance(label, int):
    return None
  return label if 0 <= label < num_classes else None


def _pair(premise: str, hypothesis: str, label: int | None, answers: Sequence[str],
          options: Sequence[str]) -> Fields | None:
  """Fields of a premise/hypothesis pair; `answers[label]` is the option it maps to."""
  if label is None or not premise or not hypothesis:
    return None
  answer = answers[label]
  relations = RELATION_3 if len(options) == 3 else RELATION_2
  return {"premise": premise, "hypothesis": hypothesis, "relation": relations[answer],
          "options": list(options), "answer": answer}


@preprocessor("anli", fields=NLI_FIELDS)
def anli(example: Mapping[str, Any]) -> Fields | None:
  """ANLI rounds 1-3: `context` is the premise; labels e / n / c."""
  return _pair(normalize_space(example["context"]), normalize_space(example["hypothesis"]),
               class_index(example, 3), (YES, MAYBE, NO), THREE_WAY)


@preprocessor("rte", fields=NLI_FIELDS)
def rte(example: Mapping[str, Any]) -> Fields | None:
  """SuperGLUE RTE: entailment / not_entailment."""
  return _pair(normalize_space(example["premise"]), normalize_space(example["hypothesis"]),
               class_index(example, 2), (YES, NO), TWO_WAY)


@preprocessor("cb", fields=NLI_FIELDS)
def cb(example: Mapping[str, Any]) -> Fields | None:
  """CommitmentBank: TFDS label order is entailment, contradiction, neutral."""
  return _pair(normalize_space(example["premise"]), normalize_space(example["hypothesis"]),
               class_index(example, 3), (YES, NO, MAYBE), THREE_WAY)


@preprocessor("snli", fields=NLI_FIELDS)
def snli(example: Mapping[str, Any]) -> Fields | None:
  """SNLI: entailment, neutral, contradiction; -1 (no gold label) is dropped."""
  return _pair(detokenize(example["premise"]), detokenize(example["hypothesis"]),
               class_index(example, 3), (YES, MAYBE, NO), THREE_WAY)


@preprocessor("mnli", fields=NLI_FIELDS)
def mnli(example: Mapping[str, Any]) -> Fields | None:
  """GLUE MNLI (matched and mismatched): entailment, neutral, contradiction."""
  return _pair(detokenize(example["premise"]), detokenize(example["hypothesis"]),
               class_index(example, 3), (YES, MAYBE, NO), THREE_WAY)


@preprocessor("qnli", fields=("question", "sentence", "relation", "options", "answer"))
def qnli(example: Mapping[str, Any]) -> Fields | None:
  """GLUE QNLI: does the sentence answer the question? entailment / not_entailment."""
  question = normalize_space(example["question"])
  sentence = normalize_space(example["sentence"])
  label = class_index(example, 2)
  if label is None or not question or not sentence:
    return None
  answer = (YES, NO)[label]
  return {"question": question, "sentence": sentence,
          "relation": "answers" if answer == YES else "does not answer",
          "options": list(TWO_WAY), "answer": answer}


@preprocessor("wnli", fields=("sentence1", "sentence2", "options", "answer"))
def wnli(example: Mapping[str, Any]) -> Fields | None:
  """GLUE WNLI: does sentence2 (a pronoun resolved) follow? TFDS order: not_entailment, entailment."""
  sentence1 = normalize_space(example["sentence1"])
  sentence2 = normalize_space(example["sentence2"])
  label = class_index(example, 2)
  if label is None or not sentence1 or not sentence2:
    return None
  return {"sentence1": sentence1, "sentence2": sentence2, "options": list(TWO_WAY),
          "answer": (NO, YES)[label]}
