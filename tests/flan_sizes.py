"""Full split sizes of every FLAN source (TFDS catalog metadata; no data) and FLAN's slices.

`FULL_SIZES` are the TFDS 4.9.10 catalog's example counts of the full splits our table reads.
`FLAN_TRAIN` is the train split string of each FLAN v1 config as FLAN's `tasks.py` writes it,
keyed by (dataset, source name); `flan_slice_size` evaluates one on a split size, so the
tests check our per-source resolution against FLAN's rule, not against our own code.
"""

from __future__ import annotations

import re

FULL_SIZES = {
  "anli/r1:0.1.0": {"train": 16_946, "test": 1_000, "validation": 1_000},
  "anli/r2:0.1.0": {"train": 45_460, "test": 1_000, "validation": 1_000},
  "anli/r3:0.1.0": {"train": 100_459, "test": 1_200, "validation": 1_200},
  "super_glue/rte:1.0.2": {"train": 2_490, "validation": 277},
  "super_glue/cb:1.0.2": {"train": 250, "validation": 56},
  "snli:1.1.0": {"train": 550_152, "test": 9_824, "validation": 9_842},
  "glue/mnli:2.0.0": {
    "train": 392_702,
    "validation_matched": 9_815,
    "validation_mismatched": 9_832,
  },
  "glue/qnli:2.0.0": {"train": 104_743, "validation": 5_463},
  "glue/wnli:2.0.0": {"train": 635, "validation": 71},
  "super_glue/copa:1.0.2": {"train": 400, "validation": 100},
  "hellaswag:1.1.0": {"train": 39_905, "validation": 10_042},
  "piqa:1.0.0": {"train": 16_113, "validation": 1_838},
  "story_cloze/2016:1.0.0": {"validation": 1_871, "test": 1_871},
  "imdb_reviews/plain_text:1.0.0": {"train": 25_000, "test": 25_000},
  "sentiment140:1.0.0": {"train": 1_600_000, "test": 498},
  "glue/sst2:2.0.0": {"train": 67_349, "validation": 872},
  "yelp_polarity_reviews:0.2.0": {"train": 560_000, "test": 38_000},
  "glue/mrpc:2.0.0": {"train": 3_668, "validation": 408},
  "glue/qqp:2.0.0": {"train": 363_846, "validation": 40_430},
  "paws_wiki:1.1.0": {"train": 49_401, "test": 8_000, "validation": 8_000},
  "glue/stsb:2.0.0": {"train": 5_749, "validation": 1_500},
  "ai2_arc/ARC-Challenge:1.0.0": {"train": 1_119, "test": 1_172},
  "ai2_arc/ARC-Easy:1.0.0": {"train": 2_251, "test": 2_376},
  "natural_questions_open:1.0.0": {"train": 87_925, "validation": 3_610},
  "trivia_qa/rc:1.1.0": {"train": 138_384, "validation": 18_669},
  "gem/common_gen:1.1.0": {"train": 67_389, "validation": 993},
  "gem/dart:1.1.0": {"train": 62_659, "validation": 2_768},
  "gem/e2e_nlg:1.1.0": {"train": 33_525, "validation": 4_299},
  "gem/web_nlg_en:1.1.0": {"train": 35_426, "validation": 1_667},
  "para_crawl/enes:1.2.0": {"train": 21_987_267},
  "wmt14_translate/fr-en:1.0.0": {"train": 40_836_715, "test": 3_003, "validation": 3_000},
  "wmt16_translate/cs-en:1.0.0": {"train": 997_240, "test": 2_656, "validation": 2_656},
  "wmt16_translate/de-en:1.0.0": {"train": 4_548_885, "test": 2_999, "validation": 2_169},
  "wmt16_translate/fi-en:1.0.0": {"train": 2_073_394, "test": 6_000, "validation": 1_370},
  "wmt16_translate/ro-en:1.0.0": {"train": 610_320, "test": 1_999, "validation": 1_999},
  "wmt16_translate/ru-en:1.0.0": {"train": 1_516_162, "test": 2_998, "validation": 2_818},
  "wmt16_translate/tr-en:1.0.0": {"train": 205_756, "test": 3_000, "validation": 1_001},
  "super_glue/boolq:1.0.2": {"train": 9_427, "validation": 3_270},
  "drop:2.0.0": {"train": 77_409, "dev": 9_536},
  "super_glue/multirc:1.0.2": {"train": 27_243, "validation": 4_848},
  "openbookqa:0.1.0": {"train": 4_957, "test": 500, "validation": 500},
  "squad/v1.1:3.0.0": {"train": 87_599, "validation": 10_570},
  "squad/v2.0:3.0.0": {"train": 130_319, "validation": 11_873},
  "cosmos_qa:1.0.0": {"train": 25_262, "validation": 2_985},
  "super_glue/record:1.0.2": {"train": 100_730, "validation": 10_000},
  "definite_pronoun_resolution:1.1.0": {"train": 1_322, "test": 564},
  "winogrande:1.2.0": {"train_xl": 40_398, "validation": 1_267},
  "super_glue/wsc.fixed:1.0.2": {"train": 554, "validation": 104},
  "coqa:1.0.0": {"train": 7_199, "test": 500},
  "quac:1.0.0": {"train": 83_568, "validation": 7_354},
  "trec:1.0.0": {"train": 5_452, "test": 500},
  "glue/cola:2.0.0": {"train": 8_551, "validation": 1_043},
  "super_glue/wic:1.0.2": {"train": 5_428, "validation": 638},
  "math_dataset/algebra__linear_1d:1.0.0": {"train": 1_999_998, "test": 10_000},
  "para_crawl/enda:1.2.0": {"train": 7_020_213},
  "aeslc:1.0.0": {"train": 14_436, "test": 1_906, "validation": 1_960},
  "cnn_dailymail:3.4.0": {"train": 287_113, "test": 11_490, "validation": 13_368},
  "gigaword:1.2.0": {"train": 3_803_957, "test": 1_951, "validation": 189_651},
  "multi_news:2.1.0": {"train": 44_972, "test": 5_622, "validation": 5_622},
  "newsroom:1.0.0": {"train": 995_041, "test": 108_862, "validation": 108_837},
  "opinion_abstracts/idebate:1.0.0": {"train": 2_259},
  "opinion_abstracts/rotten_tomatoes:1.0.0": {"train": 3_731},
  "samsum:1.0.0": {"train": 14_732, "test": 819, "validation": 818},
  "xsum:1.1.0": {"train": 204_045, "test": 11_334, "validation": 11_332},
  "gem/wiki_lingua_english_en:1.1.0": {"train": 99_020, "test": 28_614, "validation": 13_823},
  "ag_news_subset:1.0.0": {"train": 120_000, "test": 7_600},
}

_CAP = "train[:30000]"
# FLAN v1's train split of each config (flan/tasks.py), keyed by (dataset, source name).
FLAN_TRAIN = {
  ("anli", "r1"): "train",
  ("anli", "r2"): _CAP,
  ("anli", "r3"): _CAP,
  ("rte", ""): "train[:-200]",
  ("cb", ""): "train[:-50]",
  ("snli", ""): _CAP,
  ("mnli", "matched"): _CAP,
  ("mnli", "mismatched"): _CAP,
  ("qnli", ""): _CAP,
  ("wnli", ""): "train[:-30]",
  ("copa", ""): "train[:-50]",
  ("hellaswag", ""): _CAP,
  ("piqa", ""): "train[:-100]",
  ("story_cloze", ""): "validation[:-200]",
  ("imdb_reviews", ""): "train[:-200]",
  ("sentiment140", ""): _CAP,
  ("sst2", ""): _CAP,
  ("yelp_polarity_reviews", ""): _CAP,
  ("mrpc", ""): "train[:-200]",
  ("qqp", ""): _CAP,
  ("paws_wiki", ""): _CAP,
  ("stsb", ""): "train[:-100]",
  ("arc", "challenge"): "train[:-200]",
  ("arc", "easy"): "train[:-200]",
  ("natural_questions", ""): _CAP,
  ("trivia_qa", ""): _CAP,
  ("common_gen", ""): _CAP,
  ("dart", ""): _CAP,
  ("e2e_nlg", ""): _CAP,
  ("web_nlg_en", ""): _CAP,
  ("para_crawl_enes", ""): _CAP,
  ("wmt14_enfr", ""): _CAP,
  **{(f"wmt16_{p}en", ""): _CAP for p in ("cs", "de", "fi", "ro", "ru", "tr")},
  ("bool_q", ""): "train[:-200]",
  ("drop", ""): _CAP,
  ("multirc", ""): "train[:-200]",
  ("openbookqa", ""): "train",
  ("squad", "v1"): _CAP,
  ("squad", "v2"): _CAP,
  ("cosmos_qa", ""): "train[:-200]",
  ("record", ""): _CAP,
  ("definite_pronoun_resolution", ""): "train[:-200]",
  ("winogrande", ""): "train_xl[:30000]",
  ("wsc", ""): "train[:-50]",
  ("coqa", ""): "train[:-100]",
  ("quac", ""): _CAP,
  ("trec", ""): "train[:-200]",
  ("cola", ""): "train[:-200]",
  ("wic", ""): "train[:-200]",
  ("math_dataset", ""): _CAP,
  ("fix_punct", ""): "train[30200:60200]",
  ("aeslc", ""): "train",
  ("cnn_dailymail", ""): _CAP,
  ("gigaword", ""): _CAP,
  ("multi_news", ""): _CAP,
  ("newsroom", ""): _CAP,
  ("opinion_abstracts_idebate", ""): "train[:-600]",
  ("opinion_abstracts_rotten_tomatoes", ""): "train[:-600]",
  ("samsum", ""): "train",
  ("xsum", ""): _CAP,
  ("wiki_lingua_english_en", ""): _CAP,
  ("ag_news_subset", ""): _CAP,
}


_TAIL = "train[-200:]"
# FLAN v1's validation split of each config (flan/tasks.py), keyed as FLAN_TRAIN. fix_punct's
# is the 200 examples after its train slice, train[60200:60400]; ours follow our train[:30000]
# (see DatasetSpec.note), so the test reads it as the 200 before the eval tail.
FLAN_DEV = {
  **{k: _TAIL for k, v in FLAN_TRAIN.items() if v == _CAP},
  **{k: v.replace("[:-", "[-").replace("]", ":]") for k, v in FLAN_TRAIN.items() if "[:-" in v},
  ("anli", "r1"): "validation[:200]",
  ("anli", "r2"): "validation[:200]",
  ("anli", "r3"): "validation[:200]",
  ("snli", ""): "validation[:200]",
  ("paws_wiki", ""): "validation[:200]",
  ("wmt14_enfr", ""): "validation[:200]",
  **{(f"wmt16_{p}en", ""): "validation[:200]" for p in ("cs", "de", "fi", "ro", "ru", "tr")},
  ("openbookqa", ""): "validation[:200]",
  ("aeslc", ""): "validation[-200:]",
  ("cnn_dailymail", ""): "validation[:200]",
  ("gigaword", ""): "validation[:200]",
  ("multi_news", ""): "validation[:200]",
  ("newsroom", ""): "validation[:200]",
  ("samsum", ""): "validation[:200]",
  ("xsum", ""): "validation[:200]",
  ("wiki_lingua_english_en", ""): "validation[:200]",
  ("story_cloze", ""): "validation[-200:]",
  ("winogrande", ""): "train_xl[-200:]",
  ("para_crawl_enes", ""): "train[-1200:-1000]",
  ("fix_punct", ""): "train[-3200:-3000]",
  ("opinion_abstracts_idebate", ""): "train[-600:-500]",
  ("opinion_abstracts_rotten_tomatoes", ""): "train[-600:-500]",
}


def flan_slice(split: str, num_examples: int) -> tuple[str, int, int]:
  """(split name, start, stop) of a TFDS slice string on a split of `num_examples`."""
  m = re.fullmatch(r"(\w+)(?:\[(-?\d*):(-?\d*)\])?", split)
  assert m, split
  start, stop = (int(x) if x else None for x in m.groups()[1:])
  r = range(num_examples)[slice(start, stop)]
  return m.group(1), r.start, r.stop


def flan_slice_size(split: str, num_examples: int) -> int:
  """Examples in a TFDS slice string such as `train[:-200]` of a split of `num_examples`."""
  m = re.fullmatch(r"\w+(?:\[(-?\d*):(-?\d*)\])?", split)
  assert m, split
  start, stop = (int(x) if x else None for x in m.groups())
  return len(range(num_examples)[slice(start, stop)])
