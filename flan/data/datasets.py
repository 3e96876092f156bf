"""The 62 FLAN datasets of the paper, one table.

Each row names the dataset as the paper's Figure 3 counts it, its cluster (see
`flan.data.clusters`), the TFDS builders that feed it (TFDS 4.9.10 names and versions), which
split trains and which evaluate, its metrics and whether it is a classification dataset
(templates carry an OPTIONS block and evaluation is rank classification over options).

Reconciliation with the 70 configs of FLAN v1's `flan/tasks.py`: MNLI m/mm,
ANLI r1-r3, ARC easy/challenge and SQuAD v1/v2 are one dataset each with several sources,
one per FLAN config (named by its config suffix: `anli` sources "r1", "r2", "r3");
Fix Punctuation is the only text-formatting dataset; coreference counts one WSC.

Splits are resolved by `flan.data.splits.resolve_splits`, a pure function of this table and
the split sizes, with FLAN's code's rules per source: every source (every FLAN config) reads
at most 30,000 training examples of its own (`train[:30000]`), after its held-out tail
(`train[:-200]`), and trains as a mixture member of its own
(`flan.data.tasks.train_members`), so a dataset with three sources gets three mixing rates,
as FLAN's three configs do. Every source has FLAN's small `validation` split too, our dev
split (template selection): its train tail (`train[-200:]`), or the first 200 of the
builder's own validation split where FLAN reads `validation[:200]`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

TRAIN_TAIL = "train_tail"  # eval split marker: evaluate on the held-out tail of train.


@dataclasses.dataclass(frozen=True)
class Source:
  """One TFDS builder config feeding a dataset.

  Attributes:
    tfds_name: TFDS `name/config:version` (the TFDS 4.9.10 default version).
    train_split: the split training reads (None: the source only evaluates).
    eval_splits: splits evaluated zero-shot; `TRAIN_TAIL` means the held-out tail of train.
    tail: examples FLAN keeps back at the end of `train_split` (its `train[:-200]`, or the
      `train[-200:]` validation of a `train[:30000]` config); they form the dev split
      (template selection) or, with `TRAIN_TAIL`, the eval split.
    dev: FLAN's validation split when it is not the train tail: the first or last examples of
      another split of the builder, as FLAN writes it (`validation[:200]`,
      `validation[-200:]`).
    dev_in_tail: with `TRAIN_TAIL`: the first `dev_in_tail` examples of the tail are the dev
      split, the rest the eval split (FLAN's `train[-1200:-1000]` / `train[-1000:]`).
    name: the FLAN config this source is, as a suffix of the dataset name ("r1" for FLAN's
      `anli_r1`); required, and unique, when a dataset has several sources. It names the
      source's training task (`flan_anli_r1_train`).
  """

  tfds_name: str
  train_split: str | None = "train"
  eval_splits: tuple[str, ...] = ("validation",)
  tail: int = 0
  name: str = ""
  dev: str = ""
  dev_in_tail: int = 0

  @property
  def dev_slice(self) -> tuple[str, int] | None:
    """`dev` as (split, count): count > 0 takes the first examples, < 0 the last."""
    if not self.dev:
      return None
    m = re.fullmatch(r"(\w+)\[(?::(\d+)|-(\d+):)\]", self.dev)
    if not m:
      raise ValueError(f"Source.dev must read `split[:N]` or `split[-N:]`, got {self.dev!r}.")
    return m.group(1), int(m.group(2)) if m.group(2) else -int(m.group(3))

  @property
  def splits_read(self) -> tuple[str, ...]:
    """The builder's splits this source reads (train, eval and dev), in order, once each."""
    dev = self.dev_slice
    names = (self.train_split, *self.eval_splits, dev[0] if dev else None)
    return tuple(dict.fromkeys(s for s in names if s is not None and s != TRAIN_TAIL))


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """A FLAN dataset.

  Attributes:
    name: short name; templates live in `templates/<name>.yaml`.
    cluster: one of `flan.data.clusters.CLUSTERS`.
    sources: the TFDS builders, in order; each trains as a mixture member of its own.
    metrics: metric names understood by `flan.data.metrics`.
    classification: templates carry options; evaluation ranks the options.
    manual_download: TFDS cannot download the source by itself.
    note: where we differ from FLAN v1's code and why.
    template_file: a template file shared by several datasets (`templates/<file>.yaml`, like
      FLAN's shared pattern keys); a file named after the dataset still takes precedence.
  """

  name: str
  cluster: str
  sources: tuple[Source, ...]
  metrics: tuple[str, ...]
  classification: bool
  manual_download: bool = False
  note: str = ""
  template_file: str = ""

  @property
  def tfds_names(self) -> tuple[str, ...]:
    """The distinct TFDS builders of the sources, in order (MNLI's two sources share one)."""
    return tuple(dict.fromkeys(s.tfds_name for s in self.sources))


def _ds(name, cluster, sources, metrics, classification, **kw) -> DatasetSpec:
  if isinstance(sources, Source):
    sources = (sources,)
  return DatasetSpec(name, cluster, tuple(sources), tuple(metrics), classification, **kw)


S = Source
ACC = ("accuracy",)
ROUGE = ("rouge",)
BLEU = ("bleu",)

DATASETS: tuple[DatasetSpec, ...] = (
  # --- Natural language inference (7) ---
  _ds(
    "anli",
    "nli",
    (
      S("anli/r1:0.1.0", eval_splits=("test",), name="r1", dev="validation[:200]"),
      S("anli/r2:0.1.0", eval_splits=("test",), name="r2", dev="validation[:200]"),
      S("anli/r3:0.1.0", eval_splits=("test",), name="r3", dev="validation[:200]"),
    ),
    ACC,
    True,
  ),
  _ds("rte", "nli", S("super_glue/rte:1.0.2", tail=200), ACC, True),
  _ds("cb", "nli", S("super_glue/cb:1.0.2", tail=50), ("accuracy", "mean_f1"), True),
  _ds("snli", "nli", S("snli:1.1.0", eval_splits=("test",), dev="validation[:200]"), ACC, True),
  _ds(
    "mnli",
    "nli",
    (
      S("glue/mnli:2.0.0", eval_splits=("validation_matched",), name="matched", tail=200),
      S("glue/mnli:2.0.0", eval_splits=("validation_mismatched",), name="mismatched", tail=200),
    ),
    ACC,
    True,
    note="As FLAN v1's two configs, matched and mismatched both train on the same "
    "train[:30000], each with its own rate (MNLI is sampled twice as often as one "
    "source); each evaluates its own validation split.",
  ),
  _ds("qnli", "nli", S("glue/qnli:2.0.0", tail=200), ACC, True),
  _ds("wnli", "nli", S("glue/wnli:2.0.0", tail=30), ACC, True),
  # --- Commonsense (4) ---
  _ds("copa", "commonsense", S("super_glue/copa:1.0.2", tail=50), ACC, True),
  _ds("hellaswag", "commonsense", S("hellaswag:1.1.0", tail=200), ACC, True),
  _ds("piqa", "commonsense", S("piqa:1.0.0", tail=100), ACC, True),
  _ds(
    "story_cloze",
    "commonsense",
    S("story_cloze/2016:1.0.0", train_split="validation", eval_splits=("test",), tail=200),
    ACC,
    True,
    manual_download=True,
    note="Trains on the TFDS validation split, as FLAN does (story_cloze has no train).",
  ),
  # --- Sentiment (4) ---
  _ds(
    "imdb_reviews",
    "sentiment",
    S("imdb_reviews/plain_text:1.0.0", eval_splits=("test",), tail=200),
    ACC,
    True,
  ),
  _ds(
    "sentiment140", "sentiment", S("sentiment140:1.0.0", eval_splits=("test",), tail=200), ACC, True
  ),
  _ds("sst2", "sentiment", S("glue/sst2:2.0.0", tail=200), ACC, True),
  _ds(
    "yelp_polarity_reviews",
    "sentiment",
    S("yelp_polarity_reviews:0.2.0", eval_splits=("test",), tail=200),
    ACC,
    True,
  ),
  # --- Paraphrase detection (4) ---
  _ds("mrpc", "paraphrase", S("glue/mrpc:2.0.0", tail=200), ("accuracy", "f1"), True),
  _ds("qqp", "paraphrase", S("glue/qqp:2.0.0", tail=200), ("accuracy", "f1"), True),
  _ds(
    "paws_wiki",
    "paraphrase",
    S("paws_wiki:1.1.0", eval_splits=("test",), dev="validation[:200]"),
    ACC,
    True,
  ),
  _ds(
    "stsb",
    "paraphrase",
    S("glue/stsb:2.0.0", tail=100),
    ("pearson", "spearman"),
    True,
    note="Scores are rounded to a whole 0..5 to make options. FLAN formats them with "
    "precision 0, which rounds half to even (2.5 -> 2); we round half up (2.5 -> 3), "
    "so labels at exact halves differ.",
  ),
  # --- Closed-book QA (3) ---
  _ds(
    "arc",
    "closed_book_qa",
    (
      S("ai2_arc/ARC-Challenge:1.0.0", eval_splits=("test",), tail=200, name="challenge"),
      S("ai2_arc/ARC-Easy:1.0.0", eval_splits=("test",), tail=200, name="easy"),
    ),
    ACC,
    True,
  ),
  _ds(
    "natural_questions",
    "closed_book_qa",
    S("natural_questions_open:1.0.0", tail=200),
    ("trivia_qa",),
    False,
  ),
  _ds("trivia_qa", "closed_book_qa", S("trivia_qa/rc:1.1.0", tail=200), ("trivia_qa",), False),
  # --- Struct to text (4) ---
  _ds("common_gen", "struct_to_text", S("gem/common_gen:1.1.0", tail=200), ("multi_rouge",), False),
  _ds("dart", "struct_to_text", S("gem/dart:1.1.0", tail=200), ("multi_rouge",), False),
  _ds("e2e_nlg", "struct_to_text", S("gem/e2e_nlg:1.1.0", tail=200), ("multi_rouge",), False),
  _ds("web_nlg_en", "struct_to_text", S("gem/web_nlg_en:1.1.0", tail=200), ("multi_rouge",), False),
  # --- Translation (8) ---
  _ds(
    "para_crawl_enes",
    "translation",
    S("para_crawl/enes:1.2.0", eval_splits=(TRAIN_TAIL,), tail=1200, dev_in_tail=200),
    BLEU,
    False,
    template_file="translation",
  ),
  _ds(
    "wmt14_enfr",
    "translation",
    S("wmt14_translate/fr-en:1.0.0", eval_splits=("test",), dev="validation[:200]"),
    BLEU,
    False,
    template_file="translation",
  ),
  *(
    _ds(
      f"wmt16_{pair.replace('-', '')}",
      "translation",
      S(f"wmt16_translate/{pair}:1.0.0", eval_splits=("test",), dev="validation[:200]"),
      BLEU,
      False,
      template_file="translation",
    )
    for pair in ("cs-en", "de-en", "fi-en", "ro-en", "ru-en", "tr-en")
  ),
  # --- Reading comprehension (5) ---
  _ds(
    "bool_q",
    "reading_comprehension",
    S("super_glue/boolq:1.0.2", tail=200),
    ACC,
    True,
    note="FLAN v1 reads the `bool_q` builder; super_glue/boolq holds the same rows and is "
    "what ../shared provides.",
  ),
  _ds(
    "drop",
    "reading_comprehension",
    S("drop:2.0.0", eval_splits=("dev",), tail=200),
    ("squad",),
    False,
  ),
  _ds(
    "multirc",
    "reading_comprehension",
    S("super_glue/multirc:1.0.2", tail=200),
    ("accuracy", "multirc"),
    True,
  ),
  _ds(
    "openbookqa",
    "reading_comprehension",
    S("openbookqa:0.1.0", eval_splits=("test",), dev="validation[:200]"),
    ACC,
    True,
  ),
  _ds(
    "squad",
    "reading_comprehension",
    (S("squad/v1.1:3.0.0", name="v1", tail=200), S("squad/v2.0:3.0.0", name="v2", tail=200)),
    ("squad",),
    False,
  ),
  # --- Reading comprehension with commonsense (2) ---
  _ds(
    "cosmos_qa", "reading_comprehension_with_commonsense", S("cosmos_qa:1.0.0", tail=200), ACC, True
  ),
  _ds(
    "record",
    "reading_comprehension_with_commonsense",
    S("super_glue/record:1.0.2", tail=200),
    ("record",),
    True,
  ),
  # --- Coreference (3) ---
  _ds(
    "definite_pronoun_resolution",
    "coreference",
    S("definite_pronoun_resolution:1.1.0", eval_splits=("test",), tail=200),
    ACC,
    True,
  ),
  _ds(
    "winogrande", "coreference", S("winogrande:1.2.0", train_split="train_xl", tail=200), ACC, True
  ),
  _ds(
    "wsc",
    "coreference",
    S("super_glue/wsc.fixed:1.0.2", tail=50),
    ACC,
    True,
    note="The paper lists WSC273; FLAN v1 trains and evaluates super_glue/wsc (the wsc273 "
    "builder has only a test split). We use super_glue/wsc.fixed, TFDS's span-fixed "
    "WSC that FLAN v2 switched to.",
  ),
  # --- Misc. (7) ---
  _ds("coqa", "misc", S("coqa:1.0.0", eval_splits=("test",), tail=100), ("squad",), False),
  _ds("quac", "misc", S("quac:1.0.0", tail=200), ("trivia_qa",), False),
  _ds("trec", "misc", S("trec:1.0.0", eval_splits=("test",), tail=200), ACC, True),
  _ds("cola", "misc", S("glue/cola:2.0.0", tail=200), ("accuracy", "matthews"), True),
  _ds("wic", "misc", S("super_glue/wic:1.0.2", tail=200), ACC, True),
  _ds(
    "math_dataset",
    "misc",
    S("math_dataset/algebra__linear_1d:1.0.0", eval_splits=("test",), tail=200),
    ACC,
    False,
  ),
  _ds(
    "fix_punct",
    "misc",
    S("para_crawl/enda:1.2.0", eval_splits=(TRAIN_TAIL,), tail=3200, dev_in_tail=200),
    ("edit_distance",),
    False,
    note="FLAN v1 also has true_case and word_segment on the same builder; the paper "
    "counts only Fix Punctuation. FLAN's fix_punct trains on train[30200:60200] "
    "(after true_case's slice); we read train[:30000], as many examples.",
  ),
  # --- Summarization (11) ---
  _ds(
    "aeslc",
    "summarization",
    S("aeslc:1.0.0", eval_splits=("test",), dev="validation[-200:]"),
    ROUGE,
    False,
  ),
  _ds(
    "cnn_dailymail",
    "summarization",
    S("cnn_dailymail:3.4.0", eval_splits=("test",), dev="validation[:200]"),
    ROUGE,
    False,
    note="FLAN v1 pins 3.1.0, which TFDS 4.9.10 no longer has.",
  ),
  _ds(
    "gigaword",
    "summarization",
    S("gigaword:1.2.0", eval_splits=("test",), dev="validation[:200]"),
    ROUGE,
    False,
  ),
  _ds(
    "multi_news",
    "summarization",
    S("multi_news:2.1.0", eval_splits=("test",), dev="validation[:200]"),
    ROUGE,
    False,
    note="FLAN v1 pins 1.0.0; TFDS 4.9.10's default is 2.1.0.",
  ),
  _ds(
    "newsroom",
    "summarization",
    S("newsroom:1.0.0", eval_splits=("test",), dev="validation[:200]"),
    ROUGE,
    False,
    manual_download=True,
  ),
  _ds(
    "opinion_abstracts_idebate",
    "summarization",
    S("opinion_abstracts/idebate:1.0.0", eval_splits=(TRAIN_TAIL,), tail=600, dev_in_tail=100),
    ROUGE,
    False,
    note="FLAN evaluates the last 500 examples and keeps the 100 before them as "
    "validation; we evaluate all 600 of the tail.",
  ),
  _ds(
    "opinion_abstracts_rotten_tomatoes",
    "summarization",
    S(
      "opinion_abstracts/rotten_tomatoes:1.0.0",
      eval_splits=(TRAIN_TAIL,),
      tail=600,
      dev_in_tail=100,
    ),
    ROUGE,
    False,
    note="FLAN evaluates the last 500 examples and keeps the 100 before them as "
    "validation; we evaluate all 600 of the tail.",
  ),
  _ds(
    "samsum",
    "summarization",
    S("samsum:1.0.0", eval_splits=("test",), dev="validation[:200]"),
    ROUGE,
    False,
    manual_download=True,
  ),
  _ds(
    "xsum",
    "summarization",
    S("xsum:1.1.0", eval_splits=("test",), dev="validation[:200]"),
    ROUGE,
    False,
    manual_download=True,
    note="FLAN v1 reads `huggingface:xsum` (needs the Hugging Face hub); we use TFDS's "
    "own xsum builder.",
  ),
  _ds(
    "wiki_lingua_english_en",
    "summarization",
    S("gem/wiki_lingua_english_en:1.1.0", eval_splits=("test",), dev="validation[:200]"),
    ROUGE,
    False,
  ),
  _ds(
    "ag_news_subset",
    "summarization",
    S("ag_news_subset:1.0.0", eval_splits=("test",), tail=200),
    ACC,
    True,
    note="A topic-classification dataset that FLAN files under summarization.",
  ),
)

BY_NAME: Mapping[str, DatasetSpec] = {d.name: d for d in DATASETS}


def get(name: str) -> DatasetSpec:
  """The dataset called `name`; an unknown name lists the close matches."""
  try:
    return BY_NAME[name]
  except KeyError:
    import difflib

    close = difflib.get_close_matches(name, BY_NAME, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise KeyError(
      f"Unknown FLAN dataset {name!r}.{hint} Known datasets: {', '.join(sorted(BY_NAME))}."
    ) from None
