"""Text cleanup and label helpers shared by the preprocessors.

Several sources (SNLI, the MNLI sample, SST-2, PAWS, the IMDB/Yelp samples) are
PTB-tokenized (`it 's a film .`); `detokenize` makes them read like ordinary text, so that
targets look like what a model should write.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_PTB_BRACKETS = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "(", "-RCB-": ")"}
_BRACKET_TOKEN = re.compile("|".join(map(re.escape, _PTB_BRACKETS)))
_PTB_QUOTES = re.compile(r"``|''")
_CONTRACTION = re.compile(r"[ \t]+(n't|'s|'re|'ve|'m|'ll|'d)\b", re.IGNORECASE)
_BEFORE_PUNCT = re.compile(r"[ \t]+([.,;:!?%)\]]|\.\.\.)(?=\s|$|[\"'.,;:!?)\]])")
_AFTER_OPEN = re.compile(r"([(\[$])[ \t]+")
_SPLIT_APOSTROPHE = re.compile(r"(\w) ' (s|re|ve|m|ll|d|t)\b", re.IGNORECASE)  # `I ' m`
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
  text = _SPLIT_APOSTROPHE.sub(r"\1'\2", text)
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
