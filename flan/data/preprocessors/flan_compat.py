"""FLAN v1's own preprocessing, per FLAN task config, for the exact-replication mode.

Our preprocessors (the cluster modules beside this one) clean text, keep option strings
consistent within a cluster and add fields for our templates. FLAN's code does none of that,
so rendering FLAN's templates with our fields would not give FLAN's text. In the replication
mode (`flan.data.tasks.register(flan_templates_dir=...)`) every example goes through the
function here that does what FLAN v1's `tasks.py` does for that task, field for field:
its option strings and their order, its formulations (ReCoRD appends the query's right part
to every entity; WinoGrande cuts the sentence at `_`; CoQA numbers every question and
answer), its cleaning (samsum `<...>`, imdb `<br />`, yelp `\\n`, qqp `""`, e2e `[`...),
and its bugs (cnn_dailymail keeps the text before the first dateline separator; natural
questions appends "?"; STS-B rounds the float32 label printf-style, half to even; the
sentiment140 filter FLAN defines is never applied, so polarity 2 counts as negative).

TensorFlow semantics are kept where Python's differ: regular expressions are RE2's, whose
`\\w` and `\\s` are ASCII-only and whose `$` is the end of the text; `tf.strings.strip` and
`tf.strings.lower` touch ASCII only; string offsets (wsc273) count UTF-8 bytes.

Field names are FLAN's, with three changes that keep our field conventions
(`flan.data.preprocessors`) and change no rendered byte:
  * `options_` / `options_str` (FLAN's pre-rendered OPTIONS block) are not emitted: the
    converted templates say `{options}`, which renders `options` exactly as FLAN's
    `format_options` does;
  * generation tasks' list of reference answers (FLAN's `answers`) is `references`;
    ReCoRD keeps `answers` (its correct options);
  * STS-B's `answer` is FLAN's `answer_str` (the rounded label, one of the options; FLAN's
    own `answer` is the float label, which no template shows, kept here as `label`).
Rows FLAN's code could not process are dropped (None): a label outside the option range, as
on unlabeled test splits, where `tf.boolean_mask(options, one_hot)[0]` fails; a ReCoRD query
without `@placeholder` or a WinoGrande sentence without `_`.

Every example also carries `flan_task`, the FLAN task config it went through: the converted
template file is chosen by that task's PATTERNS key (`squad` reads v1.1 and v2.0, whose
FLAN templates differ).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flan.data.preprocessors import Fields

TASK_FIELD = "flan_task"  # the FLAN task config an example went through.
_ASCII_SPACE = " \t\n\v\f\r"  # tf.strings.strip (absl::StripAsciiWhitespace)
_RE2_SPACE = r"[\t\n\f\r ]"  # RE2's \s


@dataclasses.dataclass(frozen=True)
class FlanTask:
  """One FLAN v1 task config.

  Attributes:
    name: FLAN's task config name (`TASK_CONFIGS` key), e.g. "anli_r1".
    pattern_key: its `PATTERNS` key (several configs share one, e.g. anli_r1..r3 -> anli).
    builders: TFDS builders (`name/config`, no version) it reads: FLAN's own first, then
      the equivalents our dataset table reads instead (e.g. super_glue/wsc.fixed).
    dataset: our dataset (`flan.data.datasets`) it feeds; "" for FLAN configs outside the
      62 datasets (true_case, word_segment, wsc273).
    fn: decoded TFDS example -> fields, or None (dropped by FLAN's filter).
    fields: every key `fn` may return.
  """

  name: str
  pattern_key: str
  builders: tuple[str, ...]
  dataset: str
  fn: Callable[[Mapping[str, Any]], Fields | None]
  fields: tuple[str, ...]

  def __call__(self, example: Mapping[str, Any]) -> Fields | None:
    fields = self.fn(example)
    if fields is not None:
      fields[TASK_FIELD] = self.name
    return fields


TASKS: dict[str, FlanTask] = {}


def _task(
  name: str,
  builders: str | Sequence[str],
  fields: Sequence[str],
  dataset: str | None = None,
  pattern_key: str = "",
):
  """Decorator: registers `fn` as FLAN task config `name` (of our dataset `name` by default)."""
  builders = (builders,) if isinstance(builders, str) else tuple(builders)

  def register(fn):
    TASKS[name] = FlanTask(
      name, pattern_key or name, builders, name if dataset is None else dataset, fn, tuple(fields)
    )
    return fn

  return register


def _pick(options: Sequence[str], label: Any) -> str | None:
  """FLAN's `tf.boolean_mask(options, tf.one_hot(label, n))[0]`; None where it would fail."""
  if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(options):
    return None
  return options[label]


def _classify(options: Sequence[str], label: Any, /, **fields) -> Fields | None:
  answer = _pick(options, label)
  if answer is None:
    return None
  return {**fields, "options": list(options), "answer": answer}


def _enumerate_items(items: Sequence[str]) -> str:
  """FLAN's `enumerate_items`: "1. a\\n2. b"."""
  return "\n".join(f"{i}. {item}" for i, item in enumerate(items, 1))


def _strip(text: str) -> str:
  return text.strip(_ASCII_SPACE)


def _references(example: Mapping[str, Any]) -> list[str]:
  """GEM: the references, then the target (FLAN's `tf.concat([references, [target]])`)."""
  return [*example["references"], example["target"]]


# ----------------------------------------------------------------------------- NLI

_NLI = ("premise", "hypothesis", "options", "glm_options", "answer", "glm_answer")
_ANLI_OPTIONS = ("Yes", "It's impossible to say", "No")
_CB_OPTIONS = ("Yes", "No", "It's impossible to say")
_GLM_3 = ("true", "neither", "false")
_MNLI_OPTIONS = ("yes", "it is not possible to tell", "no")


def _with_glm(options, glm_options, label, /, **fields) -> Fields | None:
  answer, glm = _pick(options, label), _pick(glm_options, label)
  if answer is None or glm is None:
    return None
  return {
    **fields,
    "options": list(options),
    "glm_options": list(glm_options),
    "answer": answer,
    "glm_answer": glm,
  }


@_task("rte", "super_glue/rte", _NLI)
def rte(ex):
  return _with_glm(
    ("yes", "no"),
    ("true", "false"),
    ex["label"],
    premise=ex["premise"],
    hypothesis=ex["hypothesis"],
  )


def _anli(ex):
  fields = _with_glm(
    _ANLI_OPTIONS, _GLM_3, ex["label"], context=ex["context"], hypothesis=ex["hypothesis"]
  )
  return fields and {**fields, "label": ex["label"]}


for _round in ("r1", "r2", "r3"):
  _task(
    f"anli_{_round}",
    f"anli/{_round}",
    ("context", "hypothesis", "options", "glm_options", "label", "answer", "glm_answer"),
    dataset="anli",
    pattern_key="anli",
  )(_anli)


@_task("cb", "super_glue/cb", _NLI)
def cb(ex):
  return _with_glm(
    _CB_OPTIONS, _GLM_3, ex["label"], premise=ex["premise"], hypothesis=ex["hypothesis"]
  )


def _mnli(ex):
  return _classify(_MNLI_OPTIONS, ex["label"], premise=ex["premise"], hypothesis=ex["hypothesis"])


for _name in ("mnli_matched", "mnli_mismatched"):
  _task(
    _name,
    "glue/mnli",
    ("premise", "hypothesis", "options", "answer"),
    dataset="mnli",
    pattern_key="mnli",
  )(_mnli)


@_task("qnli", "glue/qnli", ("sentence", "question", "options", "answer"))
def qnli(ex):
  return _classify(("yes", "no"), ex["label"], sentence=ex["sentence"], question=ex["question"])


@_task("wnli", "glue/wnli", ("sentence1", "sentence2", "options", "answer"))
def wnli(ex):
  return _classify(("no", "yes"), ex["label"], sentence1=ex["sentence1"], sentence2=ex["sentence2"])


@_task("snli", "snli", ("premise", "hypothesis", "options", "answer"))
def snli(ex):
  if ex["label"] not in (0, 1, 2):  # FLAN's _filter_snli
    return None
  return _mnli(ex)


# ----------------------------------------------------------------------------- commonsense


@_task(
  "copa", "super_glue/copa", ("premise", "question", "glm_premise", "options", "label", "answer")
)
def copa(ex):
  connector = ex["question"].replace("cause", " because").replace("effect", " so")
  glm_premise = re.sub(r".\Z", lambda _: connector, ex["premise"])  # RE2's `$` is \Z
  return _classify(
    (ex["choice1"], ex["choice2"]),
    ex["label"],
    premise=ex["premise"],
    question=ex["question"],
    glm_premise=glm_premise,
    label=ex["label"],
  )


@_task("hellaswag", "hellaswag", ("context", "options", "activity_label", "answer"))
def hellaswag(ex):
  if ex["label"] not in (0, 1, 2, 3):  # FLAN's _filter_hellaswag
    return None
  context = re.sub(r"\[header\]" + _RE2_SPACE, "", ex["context"])
  context = re.sub(r"\[.*?\]" + _RE2_SPACE, "\n", context)
  options = [re.sub(r"\[.*?\]" + _RE2_SPACE, "", e) for e in ex["endings"]]
  return _classify(options, ex["label"], context=context, activity_label=ex["activity_label"])


@_task("piqa", "piqa", ("goal", "options", "answer"))
def piqa(ex):
  return _classify((ex["sol1"], ex["sol2"]), ex["label"], goal=ex["goal"])


@_task("story_cloze", "story_cloze/2016", ("context", "options", "label", "answer"))
def story_cloze(ex):
  label = ex["label"] - 1
  return _classify(ex["endings"], label, context=ex["context"], label=label)


# ----------------------------------------------------------------------------- sentiment

_POLARITY = ("negative", "positive")


@_task("imdb_reviews", "imdb_reviews/plain_text", ("text", "options", "label", "answer"))
def imdb_reviews(ex):
  return _classify(
    _POLARITY, ex["label"], text=ex["text"].replace("<br />", "\n"), label=ex["label"]
  )


@_task("sentiment140", "sentiment140", ("text", "options", "label", "answer"))
def sentiment140(ex):
  # FLAN defines _filter_sentiment140 but never applies it: polarity 2 (neutral) is kept and
  # labelled negative, as every polarity but 3 and 4.
  label = int(ex["polarity"] in (3, 4))
  return _classify(_POLARITY, label, text=ex["text"], label=label)


@_task("sst2", "glue/sst2", ("sentence", "options", "answer"))
def sst2(ex):
  return _classify(_POLARITY, ex["label"], sentence=ex["sentence"])


@_task("yelp_polarity_reviews", "yelp_polarity_reviews", ("text", "options", "label", "answer"))
def yelp_polarity_reviews(ex):
  text = ex["text"].replace('\\""', '"').replace("\\n", " ")
  return _classify(_POLARITY, ex["label"], text=text, label=ex["label"])


# ----------------------------------------------------------------------------- paraphrase


@_task(
  "glue_mrpc", "glue/mrpc", ("sentence1", "sentence2", "options", "label", "answer"), dataset="mrpc"
)
def glue_mrpc(ex):
  return _classify(
    ("no", "yes"),
    ex["label"],
    sentence1=ex["sentence1"],
    sentence2=ex["sentence2"],
    label=ex["label"],
  )


@_task(
  "glue_qqp", "glue/qqp", ("question1", "question2", "options", "label", "answer"), dataset="qqp"
)
def glue_qqp(ex):
  return _classify(
    ("no", "yes"),
    ex["label"],
    question1=ex["question1"].replace('""', "'"),
    question2=ex["question2"].replace('""', "'"),
    label=ex["label"],
  )


@_task("paws_wiki", "paws_wiki", ("sentence1", "sentence2", "options", "label", "answer"))
def paws_wiki(ex):
  return _classify(
    ("no", "yes"),
    ex["label"],
    sentence1=ex["sentence1"],
    sentence2=ex["sentence2"],
    label=ex["label"],
  )


STSB_OPTIONS = ("0", "1", "2", "3", "4", "5")


@_task("stsb", "glue/stsb", ("sentence1", "sentence2", "label", "options", "answer"))
def stsb(ex):
  # tf.strings.as_string(label, precision=0) is printf("%.0f") of the float32 label: it
  # rounds the exact binary value half to even (0.5 -> "0", 2.5 -> "2", 3.5 -> "4").
  # Python's "%.0f" of the same value (a float32 widened exactly to a double) agrees.
  return {
    "sentence1": ex["sentence1"],
    "sentence2": ex["sentence2"],
    "label": ex["label"],
    "options": list(STSB_OPTIONS),
    "answer": "%.0f" % ex["label"],  # noqa: UP031
  }


# ----------------------------------------------------------------------------- closed-book QA


def _arc(ex):
  options = ex["choices"]["text"]
  if len(options) != 4:  # FLAN's _filter_arc
    return None
  return _classify(options, ex["answerKey"], question=ex["question"], label=ex["answerKey"])


for _config in ("Challenge", "Easy"):
  _task(
    f"arc_{_config.lower()}",
    f"ai2_arc/ARC-{_config}",
    ("question", "options", "answer", "label"),
    dataset="arc",
    pattern_key="arc",
  )(_arc)


@_task("natural_questions", "natural_questions_open", ("question", "answer", "references"))
def natural_questions(ex):
  return {
    "question": ex["question"] + "?",
    "answer": ex["answer"][0],
    "references": list(ex["answer"]),
  }


@_task("trivia_qa", "trivia_qa/rc", ("question", "answer", "references"))
def trivia_qa(ex):
  answer = ex["answer"]
  return {
    "question": ex["question"],
    "answer": answer["normalized_value"],
    "references": list(answer["normalized_aliases"]),
  }


# ----------------------------------------------------------------------------- struct to text


@_task("common_gen", "gem/common_gen", ("concepts", "concepts_newline", "target", "references"))
def common_gen(ex):
  return {
    "concepts": ", ".join(ex["concepts"]),
    "concepts_newline": "\n".join(ex["concepts"]),
    "target": ex["target"],
    "references": _references(ex),
  }


@_task("dart", "gem/dart", ("tripleset", "target", "references", "tripleset_newline"))
def dart(ex):
  tripleset = re.sub(r"\[(.*?)\]", "", "; ".join(ex["tripleset"]))
  return {
    "tripleset": tripleset,
    "target": ex["target"],
    "references": _references(ex),
    "tripleset_newline": "\n".join(ex["tripleset"]),
  }


@_task("e2e_nlg", "gem/e2e_nlg", ("meaning_representation", "target", "references"))
def e2e_nlg(ex):
  mr = ex["meaning_representation"].replace("[", " = ").replace("]", "")
  return {"meaning_representation": mr, "target": ex["target"], "references": _references(ex)}


@_task("web_nlg_en", "gem/web_nlg_en", ("input_string", "target", "references"))
def web_nlg_en(ex):
  text = "; ".join(ex["input"]).replace("_", " ").replace(" | ", ", ")
  return {"input_string": text, "target": ex["target"], "references": _references(ex)}


# ----------------------------------------------------------------------------- translation

_TRANSLATION = ("lang1", "lang2", "sent1", "sent2")


def _translation(code: str, language: str):
  def fn(ex):
    return {"lang1": "English", "lang2": language, "sent1": ex["en"], "sent2": ex[code]}

  return fn


_task("para_crawl_enes", "para_crawl/enes", _TRANSLATION, pattern_key="para_crawl")(
  _translation("es", "Spanish")
)
_task("wmt14_enfr", "wmt14_translate/fr-en", _TRANSLATION)(_translation("fr", "French"))
for _code, _language in (
  ("de", "German"),
  ("tr", "Turkish"),
  ("cs", "Czech"),
  ("fi", "Finnish"),
  ("ro", "Romanian"),
  ("ru", "Russian"),
):
  _task(
    f"wmt16_translate_{_code}en",
    f"wmt16_translate/{_code}-en",
    _TRANSLATION,
    dataset=f"wmt16_{_code}en",
    pattern_key="wmt16_translate",
  )(_translation(_code, _language))


# ----------------------------------------------------------------------------- reading comp.


@_task("bool_q", ("bool_q", "super_glue/boolq"), ("title", "text", "question", "options", "answer"))
def bool_q(ex):
  # FLAN reads the `bool_q` builder (`answer`: bool, `title`). On super_glue/boolq, which has
  # neither, FLAN's code raises KeyError; here `label` stands in for `answer` and the title,
  # which that builder does not have, is empty.
  label = ex["answer"] if "answer" in ex else ex["label"]
  return _classify(
    ("no", "yes"),
    int(label),
    title=ex.get("title", ""),
    text=ex["passage"],
    question=ex["question"],
  )


@_task("drop", "drop", ("context", "question", "answer", "references"))
def drop(ex):
  return {
    "context": ex["passage"],
    "question": ex["question"],
    "answer": ex["answer"],
    "references": [ex["answer"]],
  }


@_task(
  "multirc",
  "super_glue/multirc",
  (
    "paragraph",
    "question",
    "response",
    "options",
    "glm_options",
    "answer",
    "glm_answer",
    "idx/paragraph",
    "idx/question",
    "idx/answer",
  ),
)
def multirc(ex):
  fields = _with_glm(
    ("no", "yes"),
    ("False", "True"),
    ex["label"],
    paragraph=ex["paragraph"],
    question=ex["question"],
    response=ex["answer"],
  )
  if fields is None:
    return None
  idx = ex["idx"]
  # FLAN copies the question index into idx/answer too (no template shows it).
  return {
    **fields,
    "idx/paragraph": idx["paragraph"],
    "idx/question": idx["question"],
    "idx/answer": idx["question"],
  }


@_task("openbookqa", "openbookqa", ("question", "fact", "options", "answer"))
def openbookqa(ex):
  q = ex["question"]
  options = (q["choice_A"], q["choice_B"], q["choice_C"], q["choice_D"])
  return _classify(options, ex["answerKey"], question=q["stem"], fact=ex["fact1"])


def _squad_fields(ex, answers: list[str]) -> Fields:
  return {
    "title": ex["title"].replace("_", " "),
    "context": ex["context"],
    "question": ex["question"],
    "answer": answers[0],
    "references": answers,
  }


@_task(
  "squad_v1",
  "squad/v1.1",
  ("title", "context", "question", "answer", "references"),
  dataset="squad",
)
def squad_v1(ex):
  return _squad_fields(ex, list(ex["answers"]["text"]))


UNANSWERABLE = "unanswerable"


@_task(
  "squad_v2",
  "squad/v2.0",
  ("title", "context", "question", "answer", "references"),
  dataset="squad",
)
def squad_v2(ex):
  answers = [UNANSWERABLE] if ex["is_impossible"] else list(ex["answers"]["text"])
  return _squad_fields(ex, answers)


# ----------------------------------------------------------------------------- RC + commonsense


@_task("cosmos_qa", "cosmos_qa", ("context", "question", "options", "label", "answer"))
def cosmos_qa(ex):
  options = (ex["answer0"], ex["answer1"], ex["answer2"], ex["answer3"])
  return _classify(
    options, ex["label"], context=ex["context"], question=ex["question"], label=ex["label"]
  )


@_task("record", "super_glue/record", ("answer", "passage", "query", "answers", "options"))
def record(ex):
  parts = ex["query"].split("@placeholder")
  if len(parts) < 2:  # FLAN's split(...)[0][1] fails: no placeholder.
    return None
  query_left, query_right = _strip(parts[0]), parts[1]
  options = [entity + query_right for entity in ex["entities"]]
  answers = [answer + query_right for answer in ex["answers"]]
  if not answers:  # FLAN's answers[0] fails (unlabeled test split).
    return None
  return {
    "answer": answers[0],
    "passage": ex["passage"].split("\n@highlight")[0],
    "query": query_left,
    "answers": answers,
    "options": options,
  }


# ----------------------------------------------------------------------------- coreference


@_task(
  "definite_pronoun_resolution",
  "definite_pronoun_resolution",
  ("sentence", "pronoun", "options", "label", "answer"),
)
def definite_pronoun_resolution(ex):
  return _classify(
    ex["candidates"], ex["label"], sentence=ex["sentence"], pronoun=ex["pronoun"], label=ex["label"]
  )


@_task("winogrande", "winogrande", ("context", "options", "label", "answer"))
def winogrande(ex):
  parts = ex["sentence"].split("_")
  if len(parts) < 2:  # FLAN's split(...)[0][1] fails: no blank.
    return None
  context, next_sentence = parts[:2]
  options = (ex["option1"] + next_sentence, ex["option2"] + next_sentence)
  return _classify(options, ex["label"], context=context, label=ex["label"])


@_task(
  "wsc",
  ("super_glue/wsc", "super_glue/wsc.fixed"),
  ("context", "text1", "text2", "options", "answer"),
)
def wsc(ex):
  return _classify(
    ("no", "yes"), ex["label"], context=ex["text"], text1=ex["span1_text"], text2=ex["span2_text"]
  )


@_task("wsc273", "wsc273", ("context", "options", "answer"), dataset="")
def wsc273(ex):
  text = ex["text"].encode("utf-8")  # tf.strings.substr counts bytes.
  prefix = _strip(text[: ex["pronoun_start"]].decode("utf-8", errors="replace"))
  suffix = _strip(text[ex["pronoun_end"] :].decode("utf-8", errors="replace"))
  options = [
    f"{option} {suffix}" for option in (ex["option1_normalized"], ex["option2_normalized"])
  ]
  return _classify(options, ex["label"], context=prefix)


# ----------------------------------------------------------------------------- misc.


@_task("coqa", "coqa", ("text", "numbered_questions", "numbered_answers"))
def coqa(ex):
  return {
    "text": ex["story"],
    "numbered_questions": _enumerate_items(ex["questions"]),
    "numbered_answers": _enumerate_items(ex["answers"]["input_text"]),
  }


@_task("quac", "quac", ("title", "background", "context", "question", "answer"))
def quac(ex):
  return {
    "title": ex["title"],
    "background": ex["background"],
    "context": ex["context"],
    "question": ex["question"],
    "answer": ex["orig_answer"]["text"],
  }


_TREC_OPTIONS = ("description", "entity", "abbreviation", "human", "numeric", "location")


@_task("trec", "trec", ("text", "options", "answer"))
def trec(ex):
  return _classify(_TREC_OPTIONS, ex["label-coarse"], text=ex["text"])


@_task("cola", "glue/cola", ("sentence", "options", "answer"))
def cola(ex):
  return _classify(("unacceptable", "acceptable"), ex["label"], sentence=ex["sentence"])


@_task("wic", "super_glue/wic", ("sentence1", "sentence2", "word", "options", "answer"))
def wic(ex):
  return _classify(
    ("different meanings", "the same meaning"),
    ex["label"],
    sentence1=ex["sentence1"],
    sentence2=ex["sentence2"],
    word=ex["word"],
  )


@_task("math_dataset", "math_dataset/algebra__linear_1d", ("question", "answer"))
def math_dataset(ex):
  return {"question": ex["question"], "answer": ex["answer"]}


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@_task("true_case", "para_crawl/enda", ("lower", "answer"), dataset="")
def true_case(ex):
  text = ex["en"]
  lower = text.translate(_ASCII_LOWER)  # tf.strings.lower without an encoding: ASCII only
  return None if lower == text else {"lower": lower, "answer": text}


# RE2's [^\w\s]: \w and \s are ASCII-only, so every non-ASCII character is removed too.
_NOT_WORD_OR_SPACE = re.compile(r"[^0-9A-Za-z_\t\n\f\r ]")


@_task("fix_punct", "para_crawl/enda", ("no_punct", "answer"))
def fix_punct(ex):
  text = ex["en"]
  no_punct = _NOT_WORD_OR_SPACE.sub("", text)
  return None if no_punct == text else {"no_punct": no_punct, "answer": text}


@_task("word_segment", "para_crawl/enda", ("no_space", "answer"), dataset="")
def word_segment(ex):
  return {"no_space": ex["en"].replace(" ", ""), "answer": ex["en"]}


# ----------------------------------------------------------------------------- summarization


@_task("aeslc", "aeslc", ("body", "subject"))
def aeslc(ex):
  body, subject = ex["email_body"], ex["subject_line"]
  if not (body + subject):  # FLAN's _filter_aeslc: the joined text is not empty.
    return None
  return {"body": body.replace("\n", " "), "subject": subject.replace("\n", "")}


# FLAN means to drop a dateline ("LONDON, England (Reuters) -- "), but `split(...)[-1][0]`
# on a scalar keeps the first piece: the text BEFORE the first separator.
CNN_SEPARATORS = ("2013 . ", "2014 . ", "2012 . ", ") -- ")


@_task("cnn_dailymail", "cnn_dailymail", ("text", "highlights"))
def cnn_dailymail(ex):
  article = ex["article"]
  for sep in CNN_SEPARATORS:
    article = article.split(sep)[0]
  return {"text": article, "highlights": ex["highlights"]}


_UNK_OR_HASH = re.compile(r".*(UNK|#).*")


@_task("gigaword", "gigaword", ("text", "summary"))
def gigaword(ex):
  if _UNK_OR_HASH.fullmatch(ex["document"] + ex["summary"]):  # FLAN's _filter_gigaword
    return None
  return {"text": ex["document"], "summary": ex["summary"]}


@_task("multi_news", "multi_news", ("text", "summary"))
def multi_news(ex):
  return {"text": ex["document"], "summary": ex["summary"]}


@_task("newsroom", "newsroom", ("text", "title", "summary"))
def newsroom(ex):
  return {"text": ex["text"], "title": ex["title"], "summary": ex["summary"]}


@_task(
  "opinion_abstracts_rotten_tomatoes",
  "opinion_abstracts/rotten_tomatoes",
  ("critic_consensus", "movie", "first_review", "numbered_reviews"),
)
def opinion_abstracts_rotten_tomatoes(ex):
  reviews = ex["_critics"]["value"]
  return {
    "critic_consensus": ex["_critic_consensus"],
    "movie": ex["_movie_name"].replace("_", " "),
    "first_review": reviews[0],
    "numbered_reviews": _enumerate_items(reviews[:10]),
  }


@_task(
  "opinion_abstracts_idebate",
  "opinion_abstracts/idebate",
  ("claim", "debate_name", "argument_sentences"),
)
def opinion_abstracts_idebate(ex):
  return {
    "claim": ex["_claim"],
    "debate_name": ex["_debate_name"],
    "argument_sentences": _enumerate_items(ex["_argument_sentences"]["value"][:10]),
  }


@_task("samsum", "samsum", ("summary", "dialogue"))
def samsum(ex):
  dialogue = re.sub(r"<.*>", " ", ex["dialogue"].replace("\r\n", "\n"))
  return {"summary": ex["summary"], "dialogue": dialogue}


@_task("xsum", ("huggingface:xsum", "xsum"), ("text", "summary"))
def xsum(ex):
  return {"text": ex["document"], "summary": ex["summary"]}


@_task("wiki_lingua_english_en", "gem/wiki_lingua_english_en", ("source", "target"))
def wiki_lingua_english_en(ex):
  return {"source": ex["source"], "target": ex["target"]}


@_task("ag_news_subset", "ag_news_subset", ("title", "text", "options", "label", "answer"))
def ag_news_subset(ex):
  return _classify(
    ("World", "Sports", "Business", "Science/Tech"),
    ex["label"],
    title=ex["title"],
    text=ex["description"],
    label=ex["label"],
  )


# ----------------------------------------------------------------------------- lookup


def _unversioned(tfds_name: str) -> str:
  return tfds_name.split(":")[0] if not tfds_name.startswith("huggingface:") else tfds_name


def pattern_keys() -> dict[str, tuple[str, ...]]:
  """`{PATTERNS key: the fields its tasks emit}` (the union over tasks sharing a key)."""
  out: dict[str, set[str]] = {}
  for task in TASKS.values():
    out.setdefault(task.pattern_key, set()).update(task.fields)
  return {k: tuple(sorted(v)) for k, v in out.items()}


def task_for_source(dataset: str, tfds_name: str, source: str = "") -> FlanTask:
  """The FLAN task config that reads `tfds_name` for our dataset `dataset`.

  `source` (a `Source.name`) tells apart configs on one builder (MNLI matched / mismatched,
  which preprocess alike).
  """
  builder = _unversioned(tfds_name)
  candidates = [t for t in TASKS.values() if t.dataset == dataset]
  matches = [t for t in candidates if builder in t.builders]
  if not matches:
    raise KeyError(
      f"No FLAN task config reads {tfds_name!r} for dataset {dataset!r} "
      f"(its FLAN configs: {', '.join(t.name for t in candidates) or 'none'})."
    )
  named = [t for t in matches if source and t.name.endswith(f"_{source}")]
  return (named or matches)[0]


def tasks_of(dataset: str) -> tuple[FlanTask, ...]:
  """The FLAN task configs behind one of our datasets."""
  return tuple(t for t in TASKS.values() if t.dataset == dataset)
