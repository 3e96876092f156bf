"""Translation: ParaCrawl en-es, WMT'14 en-fr and six WMT'16 pairs with English.

Every pair has English on one side. A preprocessor emits both sentences, `en` and `xx`
(the other language), and the other language's name `xx_language`; each template picks a
direction, so half of a dataset's templates translate into English and half out of it.
(FLAN's templates mix both directions unevenly, e.g. six of ten WMT'16 templates translate
out of English, and add "which language is this?" and "write a sentence in X" ones; FLAN
passes the raw sentences, which `flan_compat` does.) The rendered target is the reference
for BLEU.

The English side of some sources is tokenized (spaces around punctuation, split
contractions: `person , who`, `do n't`); `flan.data.preprocessors.text.detokenize` undoes the
common cases so targets read like ordinary text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flan.data.preprocessors import Fields, preprocessor
from flan.data.preprocessors.text import detokenize, normalize_space

FIELDS = ("en", "xx", "xx_language")

LANGUAGES: Mapping[str, str] = {
  "cs": "Czech",
  "de": "German",
  "es": "Spanish",
  "fi": "Finnish",
  "fr": "French",
  "ro": "Romanian",
  "ru": "Russian",
  "tr": "Turkish",
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


def _make(code: str):
  """The preprocessor of a pair whose non-English side is `code`."""

  def translate(example: Mapping[str, Any]) -> Fields | None:
    en = detokenize(str(example.get("en", "")))
    xx = normalize_space(example.get(code, ""))
    if not en or not xx:
      return None
    return {"en": en, "xx": xx, "xx_language": LANGUAGES[code]}

  translate.__name__ = f"translate_{code}_en"
  translate.__doc__ = (
    f"One {LANGUAGES[code]}-English sentence pair -> `en`, `xx`, "
    "`xx_language`; drops pairs with an empty side."
  )
  return translate


for _dataset, _code in PAIRS.items():
  preprocessor(_dataset, fields=FIELDS)(_make(_code))
