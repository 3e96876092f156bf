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

A training example's template is `template_indices(seed, dataset, example_id)`, a hash,
so it does not depend on the order, sharding or number of examples read.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from flan.data import datasets as datasets_lib
from flan.data import preprocessors
from flan.data import templates as templates_lib
from flan.data.preprocessors import flan_compat as flan_compat_lib

SPLITS = ("train", "validation", "test")
PREPARE_COMMAND = "python scripts/prepare_data.py --datasets {dataset} --data_dir {data_dir}"
_LOCK = threading.Lock()


class DataNotPreparedError(RuntimeError):
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
  lines.append("Or run on random examples with tfds.testing.mock_data (e.g. --mock_data).")
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


def resolved_splits(dataset: str, data_dir: str | None = None) -> datasets_lib.ResolvedSplits:
  """The absolute slices `dataset` reads, clamped to the sizes in `data_dir` (cached)."""
  return _resolved_splits(dataset, data_dir, _tfds_context())


@functools.lru_cache(maxsize=1024)
def _resolved_splits(
  dataset: str, data_dir: str | None, context: object
) -> datasets_lib.ResolvedSplits:
  del context  # only part of the cache key.
  spec = datasets_lib.get(dataset)
  sizes = {}
  for source in spec.sources:  # several sources may share a builder (MNLI m/mm).
    wanted = [
      s
      for s in (source.train_split, *source.eval_splits)
      if s is not None and s != datasets_lib.TRAIN_TAIL
    ]
    sizes.setdefault(source.tfds_name, {}).update(
      split_sizes(dataset, source.tfds_name, wanted, data_dir)
    )
  return datasets_lib.resolve_splits(spec, sizes)


def _check_source(dataset: str, source: str | None) -> None:
  names = [s.name for s in datasets_lib.get(dataset).sources]
  if source is not None and source not in names:
    raise ValueError(f"FLAN dataset {dataset!r} has no source {source!r}; its sources are {names}.")


def read_specs(
  dataset: str, split: str, data_dir: str | None = None, source: str | None = None
) -> tuple[datasets_lib.ReadSpec, ...]:
  """The slices behind one of our splits: train, validation (dev tail), test (eval).

  `source` (a `Source.name`) keeps only that source's slices; None: every source's.
  """
  if split not in SPLITS:
    raise ValueError(f"Unknown split {split!r}; FLAN tasks have splits {', '.join(SPLITS)}.")
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


def read_examples(read: datasets_lib.ReadSpec, data_dir: str | None = None):
  """Decoded examples of one slice, in TFDS order (cut to the slice length: see top).

  Reads go through `ragged_batch(256)` (variable-length features become ragged), which
  decodes to the same values as one tf.data step per example, with less overhead.
  """
  if read.num_examples <= 0:
    return
  tfds = _tfds()
  ds = builder(read.tfds_name, data_dir).as_dataset(split=read.tfds_split, shuffle_files=False)
  stream = (ex for batch in tfds.as_numpy(ds.ragged_batch(256)) for ex in _unbatch(batch))
  for example in itertools.islice(stream, read.num_examples):
    yield preprocessors.decode(example)


@functools.lru_cache(maxsize=256)
def _load(
  dataset: str,
  reads: tuple[tuple[datasets_lib.ReadSpec, int], ...],
  data_dir: str | None,
  context: object,
  flan_compat: bool = False,
) -> tuple[dict[str, Any], ...]:
  """Preprocessed examples of `reads`, each read given with its first example id."""
  del context  # only part of the cache key.
  out = []
  for read, first_id in reads:
    # Replication mode: FLAN's own preprocessing of the task config that reads this source.
    fn = (
      flan_compat_lib.task_for_source(dataset, read.tfds_name, read.source)
      if flan_compat
      else preprocessors.get(dataset)
    )
    for offset, raw in enumerate(read_examples(read, data_dir)):
      fields = fn(raw)
      if fields is not None:
        out.append({**fields, "example_id": first_id + offset})
  return tuple(out)


def load_examples(
  dataset: str,
  split: str,
  data_dir: str | None = None,
  source: str | None = None,
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
    flan_compat: the replication mode: FLAN's own preprocessing
      (`flan.data.preprocessors.flan_compat`) instead of ours; each example then carries
      `flan_task`, the FLAN task config of its source.

  Returns:
    One dict per kept example: the preprocessor's fields plus `example_id`, the example's
    index within the split of the whole dataset, sources in table order (counted before the
    preprocessor drops any), so a source's examples keep the ids they have in the whole.
  """
  _check_source(dataset, source)
  reads, first_id = [], 0
  for read in read_specs(dataset, split, data_dir):
    if source is None or read.source == source:
      reads.append((read, first_id))
    first_id += read.num_examples
  return list(_load(dataset, tuple(reads), data_dir, _tfds_context(), flan_compat))


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
    raise ValueError(f"num_templates must be >= 1, got {num_templates}.")
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
