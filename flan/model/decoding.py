"""Greedy and beam-search decoding over a KV cache: pure functions with no model state.

Both take `tokens_to_logits(tokens [rows, 1] int32, cache) -> (logits [rows, vocab], cache)`,
one decoder step that reads and returns the cache, and run inside one `lax.while_loop`, so a
whole decode compiles once. Token 0 (PAD) is the first decoder input, and EOS (1) ends a row;
positions after a row's EOS hold PAD.

Beam search follows t5x's algorithm: each step keeps the best `2 * beams` extensions of the
live beams; those ending in EOS compete for the finished slots with score
log_prob / ((5 + length) / 6) ** alpha, the others (best `beams`) stay live; the search stops
when no live beam can still beat the worst finished one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from flan.tokens import EOS_ID, PAD_ID

Array = jax.Array
TokensToLogits = Callable[[Array, Any], tuple[Array, Any]]
NEG_INF = -1.0e7  # finite, so that sums of "impossible" scores never produce NaN


def brevity_penalty(alpha: float, length: Array) -> Array:
  """t5x/GNMT length normalisation: ((5 + length) / 6) ** alpha."""
  return jnp.power((5.0 + jnp.asarray(length, jnp.float32)) / 6.0, alpha)


def greedy_search(
  tokens_to_logits: TokensToLogits,
  cache: Any,
  *,
  batch_size: int,
  max_decode_length: int,
  eos_id: int = EOS_ID,
) -> tuple[Array, Array]:
  """Argmax decoding.

  Returns:
    sequences [batch, max_decode_length] int32 (PAD after EOS) and their summed log-probs
    [batch] float32.
  """

  def cond(state):
    step, _, _, _, done, _ = state
    return (step < max_decode_length) & ~jnp.all(done)

  def body(state):
    step, cache, last, sequences, done, scores = state
    logits, cache = tokens_to_logits(last[:, None], cache)  # [batch, vocab]
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
    token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    token = jnp.where(done, PAD_ID, token)
    scores = scores + jnp.where(done, 0.0, jnp.take_along_axis(log_probs, token[:, None], 1)[:, 0])
    sequences = jax.lax.dynamic_update_slice(sequences, token[:, None], (0, step))
    return step + 1, cache, token, sequences, done | (token == eos_id), scores

  init = (
    jnp.array(0, jnp.int32),
    cache,
    jnp.full((batch_size,), PAD_ID, jnp.int32),
    jnp.full((batch_size, max_decode_length), PAD_ID, jnp.int32),
    jnp.zeros((batch_size,), bool),
    jnp.zeros((batch_size,), jnp.float32),
  )
  _, _, _, sequences, _, scores = jax.lax.while_loop(cond, body, init)
  return sequences, scores


def _gather(x: Array, index: Array) -> Array:
  """x [batch, n, ...], index [batch, m] -> [batch, m, ...]."""
  return jax.vmap(lambda row, idx: row[idx])(x, index)


def _gather_cache(cache: Any, flat_rows: Array) -> Any:
  """Reorders the batch-major rows of every cache leaf; scalars (the step index) stay."""
  return jax.tree.map(lambda x: x if x.ndim == 0 else x[flat_rows], cache)


def beam_search(
  tokens_to_logits: TokensToLogits,
  cache: Any,
  *,
  batch_size: int,
  num_beams: int,
  max_decode_length: int,
  alpha: float = 0.6,
  eos_id: int = EOS_ID,
) -> tuple[Array, Array]:
  """Beam search with t5x's brevity penalty.

  Args:
    tokens_to_logits: one decoder step over `batch_size * num_beams` rows (row b * beams + k).
    cache: the zero cache for those rows.
    alpha: brevity-penalty exponent (0 ranks by plain log-probability).

  Returns:
    sequences [batch, beams, max_decode_length] int32 and scores [batch, beams] float32, best
    first. A batch item with no finished beam returns its live beams, scored by log-prob.
  """
  k, length = num_beams, max_decode_length

  def cond(state):
    step, _, live_lp, _, _, fin_scores, fin_flags, _ = state
    best_possible = live_lp[:, 0] / brevity_penalty(alpha, length)
    worst_finished = jnp.where(jnp.all(fin_flags, axis=1), fin_scores[:, -1], NEG_INF)
    return (step < length) & ~jnp.all(worst_finished > best_possible)

  def body(state):
    step, cache, live_lp, live_seqs, last, fin_scores, fin_flags, fin_seqs = state
    logits, cache = tokens_to_logits(last.reshape(-1, 1), cache)  # [batch * beams, vocab]
    vocab = logits.shape[-1]
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(batch_size, k, vocab)
    candidates = (live_lp[:, :, None] + log_probs).reshape(batch_size, k * vocab)
    top_lp, top_index = jax.lax.top_k(candidates, 2 * k)  # [batch, 2 * beams]
    parent, token = top_index // vocab, (top_index % vocab).astype(jnp.int32)
    top_seqs = _gather(live_seqs, parent)
    top_seqs = jax.lax.dynamic_update_slice(top_seqs, token[:, :, None], (0, 0, step))
    ended = token == eos_id

    # Live: the best `beams` candidates that did not just end.
    live_lp, keep = jax.lax.top_k(jnp.where(ended, NEG_INF, top_lp), k)
    live_seqs, last = _gather(top_seqs, keep), _gather(token, keep)
    rows = (jnp.arange(batch_size)[:, None] * k + _gather(parent, keep)).reshape(-1)
    cache = _gather_cache(cache, rows)

    # Finished: merge the newly ended candidates into the finished set, best first.
    new_scores = jnp.where(ended, top_lp / brevity_penalty(alpha, step + 1), NEG_INF)
    all_scores = jnp.concatenate([fin_scores, new_scores], axis=1)
    fin_scores, pick = jax.lax.top_k(all_scores, k)
    fin_flags = _gather(jnp.concatenate([fin_flags, ended], axis=1), pick)
    fin_seqs = _gather(jnp.concatenate([fin_seqs, top_seqs], axis=1), pick)
    return step + 1, cache, live_lp, live_seqs, last, fin_scores, fin_flags, fin_seqs

  live_lp = jnp.tile(jnp.array([0.0] + [NEG_INF] * (k - 1), jnp.float32), (batch_size, 1))
  seqs = jnp.full((batch_size, k, length), PAD_ID, jnp.int32)
  init = (
    jnp.array(0, jnp.int32),
    cache,
    live_lp,
    seqs,
    jnp.full((batch_size, k), PAD_ID, jnp.int32),
    jnp.full((batch_size, k), NEG_INF),
    jnp.zeros((batch_size, k), bool),
    seqs,
  )
  _, _, live_lp, live_seqs, _, fin_scores, fin_flags, fin_seqs = jax.lax.while_loop(
    cond, body, init
  )
  none_finished = ~jnp.any(fin_flags, axis=1)
  sequences = jnp.where(none_finished[:, None, None], live_seqs, fin_seqs)
  scores = jnp.where(none_finished[:, None], live_lp, fin_scores)
  return sequences, scores
