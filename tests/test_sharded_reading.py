"""Per-host sharded reading: each host reads, preprocesses and renders only its own share.

A FLAN task's examples are cut into contiguous shards before anything is read
(`flan.data.examples.shard_reads`), so every example reaches exactly one host and the
shards, one after another, are the unsharded task: same example ids, templates and text.
"""

import numpy as np
import pytest

from flan.data import examples, tasks
from flan.data import splits as splits_lib

seqio = pytest.importorskip("seqio")


def _reads(*sizes):
  return [
    (splits_lib.ReadSpec("b", "train", 10 * i, 10 * i + n, ""), 100 * i)
    for i, n in enumerate(sizes)
  ]


@pytest.mark.parametrize("count", [1, 2, 3, 7, 40])
def test_shards_split_the_reads_into_disjoint_contiguous_parts(count):
  reads = _reads(5, 0, 11, 3)
  ids = []
  for index in range(count):
    for read, first_id, lo, hi in examples.shard_reads(reads, (index, count)):
      assert 0 <= lo < hi <= read.num_examples
      ids += [first_id + k for k in range(lo, hi)]
  whole = [first_id + k for read, first_id in reads for k in range(read.num_examples)]
  assert ids == whole  # each example once, in the unsharded order
  sizes = [
    sum(hi - lo for _, _, lo, hi in examples.shard_reads(reads, (i, count))) for i in range(count)
  ]
  assert max(sizes) - min(sizes) <= 1


def test_a_bad_shard_is_refused():
  with pytest.raises(ValueError, match=r"shard index 2 must be in \[0, 2\)"):
    examples.shard_reads(_reads(4), (2, 2))


def _concat(parts):
  return {k: [v for p in parts for v in p[k]] for k in parts[0]}


@pytest.mark.realdata
@pytest.mark.parametrize("dataset,source", [("rte", None), ("anli", None), ("anli", "r2")])
def test_sharded_columns_are_the_unsharded_columns_cut_in_parts(data_dir, dataset, source):
  try:
    examples.resolved_splits(dataset, data_dir)
  except examples.DataNotPreparedError:
    pytest.skip(f"{dataset} is not in the shared samples")
  config = tasks.Config(data_dir=data_dir)
  src = tasks.FlanSource(dataset, "train", config, source=source)
  whole = src.columns("train", seed=4)
  assert len(whole["inputs"]) > 10
  for count in (2, 3):
    parts = [src.columns("train", seed=4, shard=(i, count)) for i in range(count)]
    assert all(p["inputs"] for p in parts)
    assert _concat(parts) == whole  # same ids, templates and rendered text, each once


def test_sharded_seqio_task_on_mock_data_is_the_unsharded_task_in_parts():
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=9):
    examples.clear_cache()
    try:
      task = seqio.get_mixture_or_task(tasks.train_task("rte"))

      def rows(shard_info=None):
        ds = task.get_dataset(None, "train", shuffle=False, seed=1, shard_info=shard_info)
        return [
          (int(ex["example_id"]), ex["inputs"].tolist(), ex["targets"].tolist())
          for ex in ds.as_numpy_iterator()
        ]

      whole = rows()
      parts = [rows(seqio.ShardInfo(i, 2)) for i in range(2)]
    finally:
      examples.clear_cache()
  assert len(whole) > 2 and all(parts)
  assert parts[0] + parts[1] == whole
  assert not {r[0] for r in parts[0]} & {r[0] for r in parts[1]}
  assert np.all([len(r[1]) > 1 for r in whole])
