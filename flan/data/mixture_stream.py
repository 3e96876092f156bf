"""The mixture stream of one data shard: which example comes at which position.

Each task of a seqio mixture is read once for the shard into ragged token arrays. Example i
belongs to window w = i // window_size; its task is drawn with probability proportional to
the mixture rate from a generator keyed on (seed, shard, w), and the k-th draw of task t is
element perm(seed, shard, t, k // n_t)[k % n_t]. A window is packed (`flan.data.packing`) and its
rows shuffled with a key of its own. Everything is a pure function of (seed, shard, window),
which is what makes `flan.data.input_pipeline`'s resume exact.
"""

from __future__ import annotations

import functools
import logging
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from flan.data import packing

_MIX, _PERM, _ROWS = 0x6D6978, 0x7065726D, 0x726F7773  # Stream tags for the RNG keys.


def _rng(*key: int) -> np.random.Generator:
  """A generator that depends only on `key` (counter-based: any position can be recomputed)."""
  return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) for k in key])))


@functools.lru_cache(maxsize=256)
def _materialize(
  task_name: str, task_id: int, seed: int, shard_index: int, num_shards: int
) -> tuple[packing.Ragged, packing.Ragged]:
  """All train examples of one task on one shard, as ragged int32 token arrays."""
  import seqio  # Heavy (TensorFlow); only needed here.

  del task_id  # Part of the cache key only: a re-registered task is read again.
  task = seqio.get_mixture_or_task(task_name)
  for key in ("inputs", "targets"):
    if key not in task.output_features:
      raise ValueError(
        f"Task {task_name!r} has no {key!r} feature (it has "
        f"{sorted(task.output_features)}); the encoder-decoder pipeline needs both."
      )
  ds = task.get_dataset(
    sequence_length=None,
    split="train",
    shuffle=False,
    seed=seed,
    shard_info=seqio.ShardInfo(shard_index, num_shards),
    num_epochs=1,
  )
  ds = ds.map(lambda ex: {"inputs": ex["inputs"], "targets": ex["targets"]})
  parts: dict[str, list[np.ndarray]] = {"inputs": [], "targets": []}
  lengths: dict[str, list[np.ndarray]] = {"inputs": [], "targets": []}
  for batch in ds.ragged_batch(4096).prefetch(2):
    for key in parts:
      x = batch[key]
      if hasattr(x, "flat_values"):
        parts[key].append(x.flat_values.numpy().astype(np.int32))
        lengths[key].append(x.row_lengths().numpy().astype(np.int64))
      else:  # Every element had the same length: ragged_batch gave a dense [n, length].
        x = x.numpy()
        parts[key].append(x.reshape(-1).astype(np.int32))
        lengths[key].append(np.full(x.shape[0], x.shape[1], np.int64))
  out = []
  for key in ("inputs", "targets"):
    values = np.concatenate(parts[key]) if parts[key] else np.zeros([0], np.int32)
    lens = np.concatenate(lengths[key]) if lengths[key] else np.zeros([0], np.int64)
    out.append(packing.Ragged(values, lens))
  return out[0], out[1]


def _tasks_and_rates(name: str) -> list[tuple[Any, float]]:
  """The leaf tasks of a mixture (sorted by name) with their rates; a task has rate 1."""
  import seqio

  try:
    provider = seqio.get_mixture_or_task(name)
  except ValueError as e:
    raise ValueError(
      f"No seqio task or mixture named {name!r} is registered ({e}). Import the "
      "module that registers it (e.g. `flan.data.tasks`) or check the name."
    ) from None
  if isinstance(provider, seqio.Mixture):
    return [(t, float(provider.get_rate(t))) for t in provider.tasks]
  return [(provider, 1.0)]


class MixtureStream:
  """The deterministic row stream of one shard: window index -> packed, shuffled rows."""

  def __init__(
    self,
    name: str,
    feature_lengths: Mapping[str, int],
    seed: int,
    shard_index: int,
    num_shards: int,
    pack: bool,
    window_size: int,
    strategy: str,
  ):
    self.feature_lengths = {
      "inputs": int(feature_lengths["inputs"]),
      "targets": int(feature_lengths["targets"]),
    }
    self.seed, self.shard_index, self.num_shards = int(seed), shard_index, num_shards
    self.pack, self.window_size, self.strategy = pack, window_size, strategy
    self.task_names: list[str] = []
    rates, inputs, targets = [], [], []
    eos_ids = set()
    for task, rate in _tasks_and_rates(name):
      inp, tgt = _materialize(task.name, id(task), self.seed, shard_index, num_shards)
      self.task_names.append(task.name)
      inputs.append(inp)
      targets.append(tgt)
      eos_ids.add(task.output_features["targets"].vocabulary.eos_id)
      if len(inp.lengths) == 0 and rate > 0:
        logging.warning(
          "Task %s has no train examples on shard %d of %d; it is not sampled.",
          task.name,
          shard_index,
          num_shards,
        )
        rate = 0.0
      rates.append(rate)
    self.sizes = np.array([len(x.lengths) for x in inputs], np.int64)
    rates = np.asarray(rates, np.float64)
    if rates.sum() <= 0:
      raise ValueError(
        f"Mixture {name!r} has no examples to sample on shard {shard_index} of "
        f"{num_shards} (tasks: {self.task_names}, sizes: {self.sizes.tolist()})."
      )
    self.probs = rates / rates.sum()
    self._cdf = np.cumsum(self.probs)
    self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
    self.inputs = packing.Ragged(
      np.concatenate([x.values for x in inputs]), np.concatenate([x.lengths for x in inputs])
    )
    self.targets = packing.Ragged(
      np.concatenate([x.values for x in targets]), np.concatenate([x.lengths for x in targets])
    )
    self.eos_id = eos_ids.pop() if len(eos_ids) == 1 else packing.EOS_ID
    self.task_keys = [zlib.crc32(n.encode()) for n in self.task_names]
    self._perm = functools.lru_cache(maxsize=4 * len(self.task_names) + 4)(self._permutation)

  def _key(self, *key: int) -> np.random.Generator:
    return _rng(self.seed, self.shard_index, self.num_shards, *key)

  def _permutation(self, task: int, epoch: int) -> np.ndarray:
    return self._key(_PERM, self.task_keys[task], epoch).permutation(int(self.sizes[task]))

  def draws(self, window: int) -> np.ndarray:
    """Task index of each example of `window`: i.i.d. categorical, a pure function of it."""
    u = self._key(_MIX, window).random(self.window_size)
    return np.minimum(np.searchsorted(self._cdf, u, side="right"), len(self.probs) - 1)

  def counts_at(self, window: int) -> np.ndarray:
    """Per-task draws before `window` (recomputed; states carry it to skip this)."""
    counts = np.zeros(len(self.probs), np.int64)
    for w in range(window):
      counts += np.bincount(self.draws(w), minlength=len(self.probs))
    return counts

  def examples(self, window: int, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global example ids of `window` in stream order, and the counts after it."""
    draws = self.draws(window)
    ids = np.empty(self.window_size, np.int64)
    new_counts = counts.copy()
    for t in np.unique(draws).tolist():
      where = np.flatnonzero(draws == t)
      k = counts[t] + np.arange(len(where), dtype=np.int64)
      n = int(self.sizes[t])
      epochs, within = k // n, k % n
      elems = np.empty(len(k), np.int64)
      for e in np.unique(epochs).tolist():
        sel = epochs == e
        elems[sel] = self._perm(t, e)[within[sel]]
      ids[where] = self.offsets[t] + elems
      new_counts[t] += len(where)
    return ids, new_counts

  def rows(self, window: int, counts: np.ndarray) -> tuple[packing.PackedRows, np.ndarray]:
    """The rows of `window` (shuffled so long and short rows mix within a batch)."""
    ids, new_counts = self.examples(window, counts)
    packed = packing.pack(
      self.inputs.take(ids),
      self.targets.take(ids),
      self.feature_lengths,
      pack=self.pack,
      strategy=self.strategy,
      eos_id=self.eos_id,
    )
    order = self._key(_ROWS, window).permutation(packed.num_rows)
    packed.features = {k: v[order] for k, v in packed.features.items()}
    packed.examples_per_row = packed.examples_per_row[order]
    packed.truncated_per_row = packed.truncated_per_row[order]
    if packed.num_rows:  # Keep example -> row pointing at the shuffled rows.
      new_index = np.empty_like(order)
      new_index[order] = np.arange(len(order))
      packed.example_row = np.where(
        packed.example_row >= 0, new_index[np.maximum(packed.example_row, 0)], -1
      )
    return packed, new_counts
