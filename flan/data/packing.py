"""Packs encoder-decoder examples into fixed-length rows, densely and reproducibly.

The output is exactly the batch contract of seqio's `EncDecFeatureConverter(pack=True)`:
`encoder_input_tokens`, `decoder_target_tokens`, `decoder_input_tokens` (targets shifted right,
0 at each segment start), `decoder_loss_weights`, `{encoder,decoder}_segment_ids` (1, 2, ...;
0 = padding) and `{encoder,decoder}_positions` (restarting at 0 per segment). Segment k of the
encoder and segment k of the decoder are the same example.

seqio packs windows of examples next-fit: an example that does not fit closes the open row,
which wastes about a third of the tokens on long-tailed lengths. Here the examples of a window
are placed first-fit-decreasing (by their summed length fractions) or best-fit-decreasing, so
a short example fills a hole left earlier (`scripts/benchmark_data.py` compares both; figures
in the README).

Examples travel as ragged arrays (`values` concatenated, `lengths` per example) so that
gathering, truncating and scattering tokens are whole-array numpy operations; only the
placement decision runs one example at a time (a few microseconds each).

Lengths are the real sequence lengths, not `count_nonzero` as in seqio, so a stray 0 token
inside an example cannot shift a segment boundary.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence

import numpy as np

from flan.errors import UserError
from flan.tokens import EOS_ID

STRATEGIES = ("first_fit", "first_fit_decreasing", "best_fit_decreasing")
PACKED_KEYS = (
  "encoder_input_tokens",
  "decoder_target_tokens",
  "decoder_input_tokens",
  "decoder_loss_weights",
  "encoder_segment_ids",
  "decoder_segment_ids",
  "encoder_positions",
  "decoder_positions",
)
UNPACKED_KEYS = PACKED_KEYS[:4]


@dataclasses.dataclass(frozen=True)
class Ragged:
  """A batch of variable-length int32 sequences: `values` concatenated, `lengths` each."""

  values: np.ndarray  # [sum(lengths)] int32
  lengths: np.ndarray  # [num_examples] int64

  @classmethod
  def from_list(cls, seqs: Sequence[np.ndarray]) -> Ragged:
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    values = (
      np.concatenate(seqs).astype(np.int32, copy=False) if len(seqs) else np.zeros([0], np.int32)
    )
    return cls(values, lengths)

  @functools.cached_property
  def starts(self) -> np.ndarray:
    """Offset of each sequence in `values` (computed once: gathers reuse it)."""
    return np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)

  def to_list(self) -> list[np.ndarray]:
    return np.split(self.values, np.cumsum(self.lengths)[:-1]) if len(self.lengths) else []

  def take(self, indices: np.ndarray) -> Ragged:
    """The sequences at `indices`, in that order (one vectorised gather)."""
    indices = np.asarray(indices, np.int64)
    lengths = self.lengths[indices]
    return Ragged(self.values[_ranges(self.starts[indices], lengths)], lengths)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
  """Concatenation of `arange(s, s + n)` for each (s, n): the flat indices of a gather."""
  total = int(lengths.sum())
  if total == 0:
    return np.zeros([0], np.int64)
  ends = np.cumsum(lengths)
  # Offset of each token inside its own sequence, plus the sequence's start.
  within = np.arange(total, dtype=np.int64) - np.repeat(ends - lengths, lengths)
  return within + np.repeat(starts, lengths)


def _positions(lengths: np.ndarray) -> np.ndarray:
  """Position of each token inside its sequence, for concatenated sequences."""
  total = int(lengths.sum())
  ends = np.cumsum(lengths)
  return np.arange(total, dtype=np.int64) - np.repeat(ends - lengths, lengths)


def truncate(seqs: Ragged, max_length: int, eos_id: int = EOS_ID) -> tuple[Ragged, np.ndarray]:
  """Cuts sequences longer than `max_length`, keeping a final EOS as the last token.

  seqio's trim cuts on the right and so loses the EOS of a too-long example; here a sequence
  that ends in `eos_id` keeps it (the first max_length - 1 tokens, then EOS). A sequence that
  does not end in EOS is simply cut.

  Returns:
    (truncated sequences, bool [num_examples] marking the ones that were cut).
  """
  cut = seqs.lengths > max_length
  if not cut.any():
    return seqs, cut
  pos = _positions(seqs.lengths)
  n = np.repeat(seqs.lengths, seqs.lengths)
  last = np.concatenate([[0], np.cumsum(seqs.lengths)])[1:] - 1
  ends_in_eos = np.zeros(len(seqs.lengths), bool)
  nonempty = seqs.lengths > 0
  ends_in_eos[nonempty] = seqs.values[last[nonempty]] == eos_id
  eos_tok = np.repeat(ends_in_eos, seqs.lengths)
  keep = np.where(eos_tok, (pos < max_length - 1) | (pos == n - 1), pos < max_length)
  return Ragged(seqs.values[keep], np.minimum(seqs.lengths, max_length)), cut


def place(
  in_lengths: np.ndarray,
  tg_lengths: np.ndarray,
  in_capacity: int,
  tg_capacity: int,
  strategy: str = "first_fit_decreasing",
) -> tuple[np.ndarray, np.ndarray]:
  """Assigns each example to a row so that both features fit; deterministic.

  Args:
    in_lengths / tg_lengths: [n] lengths, each already <= its capacity.
    in_capacity / tg_capacity: row lengths of the encoder and the decoder.
    strategy: "first_fit" (arrival order, lowest-numbered row with room),
      "first_fit_decreasing" (the same over examples sorted by in/in_cap + tg/tg_cap, longest
      first; the default, densest here) or "best_fit_decreasing" (sorted the same way, into the
      row left with the least room).

  Returns:
    (row [n] int64, segment [n] int64): the row of each example and its 1-based segment id
    (the order it was placed in its row). Rows are numbered in order of opening.
  """
  if strategy not in STRATEGIES:
    raise UserError(f"Unknown packing strategy {strategy!r}; choose one of {STRATEGIES}.")
  n = len(in_lengths)
  a = np.asarray(in_lengths, np.int64)
  b = np.asarray(tg_lengths, np.int64)
  if strategy == "first_fit":
    order = np.arange(n)
  else:  # Stable sort: ties keep arrival order, so the result is reproducible.
    order = np.argsort(-(a / in_capacity + b / tg_capacity), kind="stable")
  best = strategy == "best_fit_decreasing"
  room_in = np.empty(n, np.int64)  # Remaining room per open row.
  room_tg = np.empty(n, np.int64)
  fill = np.zeros(n, np.int64)  # Segments per row so far.
  row = np.empty(n, np.int64)
  segment = np.empty(n, np.int64)
  num_rows = 0
  for j in order.tolist():
    x, y = a[j], b[j]
    k = -1
    if num_rows:
      fits = (room_in[:num_rows] >= x) & (room_tg[:num_rows] >= y)
      if best:
        slack = np.where(
          fits,
          (room_in[:num_rows] - x) / in_capacity + (room_tg[:num_rows] - y) / tg_capacity,
          np.inf,
        )
        k = int(slack.argmin())
      else:
        k = int(fits.argmax())
      if not fits[k]:
        k = -1
    if k < 0:
      k = num_rows
      num_rows += 1
      room_in[k], room_tg[k] = in_capacity, tg_capacity
    room_in[k] -= x
    room_tg[k] -= y
    fill[k] += 1
    row[j], segment[j] = k, fill[k]
  return row, segment


def _scatter(
  seqs: Ragged,
  row: np.ndarray,
  segment: np.ndarray,
  num_rows: int,
  length: int,
  in_row_order: np.ndarray,
) -> tuple[np.ndarray, ...]:
  """Writes each sequence at its row and offset.

  Returns:
    tokens, segment ids, positions (each int32 [num_rows, length]), and for every token its
    flat destination index and its position in its sequence.
  """
  # Offset of each example in its row: lengths of the earlier segments of that row.
  offset = np.zeros(len(row), np.int64)
  ordered = in_row_order  # Example indices sorted by (row, segment).
  if len(ordered):
    lens = seqs.lengths[ordered]
    ends = np.cumsum(lens)
    row_sorted = row[ordered]
    first_of_row = np.concatenate([[True], row_sorted[1:] != row_sorted[:-1]])
    row_start = np.maximum.accumulate(np.where(first_of_row, ends - lens, 0))
    offset[ordered] = ends - lens - row_start
  pos = _positions(seqs.lengths)
  dest = np.repeat(row * length + offset, seqs.lengths) + pos
  tokens = np.zeros(num_rows * length, np.int32)
  segs = np.zeros(num_rows * length, np.int32)
  positions = np.zeros(num_rows * length, np.int32)
  tokens[dest] = seqs.values
  segs[dest] = np.repeat(segment, seqs.lengths)
  positions[dest] = pos
  shape = (num_rows, length)
  return tokens.reshape(shape), segs.reshape(shape), positions.reshape(shape), dest, pos


def _shift_right(seqs: Ragged, pos: np.ndarray, dest: np.ndarray, size: int) -> np.ndarray:
  """Decoder inputs: each target sequence shifted right by one, 0 at every segment start."""
  prev = np.concatenate([[0], seqs.values[:-1]]).astype(np.int32)
  prev[pos == 0] = 0
  out = np.zeros(size, np.int32)
  out[dest] = prev
  return out


@dataclasses.dataclass
class PackedRows:
  """Rows made from one window of examples.

  Attributes:
    features: PACKED_KEYS (or UNPACKED_KEYS) -> int32 [num_rows, length].
    examples_per_row: [num_rows] examples in each row.
    truncated_per_row: [num_rows] examples in each row that were cut to fit.
    example_row: [n] the row of each input example (-1 if it was dropped as empty).
    num_empty: examples dropped because a feature was empty (nothing to attend to or learn).
  """

  features: dict[str, np.ndarray]
  examples_per_row: np.ndarray
  truncated_per_row: np.ndarray
  example_row: np.ndarray
  num_empty: int

  @property
  def num_rows(self) -> int:
    return len(self.examples_per_row)


def pack(
  inputs: Ragged | Sequence[np.ndarray],
  targets: Ragged | Sequence[np.ndarray],
  feature_lengths: Mapping[str, int],
  *,
  pack: bool = True,
  strategy: str = "first_fit_decreasing",
  eos_id: int = EOS_ID,
) -> PackedRows:
  """Packs (or pads, with `pack=False`) one window of examples into rows.

  Args:
    inputs / targets: the examples' token ids (Ragged or a list of 1-D int arrays).
    feature_lengths: {"inputs": Li, "targets": Lt}.
    pack: True -> several examples per row with segment ids and positions; False -> one
      example per row, padded, with only the four token/weight features (seqio's unpacked
      contract; the model then derives masks from the padding).
    strategy: see `place`.
    eos_id: the EOS id kept at the end of a truncated example.

  Returns:
    PackedRows. With `pack=True`, rows come in the order they were opened.
  """
  if not isinstance(inputs, Ragged):
    inputs = Ragged.from_list(inputs)
  if not isinstance(targets, Ragged):
    targets = Ragged.from_list(targets)
  if len(inputs.lengths) != len(targets.lengths):
    raise ValueError(
      f"inputs has {len(inputs.lengths)} examples but targets has "
      f"{len(targets.lengths)}; they must pair up."
    )
  missing = {"inputs", "targets"} - set(feature_lengths)
  if missing:
    raise ValueError(
      f"feature_lengths needs 'inputs' and 'targets' (missing {sorted(missing)}); "
      f"got {dict(feature_lengths)}."
    )
  li, lt = int(feature_lengths["inputs"]), int(feature_lengths["targets"])
  n = len(inputs.lengths)
  inputs, cut_in = truncate(inputs, li, eos_id)
  targets, cut_tg = truncate(targets, lt, eos_id)
  cut = cut_in | cut_tg
  keep = (inputs.lengths > 0) & (targets.lengths > 0)
  kept = np.flatnonzero(keep)
  if len(kept) < n:
    inputs, targets, cut = inputs.take(kept), targets.take(kept), cut[kept]
  m = len(kept)
  if pack:
    row, segment = place(inputs.lengths, targets.lengths, li, lt, strategy)
    num_rows = int(row.max()) + 1 if m else 0
  else:
    row, segment = np.arange(m, dtype=np.int64), np.ones(m, np.int64)
    num_rows = m
  in_row_order = np.lexsort((segment, row))
  enc, enc_seg, enc_pos, _, _ = _scatter(inputs, row, segment, num_rows, li, in_row_order)
  dec, dec_seg, dec_pos, dest, pos = _scatter(targets, row, segment, num_rows, lt, in_row_order)
  features = {
    "encoder_input_tokens": enc,  # [rows, Li]
    "decoder_target_tokens": dec,  # [rows, Lt]
    "decoder_input_tokens": _shift_right(targets, pos, dest, num_rows * lt).reshape(num_rows, lt),
    "decoder_loss_weights": (dec_seg > 0).astype(np.int32),
  }
  if pack:
    features.update(
      encoder_segment_ids=enc_seg,
      decoder_segment_ids=dec_seg,
      encoder_positions=enc_pos,
      decoder_positions=dec_pos,
    )
  example_row = np.full(n, -1, np.int64)
  example_row[kept] = row
  return PackedRows(
    features=features,
    examples_per_row=np.bincount(row, minlength=num_rows).astype(np.int64),
    truncated_per_row=np.bincount(row, weights=cut, minlength=num_rows).astype(np.int64),
    example_row=example_row,
    num_empty=n - m,
  )


def unpack(features: Mapping[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
  """The (inputs, targets) examples inside packed rows, row by row, segment by segment.

  The inverse of `pack` (up to truncation and order); tests and tools use it to check that
  nothing was lost or duplicated.
  """
  out = []
  enc, dec = features["encoder_input_tokens"], features["decoder_target_tokens"]
  if "encoder_segment_ids" not in features:
    return [(e[: _real_length(e)], d[: _real_length(d)]) for e, d in zip(enc, dec)]
  for r in range(enc.shape[0]):
    es, ds = features["encoder_segment_ids"][r], features["decoder_segment_ids"][r]
    for s in range(1, int(max(es.max(), ds.max())) + 1):
      out.append((enc[r][es == s], dec[r][ds == s]))
  return out


def _real_length(row: np.ndarray) -> int:
  nz = np.flatnonzero(row)
  return int(nz[-1]) + 1 if len(nz) else 0


def non_padding_fraction(features: Mapping[str, np.ndarray]) -> dict[str, float]:
  """Fraction of real tokens: encoder, decoder and both together (t5x's metric names)."""

  def real(key: str, seg_key: str) -> int:
    if seg_key in features:
      return int((features[seg_key] > 0).sum())
    return int((features[key] != 0).sum())

  enc_real = real("encoder_input_tokens", "encoder_segment_ids")
  dec_real = int(features["decoder_loss_weights"].sum())
  enc_size = features["encoder_input_tokens"].size
  dec_size = features["decoder_target_tokens"].size
  return {
    "encoder": enc_real / max(enc_size, 1),
    "decoder": dec_real / max(dec_size, 1),
    "overall": (enc_real + dec_real) / max(enc_size + dec_size, 1),
  }
