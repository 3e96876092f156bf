"""Translation: ParaCrawl en-es, WMT'14 en-fr and six WMT'16 pairs with English.

Every pair has English on one side. A preprocessor emits both sentences, `en` and `xx`
(the other language), and the other language's name `xx_language`; each template picks a
direction, so half of a dataset's templates translate into English and half out of it,
as FLAN's translation templates do. The rendered target is the reference for BLEU.

The English side of some sources is tokenized (spaces around punctuation, split
contractions: `person , who`, `do n't`); `detokenize` undoes the common cases so targets
read like ordinary text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flan.preprocessors import Fields, preprocessor

FIELDS = ("en", "xx", "xx_language")

LANGUAGES: Mapping[str, str] = {
    "cs": "Czech", "de": "German", "es": "Spanish", "fi": "Finnish", "fr": "French",
    "ro": "Romanian", "ru": "Russian", "tr": "Turkish",
}

# dataset -> code of its non-English side (the TFDS Translation feature key).
PAIRS: Mapping[str, str] = {
    "para_crawl_enes": "es",
    "wmt14_enfr": "fr",
    "wmt16_csen": "cs",
    "wmt16_deen": "de",
    "wmt16_fien": "fi",
    "wmt16_roen": "ro",
    "wmt16_ruen": "ru",
    "wmt16_tren": "tr",
}

_SPACES = re.compile(r"\s+")
_CONTRACTION = re.compile(r" (n't|'s|'re|'ve|'m|'ll|'d)\b", re.IGNORECASE)
_SPLIT_APOSTROPHE = re.compile(r"(\w) ' (s|re|ve|m|ll|d|t)\b", re.IGNORECASE)  # I ' m
_BEFORE_PUNCT = re.compile(r" ([.,;:!?%)\]])")
_AFTER_BRACKET = re.compile(r"([(\[]) ")


def detokenize(text: str) -> str:
  """Joins PTB-style tokenized English back together (`word , word .` -> `word, word.`).

  Conservative: only spaces before closing punctuation and split contractions, and after
  opening brackets, are removed; on untokenized English it changes nothing. Not for
  languages that put a space before `?`/`:` by convention (French).
  """
  text = _SPACES.sub(" ", text).strip()
  text = _SPLIT_APOSTROPHE.sub(r"\1'\2", text)
  text = _CONTRACTION.sub(r"\1", text)
  text = _BEFORE_PUNCT.sub(r"\1", text)
  return _AFTER_BRACKET.sub(r"\1", text)


def _make(code: str):
  """The preprocessor of a pair whose non-English side is `code`."""

  def translate(example: Mapping[str, Any]) -> Fields | None:
    en = detokenize(str(example.get("en", "")))
    xx = _SPACES.sub(" ", str(example.get(code, ""))).strip()
    if not en or not xx:
      return None
    return {"en": en, "xx": xx, "xx_language": LANGUAGES[code]}

  translate.__name__ = f"translate_{code}_en"
  translate.__doc__ = (f"One {LANGUAGES[code]}-English sentence pair -> `en`, `xx`, "
                       "`xx_language`; drops pairs with an empty side.")
  return translate


for _dataset, _code in PAIRS.items():
  preprocessor(_dataset, fields=FIELDS)(_make(_code))
