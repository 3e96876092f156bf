"""Batched, sharded model calls for evaluation: option scoring and decoding on the mesh.

Examples are sorted by length (longest first) before they are cut into batches, and each
batch is padded to its own longest row rounded up to one of a few bucket lengths
(`padded_length`; the caller's lengths are the caps), so short examples do not pay for the
split's longest one; results come back in the caller's order. Rows are padded with copies of
the first row that are dropped afterwards; batches are split over the mesh's "data" axis
like training batches and go through one jitted function per model, compiled once per
bucket shape. Rank classification packs an example's options into one decoder row
(`pack_options`), so each input is encoded, and its cross-attention keys/values projected,
once for all its options.
"""

from __future__ import annotations

import collections
import functools
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from flan.model import partitioning
from flan.tokens import EOS_ID, PAD_ID

MIN_LENGTH = 8  # smallest padded length: keeps the number of compiled shapes small.
# Smallest padded length of a row of packed options: they are short (two one-word options
# and their EOS fill 4 tokens), and every decoder slot pays the vocabulary-wide logits.
MIN_OPTIONS_LENGTH = 4


def padded_length(n: int, cap: int, minimum: int = MIN_LENGTH) -> int:
  """`n` rounded up to the next of 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, ... (four steps per
  power of two: at most 25% padding, few compiled shapes), at most `cap`. A smaller
  `minimum` (4: 4, 8, 12, ..., 28, 32, 40, ...) also makes the steps up to 32 finer."""
  n = max(int(n), minimum)
  step = max(minimum, 1 << max(0, (n - 1).bit_length() - 3))
  return min(cap, -(-n // step) * step)


def length_order(lengths: Sequence[int]) -> np.ndarray:
  """Indices that sort rows longest first (stable: ties keep their order, on every host)."""
  return np.argsort(-np.asarray(lengths, np.int64), kind="stable")


def _rows_array(rows: Sequence[Sequence[int]], length: int, size: int) -> np.ndarray:
  """Token rows as [size, length] int32, padded with copies of the first row."""
  out = np.zeros((size, length), dtype=np.int32)
  for i in range(size):
    row = rows[i] if i < len(rows) else rows[0]
    out[i, : len(row)] = row
  return out


def pack_options(
  options: Sequence[Sequence[Sequence[int]]], length: int, size: int
) -> dict[str, np.ndarray]:
  """Each example's options packed one after another into one decoder row, as seqio packs.

  Returns `model.score_options`'s decoder features, each [size, length] int32:
  "decoder_target_tokens" (the options' tokens), "decoder_input_tokens" (each option
  shifted right within its segment, 0 first) and "decoder_segment_ids" (option j of a row
  is segment j + 1; 0 on padding). Rows past `len(options)` copy the first.
  """
  targets = np.zeros((size, length), np.int32)
  shifted = np.zeros((size, length), np.int32)
  segments = np.zeros((size, length), np.int32)
  for e in range(size):
    at = 0
    for j, o in enumerate(options[e] if e < len(options) else options[0]):
      n = len(o)
      targets[e, at : at + n] = o
      shifted[e, at + 1 : at + n] = o[:-1]
      segments[e, at : at + n] = j + 1
      at += n
  return {
    "decoder_target_tokens": targets,
    "decoder_input_tokens": shifted,
    "decoder_segment_ids": segments,
  }


class ModelRunner:
  """Runs the model's scoring and decoding on fixed-shape batches sharded over "data".

  Every host builds the same global batch and hands `shard_batch` its own slice; outputs
  are replicated so that every host reads all of them. Rank classification scores all
  options of an example in one row (`model.score_options`: the input encoded and its
  cross-attention keys/values projected once) when the model has it, else calls
  `model.score_batch` on (example, option) rows. Each model method is jitted here, once,
  with those shardings, and compiles once per bucket shape for the runner's lifetime.
  `stats` counts batches, padding rows and real tokens against padded slots.
  """

  def __init__(
    self,
    model: Any,
    mesh: jax.sharding.Mesh,
    batch_size: int,
    *,
    num_beams: int = 1,
    share_encoder: bool | None = None,
  ):
    partitioning.check_batch_size(batch_size, mesh)
    self.model, self.mesh, self.batch_size, self.num_beams = model, mesh, batch_size, num_beams
    self.shard_index, self.num_shards = partitioning.data_shard_info(mesh)
    self._unit = math.lcm(mesh.shape["data"], self.num_shards)
    if share_encoder is None:
      share_encoder = hasattr(model, "score_options")
    self.share_encoder = share_encoder
    replicated = NamedSharding(mesh, P())
    self._score = jax.jit(model.score_batch, out_shardings=replicated)
    if share_encoder:
      self._score_shared = jax.jit(model.score_options, out_shardings=replicated)
    self._predict = functools.lru_cache(maxsize=None)(
      lambda length: jax.jit(
        functools.partial(model.predict_batch, max_decode_length=length, num_beams=num_beams),
        out_shardings=replicated,
      )
    )
    self.stats = collections.Counter()

  def place(self, params: Any) -> Any:
    """Puts parameters on the mesh as training shards them (no-op when they already are)."""
    try:
      shardings = partitioning.logical_to_sharding(
        self.model.param_logical_specs(), self.mesh, shapes=params
      )
    except (AttributeError, TypeError, ValueError) as e:
      logging.warning("Parameter specs do not match the parameters (%s); replicating.", e)
      shardings = NamedSharding(self.mesh, P())
    return jax.device_put(params, shardings)

  def _rows(self, n: int, size: int) -> int:
    """Rows of a batch holding `n` examples (at most `size`): `size`, or for the last, partial
    batch of a split the data unit times the next power of two that holds them (few extra
    shapes; a small split's last batch no longer pays for a full one)."""
    if n >= size:
      return size
    units = -(-n // self._unit)
    return min(size, self._unit * (1 << (units - 1).bit_length()))

  def _global(self, batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    local = {}
    for k, v in batch.items():
      per_host = v.shape[0] // self.num_shards
      local[k] = v[self.shard_index * per_host : (self.shard_index + 1) * per_host]
    return partitioning.shard_batch(local, self.mesh)

  def score_options(
    self,
    params: Any,
    inputs: Sequence[Sequence[int]],
    options: Sequence[Sequence[Sequence[int]]],
    lengths: tuple[int, int],
  ) -> list[list[float]]:
    """Rank classification: per example, the score of each of its options.

    `lengths` (inputs, targets) cap the padded input length and each option's length. With
    `share_encoder`, an example is one row: its input, and its options packed one after
    another into one decoder row (`pack_options`, `model.score_options`), so the input is
    encoded and its cross-attention keys/values projected once for all options. Each batch
    of length-sorted examples is padded to its own longest input and packed option row,
    bucketed (`padded_length`). Without it, (example, option) rows go through `score`.
    """
    if not inputs:
      return []
    if not self.share_encoder:
      flat = [(i, o) for i, opts in enumerate(options) for o in opts]
      scores = self.score(params, [inputs[i] for i, _ in flat], [o for _, o in flat], lengths)
      out = [[] for _ in inputs]
      for (i, _), s in zip(flat, scores.tolist()):
        out[i].append(s)
      return out
    cap_li, cap_lt = lengths
    k = max(1, max(len(o) for o in options))
    # About batch_size (example, option) pairs per batch, in whole examples per data shard:
    # the decoder holds as many tokens as batch_size unpacked option rows would.
    size = max(self._unit, self.batch_size // k // self._unit * self._unit)
    order = length_order([len(x) for x in inputs])
    out: list[list[float]] = [[] for _ in inputs]
    for start in range(0, len(order), size):
      idx = order[start : start + size]
      rows = self._rows(len(idx), size)
      li = padded_length(max(len(inputs[i]) for i in idx), cap_li)
      packed = max(sum(len(o) for o in options[i]) for i in idx)
      ld = padded_length(packed, max(k * cap_lt, packed), MIN_OPTIONS_LENGTH)
      enc = _rows_array([inputs[i] for i in idx], li, rows)  # [E, Li]
      batch = {"encoder_input_tokens": enc, **pack_options([options[i] for i in idx], ld, rows)}
      with partitioning.activation_rules(self.mesh):
        scores = np.asarray(self._score_shared(params, self._global(batch)))  # [E, Ld]
      for e, i in enumerate(idx.tolist()):
        out[i] = scores[e, : len(options[i])].tolist()
      self.stats["score_batches"] += 1
      self.stats["padding_rows"] += rows - len(idx)
      self.stats["encoder_tokens"] += sum(len(inputs[i]) for i in idx)
      self.stats["encoder_slots"] += rows * li
      self.stats["decoder_tokens"] += sum(len(o) for i in idx for o in options[i])
      self.stats["decoder_slots"] += rows * ld
    return out

  def score(
    self,
    params: Any,
    inputs: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    lengths: tuple[int, int],
  ) -> np.ndarray:
    """Sum of target log-probs per row: [num_rows] float32 (`lengths` are caps, as above)."""
    cap_li, cap_lt = lengths
    out = np.zeros((len(inputs),), np.float32)
    order = length_order([len(x) for x in inputs])
    for start in range(0, len(order), self.batch_size):
      idx = order[start : start + self.batch_size]
      rows = self._rows(len(idx), self.batch_size)
      li = padded_length(max(len(inputs[i]) for i in idx), cap_li)
      lt = padded_length(max(len(targets[i]) for i in idx), cap_lt)
      enc = _rows_array([inputs[i] for i in idx], li, rows)
      tgt = _rows_array([targets[i] for i in idx], lt, rows)
      dec_in = np.zeros_like(tgt)
      dec_in[:, 1:] = tgt[:, :-1]  # teacher forcing: targets shifted right, 0 first.
      batch = {
        "encoder_input_tokens": enc,
        "decoder_input_tokens": dec_in,
        "decoder_target_tokens": tgt,
        "decoder_loss_weights": (tgt != PAD_ID).astype(np.int32),
      }
      with partitioning.activation_rules(self.mesh):
        scores = np.asarray(self._score(params, self._global(batch)))  # [B]
      out[idx] = scores[: len(idx)]
      self.stats["score_batches"] += 1
      self.stats["padding_rows"] += rows - len(idx)
      self.stats["encoder_tokens"] += sum(len(inputs[i]) for i in idx)
      self.stats["encoder_slots"] += rows * li
    return out

  def predict(
    self, params: Any, inputs: Sequence[Sequence[int]], input_length: int, decode_length: int
  ) -> list[list[int]]:
    """Generated tokens per row, cut at the first EOS (`input_length` is a cap, as above)."""
    out: list[list[int]] = [[] for _ in inputs]
    order = length_order([len(x) for x in inputs])
    for start in range(0, len(order), self.batch_size):
      idx = order[start : start + self.batch_size]
      rows = self._rows(len(idx), self.batch_size)
      li = padded_length(max(len(inputs[i]) for i in idx), input_length)
      enc = _rows_array([inputs[i] for i in idx], li, rows)
      blank = np.zeros((rows, decode_length), np.int32)  # [B, Ld]
      batch = {
        "encoder_input_tokens": enc,
        "decoder_input_tokens": blank,
        "decoder_target_tokens": blank,
        "decoder_loss_weights": blank,
      }
      with partitioning.activation_rules(self.mesh):
        tokens = np.asarray(self._predict(decode_length)(params, self._global(batch)))
      for e, i in enumerate(idx.tolist()):
        row = tokens[e].tolist()
        row = row[: row.index(EOS_ID)] if EOS_ID in row else row
        out[i] = [t for t in row if t != PAD_ID]
      self.stats["predict_batches"] += 1
      self.stats["padding_rows"] += rows - len(idx)
      self.stats["encoder_tokens"] += sum(len(inputs[i]) for i in idx)
      self.stats["encoder_slots"] += rows * li
    return out
