"""Pure-Python access to FLAN examples: TFDS split sizes, reads, fields, rendered text.

Nothing here imports seqio: `flan.data.tasks` wraps these functions in seqio tasks, and tools
(`flan.show`, tests, evaluation) can use them directly.

Reading one dataset split:
  1. `split_sizes` asks each TFDS builder how many examples its splits hold (metadata only);
  2. `flan.data.datasets.resolve_splits` turns FLAN's slices into absolute, clamped slices;
  3. each slice is read in order, decoded to Python values and passed to the dataset's
     preprocessor (`flan.data.preprocessors`), which may drop an example by returning None.

Under `tfds.testing.mock_data(num_examples=N)` builders have no split metadata and every
read yields N random examples whatever its slice: sizes then come from the mocked
dataset's cardinality (N), and each read is cut to its slice's length.

A data shard (one host's share, `shard_reads`) is a contiguous range of a task's examples,
cut before anything is read: a host decodes and preprocesses only its own examples.

A training example's template is `template_indices(seed, dataset, example_id)`, a hash,
so it does not depend on the order, sharding or number of examples read.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import pathlib
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from flan.data import datasets as datasets_lib
from flan.data import preprocessors
from flan.data import splits as splits_lib
from flan.data import templates as templates_lib
from flan.data.preprocessors import flan_compat as flan_compat_lib
from flan.errors import UserError

SPLITS = ("train", "validation", "test")
PREPARE_COMMAND = "python scripts/prepare_data.py --datasets {dataset} --data_dir {data_dir}"
MOCK_HINT = (
  "Or run on synthetic examples: --gin.USE_MOCK_DATA=True with DATA_DIR unset "
  "(flan.train, flan.evaluate), or --mock_data (flan.show)."
)
_LOCK = threading.Lock()


class DataNotPreparedError(UserError, RuntimeError):
  """A TFDS builder that FLAN reads has not been prepared in the data_dir."""


def _tfds():
  import tensorflow_datasets as tfds  # deferred: importing TFDS costs ~0.3 s.

  return tfds


def _tfds_context() -> object:
  """Identifies the current TFDS mocking state (part of every cache key).

  `tfds.testing.mock_data` patches `DatasetBuilder.__init__`; the patched function object
  differs per mock context, so a cache never mixes real and mocked examples.
  """
  return _tfds().core.dataset_builder.DatasetBuilder.__init__


def _default_data_dir(data_dir: str | None) -> str:
  return data_dir or _tfds().core.constants.get_default_data_dir()


@functools.cache
def _builder(tfds_name: str, data_dir: str | None, context: object):
  del context  # only part of the cache key.
  return _tfds().builder(tfds_name, data_dir=data_dir)


def builder(tfds_name: str, data_dir: str | None = None):
  """The (cached) TFDS builder of `tfds_name` in `data_dir`."""
  with _LOCK:
    return _builder(tfds_name, data_dir, _tfds_context())


def not_prepared_message(
  dataset: str, tfds_name: str, data_dir: str | None, cause: str = ""
) -> str:
  """Says which builder is missing where, and how to prepare it."""
  shown = _default_data_dir(data_dir)
  lines = [
    f"TFDS builder {tfds_name!r} (FLAN dataset {dataset!r}) is not prepared in "
    f"data_dir {shown!r}{': ' + cause if cause else ''}."
  ]
  instructions = None
  try:
    instructions = getattr(builder(tfds_name, data_dir), "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
  except Exception:  # pylint: disable=broad-except
    pass
  text = " ".join(str(instructions or "").split())
  if datasets_lib.get(dataset).manual_download:
    lines.append(
      "TFDS cannot download it by itself. Its manual download instructions: "
      f"{text or '(see the TFDS catalog)'}"
    )
    lines.append(f"Place the files in {shown}/downloads/manual/, then run:")
  else:
    lines.append("Prepare it (needs internet) with:")
  lines.append("  " + PREPARE_COMMAND.format(dataset=dataset, data_dir=shown))
  if text and not datasets_lib.get(dataset).manual_download:
    lines.append(f"(Some configs of this builder need manual files: {text[:300]})")
  lines.append(MOCK_HINT)
  return "\n".join(lines)


def not_prepared_many_message(missing: Sequence[str], data_dir: str | None, name: str) -> str:
  """Names every dataset of `missing` (FLAN names) not prepared, and one command for all."""
  shown = _default_data_dir(data_dir)
  specs = [datasets_lib.get(d) for d in missing]
  builders = ", ".join(f"{s.name} ({'+'.join(src.tfds_name for src in s.sources)})" for s in specs)
  lines = [
    f"{len(missing)} FLAN datasets that {name!r} reads are not prepared in data_dir "
    f"{shown!r} (their TFDS builders in parentheses): {builders}.",
    "Prepare them all (needs internet) with:",
    "  " + PREPARE_COMMAND.format(dataset=",".join(missing), data_dir=shown),
  ]
  manual = [s.name for s in specs if s.manual_download]
  if manual:
    lines.append(
      f"({', '.join(manual)} need manual downloads first: the command prints TFDS's instructions.)"
    )
  lines.append(MOCK_HINT)
  return "\n".join(lines)


def split_sizes(
  dataset: str, tfds_name: str, splits: Sequence[str], data_dir: str | None = None
) -> dict[str, int]:
  """`{split: num_examples}` for `splits` of one builder, from metadata only.

  Raises:
    DataNotPreparedError: the builder is not prepared in `data_dir`, or lacks a split.
  """
  try:
    b = builder(tfds_name, data_dir)
  except Exception as e:  # pylint: disable=broad-except
    raise DataNotPreparedError(
      not_prepared_message(dataset, tfds_name, data_dir, f"{type(e).__name__}: {e}")
    ) from None
  known = {name: info.num_examples for name, info in b.info.splits.items()}
  if known:
    missing = [s for s in splits if s not in known]
    if missing:
      shown = _default_data_dir(data_dir)
      raise DataNotPreparedError(
        f"TFDS builder {tfds_name!r} in {shown!r} has splits {sorted(known)}, but FLAN "
        f"dataset {dataset!r} reads {missing}. Prepare the full builder: "
        f"{PREPARE_COMMAND.format(dataset=dataset, data_dir=shown)}"
      )
    return {s: known[s] for s in splits}
  # No split metadata: a mocked builder (tfds.testing.mock_data), or one never prepared.
  sizes = {}
  for split in splits:
    try:
      sizes[split] = int(b.as_dataset(split=split).cardinality())
    except Exception:  # pylint: disable=broad-except
      raise DataNotPreparedError(not_prepared_message(dataset, tfds_name, data_dir)) from None
    if sizes[split] < 0:  # unknown cardinality: not a mock we understand.
      raise DataNotPreparedError(not_prepared_message(dataset, tfds_name, data_dir))
  return sizes


def resolved_splits(dataset: str, data_dir: str | None = None) -> splits_lib.ResolvedSplits:
  """The absolute slices `dataset` reads, clamped to the sizes in `data_dir` (cached)."""
  return _resolved_splits(dataset, data_dir, _tfds_context())


@functools.lru_cache(maxsize=1024)
def _resolved_splits(
  dataset: str, data_dir: str | None, context: object
) -> splits_lib.ResolvedSplits:
  del context  # only part of the cache key.
  spec = datasets_lib.get(dataset)
  sizes = {}
  for source in spec.sources:  # several sources may share a builder (MNLI m/mm).
    sizes.setdefault(source.tfds_name, {}).update(
      split_sizes(dataset, source.tfds_name, source.splits_read, data_dir)
    )
  return splits_lib.resolve_splits(spec, sizes)


def _check_source(dataset: str, source: str | None) -> None:
  names = [s.name for s in datasets_lib.get(dataset).sources]
  if source is not None and source not in names:
    raise UserError(f"FLAN dataset {dataset!r} has no source {source!r}; its sources are {names}.")


def read_specs(
  dataset: str, split: str, data_dir: str | None = None, source: str | None = None
) -> tuple[splits_lib.ReadSpec, ...]:
  """The slices behind one of our splits: train, validation (dev), test (eval).

  `source` (a `Source.name`) keeps only that source's slices; None: every source's.
  """
  if split not in SPLITS:
    raise UserError(f"Unknown split {split!r}; FLAN tasks have splits {', '.join(SPLITS)}.")
  _check_source(dataset, source)
  resolved = resolved_splits(dataset, data_dir)
  reads = {"train": resolved.train, "validation": resolved.dev, "test": resolved.eval}[split]
  return reads if source is None else tuple(r for r in reads if r.source == source)


def num_input_examples(
  dataset: str, split: str, data_dir: str | None = None, source: str | None = None
) -> int:
  """Examples read for `split` (of one source, if given) before preprocessing.

  Known from split sizes alone, without reading data.
  """
  return sum(r.num_examples for r in read_specs(dataset, split, data_dir, source))


def _unbatch(batch: Mapping[str, Any]):
  """Splits a `ragged_batch` (nested dict of [n, ...] arrays or ragged values) into examples."""

  def plain(x):
    if isinstance(x, Mapping):
      return {k: plain(v) for k, v in x.items()}
    return x.to_list() if hasattr(x, "to_list") else x  # RaggedTensorValue -> nested lists.

  def size(x):
    return size(next(iter(x.values()))) if isinstance(x, Mapping) else len(x)

  def pick(x, i):
    return {k: pick(v, i) for k, v in x.items()} if isinstance(x, Mapping) else x[i]

  batch = plain(batch)
  for i in range(size(batch)):
    yield pick(batch, i)


def is_mocked(tfds_name: str, data_dir: str | None = None) -> bool:
  """Whether `tfds_name` is mocked (no split metadata): every read yields the same examples."""
  return not builder(tfds_name, data_dir).info.splits


@functools.lru_cache(maxsize=1)
def preprocessor_fingerprint() -> str:
  """A hash of the preprocessors' source code (a token cache key part)."""
  digest = hashlib.sha256()
  root = pathlib.Path(preprocessors.__file__).parent
  for path in sorted(root.glob("*.py")):
    digest.update(path.name.encode() + b"\0" + path.read_bytes())
  return digest.hexdigest()[:16]


def read_examples(
  read: splits_lib.ReadSpec,
  data_dir: str | None = None,
  lo: int = 0,
  hi: int | None = None,
  dataset: str | None = None,
):
  """Decoded examples `lo:hi` of one slice, in TFDS order (cut to the slice length: see top).

  A sub-range is read as a TFDS sub-slice (only its files' records are decoded). A mocked
  builder yields the same examples for any slice, so there the whole slice is generated and
  cut, and a sub-range still holds the examples the whole read has at those positions.
  Reads go through `ragged_batch(256)` (variable-length features become ragged), which
  decodes to the same values as one tf.data step per example, with less overhead.
  `dataset` only names the dataset in the error for a missing or damaged data file.
  """
  hi = read.num_examples if hi is None else min(hi, read.num_examples)
  lo = max(0, lo)
  if hi <= lo:
    return
  skip = 0
  if (lo, hi) != (0, read.num_examples):
    if is_mocked(read.tfds_name, data_dir):
      skip = lo
    else:
      read = dataclasses.replace(read, start=read.start + lo, stop=read.start + hi)
      lo, hi = 0, hi - lo
  tfds = _tfds()
  ds = builder(read.tfds_name, data_dir).as_dataset(split=read.tfds_split, shuffle_files=False)
  stream = (ex for batch in tfds.as_numpy(ds.ragged_batch(256)) for ex in _unbatch(batch))
  try:
    for example in itertools.islice(stream, skip, skip + hi - lo):
      yield preprocessors.decode(example)
  except Exception as e:  # pylint: disable=broad-except
    # A shard deleted or damaged after preparation: TF's NotFoundError / DataLossError.
    if type(e).__name__ not in ("NotFoundError", "DataLossError"):
      raise
    detail = str(getattr(e, "message", e)).split("}}")[-1].strip().split(" [Op:")[0]
    if dataset is None:
      raise DataNotPreparedError(
        f"TFDS builder {read.tfds_name!r} in data_dir "
        f"{_default_data_dir(data_dir)!r}: a data file is missing or "
        f"damaged ({detail}); prepare it again."
      ) from None
    raise DataNotPreparedError(
      not_prepared_message(
        dataset, read.tfds_name, data_dir, f"a data file is missing or damaged ({detail})"
      )
    ) from None


ShardRead = tuple[splits_lib.ReadSpec, int, int, int]  # (read, first example id, lo, hi)


def shard_reads(
  reads: Sequence[tuple[splits_lib.ReadSpec, int]], shard: tuple[int, int] | None = None
) -> tuple[ShardRead, ...]:
  """The part of `reads` (each with its first example id) that data shard `shard` reads.

  Shard `i` of `n` reads the contiguous positions `[i * N // n, (i + 1) * N // n)` of the
  reads' N examples (counted before preprocessing, as `tfds.even_splits`), so every example
  goes to exactly one shard, and shards 0..n-1 one after another are the unsharded reads.
  `shard=None` (or one shard) is everything.

  Returns:
    `(read, first_id, lo, hi)` per read with examples on the shard: positions `lo:hi` of
    `read`, whose example ids are `first_id + lo ... first_id + hi - 1`.
  """
  index, count = shard or (0, 1)
  if not 0 <= index < count:
    raise ValueError(f"shard index {index} must be in [0, {count}).")
  total = sum(r.num_examples for r, _ in reads)
  begin, end = index * total // count, (index + 1) * total // count
  out, pos = [], 0
  for read, first_id in reads:
    lo, hi = max(begin - pos, 0), min(end - pos, read.num_examples)
    if lo < hi:
      out.append((read, first_id, lo, hi))
    pos += read.num_examples
  return tuple(out)


def _preprocess(
  dataset: str, reads: tuple[ShardRead, ...], data_dir: str | None, flan_compat: bool = False
):
  """Yields the preprocessed examples of `reads`, each with its `example_id`."""
  for read, first_id, lo, hi in reads:
    # Replication mode: FLAN's own preprocessing of the task config that reads this source.
    fn = (
      flan_compat_lib.task_for_source(dataset, read.tfds_name, read.source)
      if flan_compat
      else preprocessors.get(dataset)
    )
    for offset, raw in enumerate(read_examples(read, data_dir, lo, hi, dataset), start=lo):
      fields = fn(raw)
      if fields is not None:
        yield {**fields, "example_id": first_id + offset}


@functools.lru_cache(maxsize=256)
def _load(
  dataset: str,
  reads: tuple[ShardRead, ...],
  data_dir: str | None,
  context: object,
  flan_compat: bool = False,
) -> tuple[dict[str, Any], ...]:
  """Preprocessed examples of `reads` (cached)."""
  del context  # only part of the cache key.
  return tuple(_preprocess(dataset, reads, data_dir, flan_compat))


def task_reads(
  dataset: str,
  split: str,
  data_dir: str | None = None,
  source: str | None = None,
  shard: tuple[int, int] | None = None,
) -> tuple[ShardRead, ...]:
  """What `load_examples(dataset, split, data_dir, source, shard)` reads (see `shard_reads`)."""
  _check_source(dataset, source)
  reads, first_id = [], 0
  for read in read_specs(dataset, split, data_dir):
    if source is None or read.source == source:
      reads.append((read, first_id))
    first_id += read.num_examples
  return shard_reads(reads, shard)


def load_examples(
  dataset: str,
  split: str,
  data_dir: str | None = None,
  source: str | None = None,
  shard: tuple[int, int] | None = None,
  cache: bool = True,
  *,
  flan_compat: bool = False,
) -> list[dict]:
  """The preprocessed examples of one split (cached; treat the dicts as read-only).

  Args:
    dataset: a name from `flan.data.datasets`.
    split: "train", "validation" (the held-out tail of train, for template selection) or
      "test" (the zero-shot evaluation splits).
    data_dir: the TFDS data_dir (None: TFDS's default).
    source: only this source's examples (a `Source.name`, e.g. "r1" of anli); None: all.
    shard: `(index, count)`: only data shard `index` of `count` (see `shard_reads`): a host
      reads, decodes and preprocesses its own share only. None: every example.
    cache: keep the examples in memory for later calls (evaluation reads a split once per
      template). Training reads each split once and passes False, so nothing per example
      outlives the tokenization.
    flan_compat: the replication mode: FLAN's own preprocessing
      (`flan.data.preprocessors.flan_compat`) instead of ours; each example then carries
      `flan_task`, the FLAN task config of its source.

  Returns:
    One dict per kept example: the preprocessor's fields plus `example_id`, the example's
    index within the split of the whole dataset, sources in table order (counted before the
    preprocessor drops any), so a source's examples keep the ids they have in the whole,
    and a shard's examples the ids they have unsharded.
  """
  reads = task_reads(dataset, split, data_dir, source, shard)
  if not cache:
    return list(_preprocess(dataset, reads, data_dir, flan_compat))
  return list(_load(dataset, reads, data_dir, _tfds_context(), flan_compat))


# ----------------------------------------------------------------------------- templates


def _key(seed: int, dataset: str) -> np.uint64:
  digest = hashlib.blake2b(f"flan-template:{int(seed)}:{dataset}".encode(), digest_size=8).digest()
  return np.uint64(int.from_bytes(digest, "little"))


def template_indices(
  seed: int, dataset: str, example_ids: Sequence[int] | np.ndarray, num_templates: int
) -> np.ndarray:
  """Each training example's template: uniform over `range(num_templates)`.

  A pure function of (seed, dataset, example_id): a keyed splitmix64 hash, so the choice
  does not depend on the order or subset of examples read.

  Returns:
    int32 array, one index per example id.
  """
  if not 1 <= num_templates:
    raise UserError(f"num_templates must be >= 1, got {num_templates}.")
  ids = np.asarray(example_ids, dtype=np.uint64)  # [n]
  with np.errstate(over="ignore"):
    x = ids * np.uint64(0x9E3779B97F4A7C15) + _key(seed, dataset)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
  return (x % np.uint64(num_templates)).astype(np.int32)


def get_templates(
  dataset: str, flan_templates_dir: str | None = None, fields: Mapping[str, Any] | None = None
) -> tuple[templates_lib.Template, ...]:
  """The validated templates of `dataset` (`templates/<dataset>.yaml`).

  With `flan_templates_dir` (the replication mode), FLAN's converted templates of the
  `PATTERNS` key of the example's FLAN task config (`fields["flan_task"]`), or without
  `fields`, of the dataset's first FLAN task config (all of a dataset's keys have as many
  templates).
  """
  if flan_templates_dir is None:
    return templates_lib.load(dataset)
  if fields is not None:
    task = flan_compat_lib.TASKS[fields[flan_compat_lib.TASK_FIELD]]
  else:
    task = flan_compat_lib.tasks_of(dataset)[0]
  return templates_lib.load_flan(task.pattern_key, str(flan_templates_dir))


def render_example(
  dataset: str,
  fields: Mapping[str, Any],
  template_idx: int,
  mode: str = "instructions",
  flan_templates_dir: str | None = None,
) -> tuple[str, str]:
  """`(inputs, targets)` of one example under template `template_idx`.

  `flan_templates_dir`: the replication mode (see `get_templates`); `fields` must then come
  from `load_examples(..., flan_compat=True)`.
  """
  templates = get_templates(dataset, flan_templates_dir, fields)
  if not 0 <= template_idx < len(templates):
    raise IndexError(
      f"Dataset {dataset!r} has {len(templates)} templates; got index {template_idx}."
    )
  return templates_lib.render(templates[template_idx], fields, mode, dataset)


def correct_answers(fields: Mapping[str, Any]) -> list[str]:
  """Every correct option of a classification example (`answers`, else `[answer]`)."""
  answers = fields.get("answers")
  return list(answers) if answers else [fields["answer"]]


def scoring_rows(
  dataset: str,
  fields: Mapping[str, Any],
  template_idx: int,
  mode: str = "instructions",
  flan_templates_dir: str | None = None,
) -> list[tuple[str, str, int, int]]:
  """Rank classification: `(inputs, targets, option_idx, is_correct)` per option.

  The inputs are the example's rendered inputs; each row's target is the template's target
  filled with that option as the answer. `is_correct` is 1 for every correct option.
  """
  template = get_templates(dataset, flan_templates_dir, fields)[template_idx]
  inputs, _ = templates_lib.render(template, fields, mode, dataset)
  correct = set(correct_answers(fields))
  rows = []
  for i, option in enumerate(fields["options"]):
    _, target = templates_lib.render(template, {**fields, "answer": option}, mode, dataset)
    rows.append((inputs, target, i, int(option in correct)))
  return rows


def clear_cache() -> None:
  """Forgets cached builders, split sizes and examples (e.g. after preparing new data)."""
  _builder.cache_clear()
  _resolved_splits.cache_clear()
  _load.cache_clear()
