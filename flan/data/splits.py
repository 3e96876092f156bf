"""FLAN's split slices of one dataset, resolved from its table row and the split sizes.

`resolve_splits` is a pure function of a `flan.data.datasets.DatasetSpec` and the sizes of
its builders' splits (TFDS metadata): what each source trains on, its dev split (FLAN's
small `validation`, for template selection) and its eval split, as absolute slices clamped
to the data that exists (the shared samples and mock data are far smaller than FLAN's
splits).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from flan.data.datasets import TRAIN_TAIL, DatasetSpec

MAX_TRAIN_EXAMPLES = 30_000  # FLAN's NUM_TRAIN_EXAMPLES: at most this many per source.
MAX_TAIL_FRACTION = 0.1  # the tail of a split too small for FLAN's (see `resolve_splits`).


@dataclasses.dataclass(frozen=True)
class ReadSpec:
  """One concrete TFDS read: builder, an absolute slice of one split, and its source's name."""

  tfds_name: str
  split: str
  start: int
  stop: int
  source: str = ""

  @property
  def tfds_split(self) -> str:
    """The TFDS split string, e.g. `train[0:129]`."""
    return f"{self.split}[{self.start}:{self.stop}]"

  @property
  def num_examples(self) -> int:
    return self.stop - self.start


@dataclasses.dataclass(frozen=True)
class ResolvedSplits:
  """What training, template selection and evaluation read for one dataset."""

  train: tuple[ReadSpec, ...]
  dev: tuple[ReadSpec, ...]
  eval: tuple[ReadSpec, ...]

  @property
  def num_train_examples(self) -> int:
    return sum(r.num_examples for r in self.train)

  def num_train_examples_of(self, source: str) -> int:
    """Training examples of one source (by `Source.name`)."""
    return sum(r.num_examples for r in self.train if r.source == source)


def held_out_tail(tail: int, num_examples: int) -> int:
  """Examples kept back at the end of a train split of `num_examples`: FLAN's `tail`.

  FLAN's `train[:-tail]` leaves nothing to train on when a split is not larger than its
  tail (the sample splits in ../shared, mock data). A split that holds less than twice its
  tail keeps back 10% instead; every real FLAN split is at least twice its tail.
  """
  if num_examples >= 2 * tail:
    return tail
  return min(tail, int(num_examples * MAX_TAIL_FRACTION))


def _dev_share(dev_in_tail: int, flan_tail: int, held: int) -> int:
  """The dev part of a `TRAIN_TAIL` source's held-out tail of `held` examples: FLAN's
  `dev_in_tail` when the whole tail is kept, else the same share of a clamped tail (at least
  one example each for dev and eval when it holds two)."""
  if not dev_in_tail or held < 2:
    return 0
  if held == flan_tail:
    return dev_in_tail
  return min(held - 1, max(1, round(held * dev_in_tail / flan_tail)))


def resolve_splits(
  spec: DatasetSpec,
  split_sizes: Mapping[str, Mapping[str, int]],
  max_train_examples: int = MAX_TRAIN_EXAMPLES,
) -> ResolvedSplits:
  """FLAN's split slices, per source, clamped to the sizes that exist.

  Args:
    spec: the dataset.
    split_sizes: `{tfds_name: {split: num_examples}}` for every source of `spec`.
    max_train_examples: the cap of every source (FLAN's `train[:30000]`), separately.

  Returns:
    Absolute slices, each tagged with its source's name. A source's held-out tail is the
    last `held_out_tail(tail, n)` examples of its train split; it trains on the first
    min(n - tail, max_train_examples) examples: FLAN's `train[:-200]`, or its `train[:30000]`
    beside a `train[-200:]` validation (disjoint whenever the split holds 30,200 examples, as
    each of those FLAN splits does). The dev split (FLAN's `validation`, for template
    selection) is that tail; with `TRAIN_TAIL`, the tail's first `dev_in_tail` examples;
    or `Source.dev`, the first or last examples of another split, as many as it has. A dev
    slice that an earlier source of the same builder already reads is read once (MNLI's
    two sources share one `train[-200:]`).
  """
  train, dev, evals = [], [], []
  for source in spec.sources:
    sizes = split_sizes[source.tfds_name]
    tail = 0
    if source.train_split is not None:
      n = sizes[source.train_split]
      tail = held_out_tail(source.tail, n)
      take = min(n - tail, max_train_examples)
      if take > 0:
        train.append(ReadSpec(source.tfds_name, source.train_split, 0, take, source.name))
      if tail > 0 and TRAIN_TAIL in source.eval_splits:
        k = _dev_share(source.dev_in_tail, source.tail, tail)
        if k:
          dev.append(
            ReadSpec(source.tfds_name, source.train_split, n - tail, n - tail + k, source.name)
          )
        evals.append(ReadSpec(source.tfds_name, source.train_split, n - tail + k, n, source.name))
      elif tail > 0:
        dev.append(ReadSpec(source.tfds_name, source.train_split, n - tail, n, source.name))
    for split in source.eval_splits:
      if split != TRAIN_TAIL:
        evals.append(ReadSpec(source.tfds_name, split, 0, sizes[split], source.name))
    if source.dev_slice is not None:
      split, count = source.dev_slice
      size = sizes[split]
      k = min(abs(count), size)
      start = 0 if count > 0 else size - k
      if k:
        dev.append(ReadSpec(source.tfds_name, split, start, start + k, source.name))
  read, unique_dev = set(), []
  for r in dev:  # MNLI m/mm: one builder, one train[-200:] for both sources
    if (r.tfds_name, r.split, r.start, r.stop) not in read:
      read.add((r.tfds_name, r.split, r.start, r.stop))
      unique_dev.append(r)
  return ResolvedSplits(tuple(train), tuple(unique_dev), tuple(evals))
