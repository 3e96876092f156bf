"""The training input stream: mixture sampling, packing and batching with exact resume.

seqio resumes a tf.data pipeline either by checkpointing the iterator (state tied to the graph,
growing with the buffers) or by skipping, which recomputes every earlier batch. Here the stream
is a pure function of (seed, shard, position), so a tiny JSON state is enough:

1. Each task of the mixture is read once for this host's shard (`Task.get_dataset(
   sequence_length=None, shuffle=False, num_epochs=1)`) into ragged token arrays. The FLAN
   tasks are small (capped at 30k examples), so they fit in memory.
2. Example i of the stream belongs to window w = i // window_size. Its task is drawn i.i.d.
   with probability proportional to the mixture rate, from a generator keyed on (seed, shard,
   w); the k-th draw of task t is element perm(seed, shard, t, k // n_t)[k % n_t], a fresh
   permutation per epoch of that task.
3. Each window of examples is packed (`flan.data.packing`, first-fit-decreasing) into rows, the rows
   are shuffled (keyed on the window), and consecutive rows form local batches.

The state after a batch is (window, next row in it, per-task draw counts at the window's start,
running statistics); restoring recomputes that one window. A background thread prefetches
batches; `state()` always describes the last batch handed out, never the prefetched ones.
Each host reads its own shard and so has its own position: save and restore every host's state
(a state is refused by another shard).

A consequence of reading each task once: an example keeps the template drawn for it from the
seed in every epoch (the 10 templates still spread over a task's examples).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from flan.data import packing
from flan.data.mixture_stream import MixtureStream

STATE_VERSION = 1
_STAT_KEYS = (
  "batches",
  "rows",
  "examples",
  "truncated_examples",
  "empty_examples",
  "encoder_tokens",
  "decoder_tokens",
  "encoder_slots",
  "decoder_slots",
)


class TrainIterator:
  """Infinite iterator of local training batches with an exact, JSON-serialisable state."""

  def __init__(self, stream: MixtureStream, name: str, local_batch_size: int, prefetch: int = 4):
    self._stream = stream
    self._name = name
    self.local_batch_size = local_batch_size
    self._prefetch = max(1, prefetch)
    self._state = self._initial_state()
    self._thread: threading.Thread | None = None
    self._queue: queue.Queue | None = None
    self._stop = threading.Event()

  # --- state -------------------------------------------------------------------------------

  def _config(self) -> dict[str, Any]:
    s = self._stream
    return {
      "mixture_or_task_name": self._name,
      "seed": s.seed,
      "shard_index": s.shard_index,
      "num_shards": s.num_shards,
      "feature_lengths": dict(s.feature_lengths),
      "pack": s.pack,
      "window_size": s.window_size,
      "strategy": s.strategy,
    }

  def _initial_state(self) -> dict[str, Any]:
    return {
      "version": STATE_VERSION,
      **self._config(),
      "position_of_shard": self._stream.shard_index,
      "window": 0,
      "row": 0,
      "task_counts": dict.fromkeys(self._stream.task_names, 0),
      "stats": dict.fromkeys(_STAT_KEYS, 0),
    }

  def state(self) -> dict[str, Any]:
    """Where the stream stands after the last batch returned by `next` (JSON-serialisable)."""
    return _copy_state(self._state)

  def restore(self, state: Mapping[str, Any]) -> None:
    """Continues from `state` (from `state()` of an iterator with the same configuration)."""
    if state.get("version") != STATE_VERSION:
      raise ValueError(
        f"Input-pipeline state version {state.get('version')!r} is not "
        f"{STATE_VERSION}; it was written by an incompatible flan version."
      )
    mine = self._config()
    diff = {k: (state.get(k), v) for k, v in mine.items() if state.get(k) != v}
    if diff:
      detail = "; ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in diff.items())
      raise ValueError(
        f"The saved input-pipeline state belongs to a different stream ({detail}). "
        "Resume with the same mixture, seed, feature lengths, packing and hosts, or "
        "start the data from scratch."
      )
    owner = state.get("position_of_shard", state.get("shard_index"))
    if owner != mine["shard_index"] and (state.get("window"), state.get("row")) != (0, 0):
      raise ValueError(
        f"This input-pipeline state is the position of data shard {owner}, not of shard "
        f"{mine['shard_index']}: shards pack different examples, so their (window, row) "
        "positions differ even after the same number of steps. Save every host's own "
        "`it.state()` (e.g. one JSON per process, as t5x writes train_ds-<shard>-of-<n>) and "
        "restore each host from its own."
      )
    self._stop_thread()
    new = _copy_state(state)
    new["position_of_shard"] = mine["shard_index"]
    counts = new.get("task_counts")
    if counts is None or set(counts) != set(self._stream.task_names):
      recomputed = self._stream.counts_at(int(new["window"]))
      new["task_counts"] = dict(zip(self._stream.task_names, recomputed.tolist()))
    new["stats"] = {**dict.fromkeys(_STAT_KEYS, 0), **new.get("stats", {})}
    self._state = new

  @property
  def stats(self) -> dict[str, Any]:
    """Counts over the batches handed out so far, and the packing efficiency they reached."""
    s = dict(self._state["stats"])
    enc, dec = s["encoder_slots"], s["decoder_slots"]
    s["non_padding_fraction/encoder"] = s["encoder_tokens"] / enc if enc else 0.0
    s["non_padding_fraction/decoder"] = s["decoder_tokens"] / dec if dec else 0.0
    s["non_padding_fraction/overall"] = (
      (s["encoder_tokens"] + s["decoder_tokens"]) / (enc + dec) if enc + dec else 0.0
    )
    s["examples_per_row"] = s["examples"] / s["rows"] if s["rows"] else 0.0
    return s

  @property
  def task_names(self) -> list[str]:
    return list(self._stream.task_names)

  @property
  def task_probabilities(self) -> dict[str, float]:
    return dict(zip(self._stream.task_names, self._stream.probs.tolist()))

  def batch_shapes(self) -> dict[str, tuple[int, int]]:
    """Shape of each feature of a local batch (for model initialisation)."""
    li, lt = self._stream.feature_lengths["inputs"], self._stream.feature_lengths["targets"]
    keys = packing.PACKED_KEYS if self._stream.pack else packing.UNPACKED_KEYS
    return {k: (self.local_batch_size, li if k.startswith("encoder") else lt) for k in keys}

  def _start_thread(self) -> None:
    self._stop = threading.Event()
    self._queue = queue.Queue(maxsize=self._prefetch)
    items = _produce(self._stream, self._config(), self.local_batch_size, _copy_state(self._state))
    self._thread = threading.Thread(
      target=_worker, name="flan-input-pipeline", daemon=True, args=(items, self._queue, self._stop)
    )
    self._thread.start()

  def _stop_thread(self) -> None:
    if self._thread is None:
      return
    self._stop.set()
    while self._thread.is_alive():
      try:
        self._queue.get(timeout=0.05)
      except queue.Empty:
        pass
    self._thread.join()
    self._thread, self._queue = None, None

  def __iter__(self) -> TrainIterator:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._thread is None:
      self._start_thread()
    item = self._queue.get()
    if isinstance(item, BaseException):
      self._stop_thread()
      raise item
    batch, self._state = item
    return batch

  def close(self) -> None:
    """Stops the prefetch thread (a later `next` starts it again)."""
    self._stop_thread()

  def __del__(self) -> None:
    stop = getattr(self, "_stop", None)
    if stop is not None:
      stop.set()

  def __enter__(self) -> TrainIterator:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _produce(stream: MixtureStream, config: Mapping[str, Any], size: int, state: Mapping[str, Any]):
  """Yields (batch, state after it) forever, starting at `state`; a pure function of them.

  Runs in the prefetch thread. It holds no reference to the TrainIterator, so an abandoned
  iterator can be collected (and its thread stopped).
  """
  window, row = int(state["window"]), int(state["row"])
  counts = np.array([state["task_counts"][n] for n in stream.task_names], np.int64)
  stats = dict(state["stats"])
  packed, next_counts = stream.rows(window, counts)
  if row == 0:
    stats["empty_examples"] += packed.num_empty
  while True:
    pieces, need = [], size
    while need:
      if row >= packed.num_rows:
        window, row, counts = window + 1, 0, next_counts
        packed, next_counts = stream.rows(window, counts)
        stats["empty_examples"] += packed.num_empty
        continue
      take = min(need, packed.num_rows - row)
      sl = slice(row, row + take)
      pieces.append(
        (
          {k: v[sl] for k, v in packed.features.items()},
          packed.examples_per_row[sl],
          packed.truncated_per_row[sl],
        )
      )
      row += take
      need -= take
    batch = {
      k: np.concatenate([p[0][k] for p in pieces]) if len(pieces) > 1 else pieces[0][0][k]
      for k in pieces[0][0]
    }
    fractions_in = batch.get("encoder_segment_ids", batch["encoder_input_tokens"])
    stats["batches"] += 1
    stats["rows"] += size
    stats["examples"] += int(sum(p[1].sum() for p in pieces))
    stats["truncated_examples"] += int(sum(p[2].sum() for p in pieces))
    stats["encoder_tokens"] += int(np.count_nonzero(fractions_in))
    stats["decoder_tokens"] += int(batch["decoder_loss_weights"].sum())
    stats["encoder_slots"] += batch["encoder_input_tokens"].size
    stats["decoder_slots"] += batch["decoder_target_tokens"].size
    if row >= packed.num_rows:  # Normalise: point at the next window's start.
      after = {"window": window + 1, "row": 0, "counts": next_counts}
    else:
      after = {"window": window, "row": row, "counts": counts}
    new_state = {
      **config,
      "version": STATE_VERSION,
      "position_of_shard": config["shard_index"],
      "window": after["window"],
      "row": after["row"],
      "task_counts": dict(zip(stream.task_names, after["counts"].tolist())),
      "stats": dict(stats),
    }
    yield batch, new_state


def _worker(items, out: queue.Queue, stop: threading.Event) -> None:
  """Moves items into the bounded queue until `stop`; an exception is queued for the consumer."""

  def put(item) -> bool:
    while not stop.is_set():
      try:
        out.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  try:
    for item in items:
      if not put(item):
        return
  except BaseException as e:  # Surfaced to the consumer by `__next__`.
    put(e)


def _copy_state(state: Mapping[str, Any]) -> dict[str, Any]:
  out = dict(state)
  for k in ("task_counts", "stats", "feature_lengths"):
    if isinstance(out.get(k), Mapping):
      out[k] = dict(out[k])
  return out


def make_train_iterator(
  mixture_or_task_name: str,
  feature_lengths: Mapping[str, int],
  global_batch_size: int,
  seed: int | None,
  *,
  pack: bool = True,
  shard_index: int | None = None,
  num_shards: int | None = None,
  window_size: int = 1024,
  strategy: str = "first_fit_decreasing",
  prefetch: int = 4,
) -> TrainIterator:
  """The training batches of a seqio task or mixture for this host.

  Args:
    mixture_or_task_name: a registered seqio task or mixture with `inputs`/`targets` features.
    feature_lengths: {"inputs": Li, "targets": Lt}; longer examples are cut (EOS kept) and
      counted in `stats["truncated_examples"]`.
    global_batch_size: rows per step over all hosts; each host yields
      global_batch_size // num_shards rows.
    seed: fixes task reading (templates), mixture draws, epoch permutations and row order.
    pack: several examples per row (segment ids and positions) or one padded example per row.
    shard_index / num_shards: this host's data shard (default: jax process index / count).
    window_size: examples packed together; larger packs slightly denser.
    strategy: packing strategy (see `flan.data.packing.place`).
    prefetch: batches prepared ahead in a background thread.

  Returns:
    A TrainIterator: `next(it)` -> dict of int32 [local_batch, L] arrays, `it.state()`,
    `it.restore(state)`, `it.stats`.
  """
  if seed is None:  # The order must be reproducible for exact resume.
    logging.warning(
      "make_train_iterator: seed=None; using seed 0 so the data order can be "
      "resumed exactly. Pass a seed to choose another order."
    )
    seed = 0
  if shard_index is None or num_shards is None:
    import jax

    shard_index = jax.process_index() if shard_index is None else shard_index
    num_shards = jax.process_count() if num_shards is None else num_shards
  if not 0 <= shard_index < num_shards:
    raise ValueError(f"shard_index={shard_index} must be in [0, num_shards={num_shards}).")
  if global_batch_size <= 0 or global_batch_size % num_shards:
    raise ValueError(
      f"global_batch_size={global_batch_size} must be a positive multiple of the "
      f"number of data shards ({num_shards}); pick e.g. "
      f"{max(num_shards, global_batch_size // num_shards * num_shards)}."
    )
  missing = {"inputs", "targets"} - set(feature_lengths or {})
  if missing:
    raise ValueError(
      f"feature_lengths must give 'inputs' and 'targets' (missing "
      f"{sorted(missing)}), e.g. {{'inputs': 1024, 'targets': 256}}."
    )
  if any(int(v) <= 0 for v in feature_lengths.values()):
    raise ValueError(f"feature_lengths must be positive, got {dict(feature_lengths)}.")
  if window_size <= 0:
    raise ValueError(f"window_size must be positive, got {window_size}.")
  if strategy not in packing.STRATEGIES:
    raise ValueError(f"Unknown packing strategy {strategy!r}; choose one of {packing.STRATEGIES}.")
  stream = MixtureStream(
    mixture_or_task_name,
    feature_lengths,
    seed,
    shard_index,
    num_shards,
    pack,
    window_size,
    strategy,
  )
  return TrainIterator(stream, mixture_or_task_name, global_batch_size // num_shards, prefetch)
