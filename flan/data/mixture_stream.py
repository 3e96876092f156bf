"""The mixture stream of one data shard: which example comes at which position.

Each task of a seqio mixture is read once for the shard into ragged token arrays (or
memory-mapped from the token cache, `flan.data.token_cache`). Example i
belongs to window w = i // window_size; its task is drawn with probability proportional to
the mixture rate from a generator keyed on (seed, shard, w), and the k-th draw of task t is
element perm(seed, shard, t, k // n_t)[k % n_t]. A window is packed (`flan.data.packing`) and its
rows shuffled with a key of its own. Everything is a pure function of (seed, shard, window),
which is what makes `flan.data.input_pipeline`'s resume exact.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import weakref
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from flan.data import packing, token_cache
from flan.errors import UserError

_MIX, _PERM, _ROWS = 0x6D6978, 0x7065726D, 0x726F7773  # Stream tags for the RNG keys.


def _rng(*key: int) -> np.random.Generator:
  """A generator that depends only on `key` (counter-based: any position can be recomputed)."""
  return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) for k in key])))


class RaggedParts:
  """Several `packing.Ragged` seen as one, without concatenating (copying) their tokens.

  The tasks' token arrays stay where they are (in memory, or memory-mapped from the token
  cache); `take` gathers from each part what it needs.
  """

  def __init__(self, parts: Sequence[packing.Ragged]):
    self.parts = list(parts)
    sizes = [len(p.lengths) for p in self.parts]
    self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)  # [parts + 1]
    self.lengths = (
      np.concatenate([np.asarray(p.lengths, np.int64) for p in self.parts])
      if self.parts
      else np.zeros([0], np.int64)
    )  # [examples]

  def take(self, indices: np.ndarray) -> packing.Ragged:
    """The sequences at global `indices`, in that order."""
    indices = np.asarray(indices, np.int64)
    lengths = self.lengths[indices]
    which = np.searchsorted(self.offsets, indices, side="right") - 1
    values = np.empty(int(lengths.sum()), np.int32)
    out_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    for t in np.unique(which).tolist():
      sel = np.flatnonzero(which == t)
      part = self.parts[t].take(indices[sel] - self.offsets[t])
      values[packing._ranges(out_starts[sel], lengths[sel])] = part.values  # pylint: disable=protected-access
    return packing.Ragged(values, lengths)


# Token arrays of the tasks that live streams use, shared between them and dropped with the
# last one (an lru_cache would keep a second copy of every task for the whole run).
_LIVE: weakref.WeakValueDictionary[tuple, token_cache.Tokens] = weakref.WeakValueDictionary()
_LIVE_LOCK = threading.Lock()


def _materialize(
  task: Any, seed: int, shard_index: int, num_shards: int, cache_dir: str | None = None
) -> token_cache.Tokens:
  """All train examples of one task on one shard, as ragged int32 token arrays.

  With `cache_dir`, from the token cache when it holds them (memory-mapped), else tokenized
  and written there for the next run (`flan.data.token_cache`). Only tasks whose source
  gives a `cache_key` (the FLAN tasks) are cached.
  """
  for key in ("inputs", "targets"):
    if key not in task.output_features:
      raise ValueError(
        f"Task {task.name!r} has no {key!r} feature (it has "
        f"{sorted(task.output_features)}); the encoder-decoder pipeline needs both."
      )
  key = (task.name, id(task), seed, shard_index, num_shards, cache_dir)
  with _LIVE_LOCK:
    live = _LIVE.get(key)
  if live is not None:
    return live
  parts, bounds, shard = None, None, (shard_index, num_shards)
  if cache_dir is not None and callable(getattr(task.source, "cache_key", None)):
    parts = task.source.cache_key("train", seed)
    if parts is not None:
      parts = {"task": task.name, **parts}
      bounds = task.source.shard_id_bounds("train", shard)
  tokens = token_cache.load_or_build(
    cache_dir,
    task.name,
    parts,
    shard,
    bounds,
    lambda: _tokenize(task, seed, shard_index, num_shards),
  )
  with _LIVE_LOCK:
    _LIVE[key] = tokens
  return tokens


def _tokenize(task: Any, seed: int, shard_index: int, num_shards: int) -> token_cache.Tokens:
  """Reads, preprocesses and tokenizes one task's shard through seqio."""
  import seqio  # Heavy (TensorFlow); only needed here.

  ds = task.get_dataset(
    sequence_length=None,
    split="train",
    shuffle=False,
    seed=seed,
    shard_info=seqio.ShardInfo(shard_index, num_shards),
    num_epochs=1,
  )
  has_ids = "example_id" in ds.element_spec
  ds = ds.map(
    lambda ex: {
      "inputs": ex["inputs"],
      "targets": ex["targets"],
      "example_id": ex["example_id"] if has_ids else 0,
    }
  )
  parts: dict[str, list[np.ndarray]] = {"inputs": [], "targets": []}
  lengths: dict[str, list[np.ndarray]] = {"inputs": [], "targets": []}
  ids = []
  for batch in ds.ragged_batch(4096).prefetch(2):
    ids.append(np.asarray(batch["example_id"], np.int32).reshape(-1))
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
  example_id = np.concatenate(ids) if ids else np.zeros([0], np.int32)
  return token_cache.Tokens(out[0], out[1], example_id)


def _tasks_and_rates(name: str) -> list[tuple[Any, float]]:
  """The leaf tasks of a mixture (sorted by name) with their rates; a task has rate 1."""
  import seqio

  try:
    provider = seqio.get_mixture_or_task(name)
  except ValueError as e:
    raise UserError(
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
    cache_dir: str | None = None,
  ):
    self.feature_lengths = {
      "inputs": int(feature_lengths["inputs"]),
      "targets": int(feature_lengths["targets"]),
    }
    self.seed, self.shard_index, self.num_shards = int(seed), shard_index, num_shards
    self.pack, self.window_size, self.strategy = pack, window_size, strategy
    self.task_names: list[str] = []
    rates, self._tokens = [], []
    eos_ids = set()
    tasks = _tasks_and_rates(name)
    start = time.perf_counter()
    logging.info(
      "Reading the %d task(s) of %s into memory (data shard %d of %d).",
      len(tasks),
      name,
      shard_index,
      num_shards,
    )
    for i, (task, rate) in enumerate(tasks):
      tick = time.perf_counter()
      tokens = _materialize(task, self.seed, shard_index, num_shards, cache_dir)
      logging.info(
        "Read %s (%d/%d): %d train examples in %.1f s.",
        task.name,
        i + 1,
        len(tasks),
        len(tokens),
        time.perf_counter() - tick,
      )
      self.task_names.append(task.name)
      self._tokens.append(tokens)  # keeps the shared arrays alive while this stream is.
      eos_ids.add(task.output_features["targets"].vocabulary.eos_id)
      if len(tokens) == 0 and rate > 0:
        logging.warning(
          "Task %s has no train examples on shard %d of %d; it is not sampled.",
          task.name,
          shard_index,
          num_shards,
        )
        rate = 0.0
      rates.append(rate)
    self.sizes = np.array([len(x) for x in self._tokens], np.int64)
    logging.info(
      "Read %d train examples of %d task(s) in %.1f s.",
      int(self.sizes.sum()),
      len(tasks),
      time.perf_counter() - start,
    )
    rates = np.asarray(rates, np.float64)
    if rates.sum() <= 0:
      raise UserError(
        f"Mixture {name!r} has no examples to sample on shard {shard_index} of "
        f"{num_shards} (tasks: {self.task_names}, sizes: {self.sizes.tolist()})."
      )
    self.probs = rates / rates.sum()
    self._cdf = np.cumsum(self.probs)
    self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
    self.inputs = RaggedParts([x.inputs for x in self._tokens])
    self.targets = RaggedParts([x.targets for x in self._tokens])
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


def build_token_cache(name: str, seed: int, cache_dir: str) -> list[dict[str, Any]]:
  """Writes the token cache of every task of mixture (or task) `name`, whole (shard 0 of 1).

  What `scripts/prepare_data.py --cache` runs ahead of a pod run: each host then maps its
  own rows out of these entries. Tasks already cached are only checked.

  Returns:
    One row per task: its name, rows, input and target tokens, and the entry directory.
  """
  out = []
  for task, _ in _tasks_and_rates(name):
    if not callable(getattr(task.source, "cache_key", None)):
      raise ValueError(
        f"Task {task.name!r} cannot be cached: its source has no cache_key (only FLAN tasks can)."
      )
    tokens = _materialize(task, int(seed), 0, 1, cache_dir)
    parts = task.source.cache_key("train", int(seed))
    out.append(
      {
        "task": task.name,
        "rows": len(tokens),
        "input_tokens": int(tokens.inputs.values.shape[0]),
        "target_tokens": int(tokens.targets.values.shape[0]),
        "entry": str(token_cache.entry_dir(cache_dir, task.name, {"task": task.name, **parts}))
        if parts is not None
        else None,
      }
    )
    with _LIVE_LOCK:
      _LIVE.clear()  # one task's tokens in memory at a time.
    del tokens
  return out
