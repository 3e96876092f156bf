"""Summarization cluster: ten summarization datasets plus AG News topic classification.

Every summarization preprocessor emits the source text and a `summary` target (ROUGE
compares the prediction with the rendered target). Cleanup is light and per source:
  cnn_dailymail: the highlights (one per line in TFDS) become one paragraph.
  gigaword: lower-cased PTB tokens; bracket escapes (-lrb-) and `` '' quotes are mapped
    back and split clitics/punctuation reattached. Its "UNK" and "#" (digit) placeholders
    are part of the data and stay.
  multi_news: source articles are separated by "|||||" in TFDS; they become paragraphs,
    and the summary's leading dash ("– ") is dropped.
  opinion_abstracts: the nested `{key, value}` sequences (argument sentences of an
    iDebate claim; critic reviews of a movie) are flattened: iDebate sentences into one
    paragraph (numeric keys sorted as numbers), critic reviews one per line.
  samsum: CRLF turn separators become plain newlines.
  wiki_lingua_english_en: GEM references (several in test) become `references`.
  ag_news_subset: HTML entities (written "#39;" without the "&") are decoded and the
    source's backslash line-break markers become spaces.

Differences from FLAN v1's preprocessing, on purpose (`flan_compat` has FLAN's): FLAN keeps
the cnn_dailymail highlights one per line, and its dateline removal keeps the text BEFORE
the first "2013 . " / ") -- " separator, so a datelined article becomes "WASHINGTON (CNN";
we keep the whole article. FLAN's aeslc turns the body's newlines into spaces and deletes
the subject's; FLAN's samsum replaces `<...>` markup (e.g. `<file_photo>`, greedily within a
line) with a space; its gigaword drops pairs containing "UNK" or "#"; its multi_news keeps
the "|||||" separators. Field names differ too (FLAN: `text`, `body`, `highlights`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

from flan.data.preprocessors import Fields, preprocessor

AG_NEWS_TOPICS = ("World", "Sports", "Business", "Science/Tech")  # TFDS label order
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_PTB_ESCAPES = {
  "-lrb-": "(",
  "-rrb-": ")",
  "-lsb-": "[",
  "-rsb-": "]",
  "-lcb-": "{",
  "-rcb-": "}",
  "``": '"',
  "''": '"',
}
_AG_CONTRACTION = re.compile(r" #39;(?=(?:s|t|d|m|ll|re|ve)\b)")
_AG_ENTITY = re.compile(r"(?<!&)#(\d{1,7});")
_PTB_PATTERN = re.compile("|".join(re.escape(k) for k in _PTB_ESCAPES), re.IGNORECASE)


def _clean(text: Any, paragraphs: bool = True) -> str:
  """Trims lines and collapses spaces (and runs of blank lines into one).

  With `paragraphs=False` the result is a single line.
  """
  text = _SPACES.sub(" ", str(text).replace("\r\n", "\n"))
  if not paragraphs:
    return " ".join(text.split())
  text = "\n".join(line.strip() for line in text.split("\n"))
  return _BLANK_LINES.sub("\n\n", text).strip()


def _pair(
  source: Any, summary: Any, source_name: str = "document", paragraphs: bool = True
) -> Fields | None:
  fields = {source_name: _clean(source, paragraphs), "summary": _clean(summary, False)}
  return fields if all(fields.values()) else None


@preprocessor("aeslc", fields=("email", "subject"))
def aeslc(example: Mapping[str, Any]) -> Fields | None:
  """Email body -> its subject line."""
  email, subject = _clean(example["email_body"]), _clean(example["subject_line"], False)
  return {"email": email, "subject": subject} if email and subject else None


@preprocessor("cnn_dailymail", fields=("article", "summary"))
def cnn_dailymail(example: Mapping[str, Any]) -> Fields | None:
  """News article -> its highlights, joined into one paragraph."""
  return _pair(example["article"], example["highlights"], "article")


def _detokenize_ptb(text: str) -> str:
  """Maps PTB escapes back and reattaches clitics and punctuation ("it 's ." -> "it's.")."""
  text = _PTB_PATTERN.sub(lambda m: _PTB_ESCAPES[m.group(0).lower()], text)
  text = " ".join(text.split())
  text = re.sub(r"(\w) ('(?:s|re|ve|ll|d|m)\b|n't\b)", r"\1\2", text)
  text = re.sub(r"([(\[]) ", r"\1", text)
  return re.sub(r" ([)\].,;:!?%])(?= |$)", r"\1", text)


@preprocessor("gigaword", fields=("document", "summary"))
def gigaword(example: Mapping[str, Any]) -> Fields | None:
  """First sentence of a news article -> its headline."""
  return _pair(
    _detokenize_ptb(example["document"]), _detokenize_ptb(example["summary"]), paragraphs=False
  )


@preprocessor("multi_news", fields=("document", "summary"))
def multi_news(example: Mapping[str, Any]) -> Fields | None:
  """Several news articles on one event -> a single summary."""
  articles = [_clean(a) for a in str(example["document"]).split("|||||")]
  summary = _clean(example["summary"], False).lstrip("–—- ").strip()
  return _pair("\n\n".join(a for a in articles if a), summary)


@preprocessor("newsroom", fields=("title", "text", "summary"))
def newsroom(example: Mapping[str, Any]) -> Fields | None:
  """Article (with its title) -> the summary from the page's metadata."""
  fields = _pair(example["text"], example["summary"], "text")
  title = _clean(example["title"], False)
  return {"title": title, **fields} if fields and title else None


def _opinions(records: Any) -> list[tuple[str, str]]:
  """(key, value) pairs of a decoded `Sequence({key, value})` (dict of lists or list)."""
  if isinstance(records, Mapping):
    pairs = list(zip(records.get("key", []), records.get("value", [])))
  elif isinstance(records, Sequence):
    pairs = [(r.get("key"), r.get("value")) for r in records if isinstance(r, Mapping)]
  else:
    pairs = []
  pairs = [(_clean(k, False), _clean(v, False)) for k, v in pairs]
  pairs = [(k, v) for k, v in pairs if v]
  if pairs and all(k.isdigit() for k, _ in pairs):
    pairs.sort(key=lambda kv: int(kv[0]))
  return pairs


@preprocessor("opinion_abstracts_idebate", fields=("topic", "argument", "claim"))
def opinion_abstracts_idebate(example: Mapping[str, Any]) -> Fields | None:
  """The sentences of a debate argument -> the one-sentence claim they support."""
  argument = " ".join(v for _, v in _opinions(example["_argument_sentences"]))
  fields = {
    "topic": _clean(example["_debate_name"], False),
    "argument": argument,
    "claim": _clean(example["_claim"], False),
  }
  return fields if all(fields.values()) else None


@preprocessor("opinion_abstracts_rotten_tomatoes", fields=("movie", "reviews", "consensus"))
def opinion_abstracts_rotten_tomatoes(example: Mapping[str, Any]) -> Fields | None:
  """Critics' reviews of a movie, one per line -> the critics' consensus."""
  reviews = "\n".join(v for _, v in _opinions(example["_critics"]))
  fields = {
    "movie": _clean(example["_movie_name"], False),
    "reviews": reviews,
    "consensus": _clean(example["_critic_consensus"], False),
  }
  return fields if all(fields.values()) else None


@preprocessor("samsum", fields=("dialogue", "summary"))
def samsum(example: Mapping[str, Any]) -> Fields | None:
  """Messenger-style chat, one turn per line -> a third-person summary."""
  return _pair(example["dialogue"], example["summary"], "dialogue")


@preprocessor("xsum", fields=("document", "summary"))
def xsum(example: Mapping[str, Any]) -> Fields | None:
  """BBC article -> its one-sentence introduction."""
  return _pair(example["document"], example["summary"])


@preprocessor("wiki_lingua_english_en", fields=("document", "summary", "references"))
def wiki_lingua_english_en(example: Mapping[str, Any]) -> Fields | None:
  """WikiHow section -> its summary; every GEM reference is a valid target."""
  fields = _pair(example["source"], example["target"])
  if fields is None:
    return None
  references = [_clean(r, False) for r in example.get("references") or []]
  references = list(dict.fromkeys(r for r in [fields["summary"], *references] if r))
  return {**fields, "references": references}


def _numeric_entity(match: re.Match) -> str:
  code = int(match.group(1))
  if 128 <= code < 160:  # Windows-1252 codes (#151; is an em dash)
    return bytes([code]).decode("cp1252", errors="replace")
  return chr(code) if 0 < code < 0x110000 else ""


def _clean_ag_news(text: Any) -> str:
  """AG News writes entities without "&" ("#39;", "#36;") and "\\" for line breaks."""
  text = _AG_CONTRACTION.sub("'", str(text))  # "AMD #39;s" was "AMD's"
  text = html.unescape(_AG_ENTITY.sub(_numeric_entity, text))
  return _clean(text.replace("\\", " "), False)


@preprocessor("ag_news_subset", fields=("title", "text", "options", "answer"))
def ag_news_subset(example: Mapping[str, Any]) -> Fields | None:
  """News title and description -> one of four topics."""
  label = example.get("label", -1)
  title, text = _clean_ag_news(example["title"]), _clean_ag_news(example["description"])
  if not isinstance(label, int) or not 0 <= label < len(AG_NEWS_TOPICS) or not text or not title:
    return None
  return {
    "title": title,
    "text": text,
    "options": list(AG_NEWS_TOPICS),
    "answer": AG_NEWS_TOPICS[label],
  }
