"""Sentiment cluster: IMDB reviews, Sentiment140, SST-2 and Yelp polarity.

All four are binary: options are `NEG_POS` ("negative", "positive"), in that order. The
sources need some cleanup to read as text: IMDB keeps HTML line breaks (`<br />`) and a
few Windows-1252 characters, Yelp keeps its CSV escapes (`\\n`, `\\""`), tweets are
HTML-escaped (`&amp;`), and SST-2 (and the shared IMDB/Yelp samples) are PTB-tokenized.

Differences from FLAN v1's preprocessing, on purpose (`flan_compat` has FLAN's): FLAN only
turns IMDB's `<br />` into a newline and Yelp's `\\n` into a space (and `\\""` into `"`);
it neither unescapes nor detokenizes, and it keeps neutral Sentiment140 tweets (see below).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

from flan.data.preprocessors import Fields, preprocessor
from flan.data.preprocessors.text import class_index, detokenize, normalize_space

NEGATIVE, POSITIVE = "negative", "positive"
NEG_POS = (NEGATIVE, POSITIVE)
SENTIMENT140_NEUTRAL = 2  # polarity: 0 negative, 2 neutral, 4 positive.

_HTML_BREAK = re.compile(r"<\s*br\s*/?\s*>", re.IGNORECASE)
# C1 control characters that are really Windows-1252 punctuation (IMDB has many).
_CP1252 = str.maketrans(
  {"\x85": "...", "\x91": "'", "\x92": "'", "\x93": '"', "\x94": '"', "\x96": "-", "\x97": "-"}
)


def _fields(text: str, label: int | None, key: str = "text") -> Fields | None:
  if label is None or not text:
    return None
  return {key: text, "options": list(NEG_POS), "answer": NEG_POS[label]}


def clean_review(text: Any) -> str:
  """IMDB/Yelp text: line breaks restored, escapes and tokenization undone."""
  text = str(text).translate(_CP1252)
  text = _HTML_BREAK.sub("\n", text)
  text = text.replace('\\""', '"').replace('""', '"').replace('\\"', '"')
  text = text.replace("\\n", "\n")
  return detokenize(text)


@preprocessor("imdb_reviews", fields=("text", "options", "answer"))
def imdb_reviews(example: Mapping[str, Any]) -> Fields | None:
  """IMDB movie reviews: neg / pos (the unlabeled split has -1 and is dropped)."""
  return _fields(clean_review(example["text"]), class_index(example, 2))


@preprocessor("sentiment140", fields=("text", "options", "answer"))
def sentiment140(example: Mapping[str, Any]) -> Fields | None:
  """Tweets with polarity 0 (negative), 2 (neutral, dropped) or 4 (positive).

  FLAN's code defines a filter that would drop the neutral tweets, but never applies it: its
  preprocessing labels polarity 2 "negative" (as `flan_compat` does). We drop them.

  Polarity is compared with the neutral 2, which on the source's three values is the same
  as mapping 0 and 4, and keeps arbitrary mock integers usable.
  """
  polarity = example["polarity"]
  if not isinstance(polarity, int) or polarity == SENTIMENT140_NEUTRAL:
    return None
  text = normalize_space(html.unescape(str(example["text"])))
  return _fields(text, int(polarity > SENTIMENT140_NEUTRAL))


@preprocessor("sst2", fields=("sentence", "options", "answer"))
def sst2(example: Mapping[str, Any]) -> Fields | None:
  """GLUE SST-2 movie-review phrases (lower-cased and tokenized at the source)."""
  return _fields(detokenize(example["sentence"]), class_index(example, 2), key="sentence")


@preprocessor("yelp_polarity_reviews", fields=("text", "options", "answer"))
def yelp_polarity_reviews(example: Mapping[str, Any]) -> Fields | None:
  """Yelp polarity: class "1" (1-2 stars) is negative, "2" (4-5 stars) positive."""
  return _fields(clean_review(example["text"]), class_index(example, 2))
