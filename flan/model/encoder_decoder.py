"""`EncoderDecoderModel`: the loss, scoring and prediction around `network.Transformer`.

The network is math; this class owns what training and evaluation ask of it:

* `loss_fn`: t5x's weighted cross-entropy. Label smoothing puts `1 - ls` on the target and
  `ls / (vocab - 1)` elsewhere and subtracts that distribution's entropy (a perfect model
  scores 0); z-loss adds `z * logsumexp(logits) ** 2` per token; the loss is a SUM over
  weighted tokens, divided by the normaliser of `loss_normalizing_factor`
  (`loss_normalizer`, computed once per batch, also when the batch is split in microbatches).
* `score_batch`: summed target log-probabilities, the rank-classification primitive;
  `score_options`: the same for every option of an example, packed into one decoder row
  (the input encoded, and its cross-attention keys/values projected, once per example).
* `predict_batch`: encode once, then greedy (1 beam) or beam search over the KV cache.

The methods are pure functions of `params`, not jitted here: the caller jits each once, with
the shardings it needs (`flan.training.train_step`, `flan.evaluation.inference`).

Batches follow seqio's EncDecFeatureConverter, as `flan.data.input_pipeline` emits them:
`encoder_input_tokens`, `decoder_input_tokens`, `decoder_target_tokens`,
`decoder_loss_weights`, and the `*_segment_ids` / `*_positions` of packed rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flan.errors import UserError
from flan.model import decoding, network
from flan.tokens import PAD_ID

Array = jax.Array
NORMALIZERS = ("NUM_REAL_TARGET_TOKENS", "NUM_TOTAL_TARGET_TOKENS", "AVERAGE_PER_SEQUENCE")
_NETWORK_INPUTS = (
  "encoder_input_tokens",
  "decoder_input_tokens",
  "decoder_target_tokens",
  "encoder_segment_ids",
  "decoder_segment_ids",
  "encoder_positions",
  "decoder_positions",
)


def token_losses(
  logits: Array, targets: Array, *, z_loss: float = 1e-4, label_smoothing: float = 0.0
) -> tuple[Array, Array]:
  """t5x's per-token loss and its z-loss part, both [batch, length] float32, unweighted.

  Computed from log-softmax gathers, so no [tokens, vocab] one-hot is built.

  Args:
    logits: [batch, length, vocab].
    targets: [batch, length] int32.
    z_loss: weight of logsumexp(logits) ** 2.
    label_smoothing: probability mass spread over the non-target tokens.
  """
  logits = logits.astype(jnp.float32)
  vocab = logits.shape[-1]
  confidence = 1.0 - label_smoothing
  low = label_smoothing / (vocab - 1)
  entropy = -(confidence * np.log(confidence) + (vocab - 1) * low * np.log(low + 1e-20))
  log_z = jax.nn.logsumexp(logits, axis=-1)  # [batch, length]
  target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  target_log_prob = target_logit - log_z
  cross_ent = -confidence * target_log_prob
  if label_smoothing:
    sum_log_probs = jnp.sum(logits, axis=-1) - vocab * log_z
    cross_ent -= low * (sum_log_probs - target_log_prob)
  z = z_loss * jnp.square(log_z)
  return cross_ent - entropy + z, z


def cross_entropy_with_z_loss(
  logits: Array,
  targets: Array,
  weights: Array,
  *,
  z_loss: float = 1e-4,
  label_smoothing: float = 0.0,
) -> tuple[Array, Array]:
  """t5x's per-token loss, weighted and summed (no normalisation).

  Args:
    logits: [batch, length, vocab] float32.
    targets: [batch, length] int32.
    weights: [batch, length], 0 on padding.

  Returns:
    (total loss, its z-loss part), both float32 scalars summed over weighted tokens.
  """
  total, z = token_losses(logits, targets, z_loss=z_loss, label_smoothing=label_smoothing)
  weights = weights.astype(jnp.float32)
  return jnp.sum(total * weights), jnp.sum(z * weights)


def loss_normalizer_and_weights(
  factor: float | str | None, batch: Mapping[str, Array]
) -> tuple[Array, Array]:
  """(normaliser, per-token loss weights [batch, length]) of `batch`, as t5x defines them.

  t5x's `losses.get_loss_normalizing_factor_and_weights`: the weights are
  `decoder_loss_weights` (else non-PAD targets) and the normaliser is 1 (None: a token sum),
  a given number, or
    NUM_REAL_TARGET_TOKENS: the sum of the weights;
    NUM_TOTAL_TARGET_TOKENS: batch * length, padding included;
    AVERAGE_PER_SEQUENCE: each token's weight is divided by the weight sum of its sequence
      (its packed segment), so every sequence counts once whatever its length, and the
      normaliser is the sum of those weights (the number of sequences with a weighted token).
  """
  targets = batch["decoder_target_tokens"]
  weights = jnp.asarray(batch.get("decoder_loss_weights", targets > 0), jnp.float32)
  if factor is None:
    return jnp.float32(1.0), weights
  if not isinstance(factor, str):
    return jnp.float32(factor), weights
  if factor == "NUM_REAL_TARGET_TOKENS":
    return jnp.sum(weights), weights
  if factor == "NUM_TOTAL_TARGET_TOKENS":
    return jnp.float32(np.prod(targets.shape)), weights
  if factor != "AVERAGE_PER_SEQUENCE":
    raise ValueError(f"loss_normalizing_factor={factor!r} is not one of {NORMALIZERS}.")
  if "decoder_segment_ids" in batch:  # packed: a sequence is a segment of a row
    segments = batch["decoder_segment_ids"]
    same = (segments[:, :, None] == segments[:, None, :]).astype(jnp.float32)  # [b, l, l]
    per_sequence = jnp.einsum("bij,bj->bi", same, weights)  # [b, l]
  else:
    per_sequence = jnp.sum(weights, axis=-1, keepdims=True)  # [b, 1]
  weights = jnp.where(per_sequence > 0, weights / jnp.where(per_sequence > 0, per_sequence, 1), 0.0)
  return jnp.sum(weights), weights


def _target_log_probs(logits: Array, targets: Array) -> Array:
  """log p(target) per token: [batch, length] float32."""
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
  return jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]


def _as_tokens(shape_or_array: Any) -> Array:
  shape = getattr(shape_or_array, "shape", shape_or_array)
  return jnp.ones(tuple(shape), jnp.int32)


class EncoderDecoderModel:
  """A T5 encoder-decoder with t5x's loss; all methods are pure functions of `params`.

  Args:
    config: the network's hyperparameters.
    z_loss: weight of the logsumexp**2 auxiliary loss (t5x: 1e-4).
    label_smoothing: probability mass spread over the non-target tokens.
    loss_normalizing_factor: None (token sum), a number to divide by, or one of
      `NORMALIZERS` (see `loss_normalizer_and_weights`).
  """

  def __init__(
    self,
    config: network.T5Config,
    *,
    z_loss: float = 1e-4,
    label_smoothing: float = 0.0,
    loss_normalizing_factor: float | str | None = None,
  ):
    if isinstance(loss_normalizing_factor, str) and loss_normalizing_factor not in NORMALIZERS:
      raise UserError(
        f"loss_normalizing_factor={loss_normalizing_factor!r} is not supported; "
        f"use None, a number, or one of {NORMALIZERS}."
      )
    if not 0.0 <= label_smoothing < 1.0:
      raise UserError(f"label_smoothing={label_smoothing} must lie in [0, 1).")
    self.config = config
    self.module = network.Transformer(config)
    self.z_loss = z_loss
    self.label_smoothing = label_smoothing
    self.loss_normalizing_factor = loss_normalizing_factor

  def _init_variables(self, rng: Array, batch_shapes: Mapping[str, Any]) -> dict:
    encoder = _as_tokens(batch_shapes["encoder_input_tokens"])
    decoder = _as_tokens(
      batch_shapes.get("decoder_input_tokens", batch_shapes.get("decoder_target_tokens"))
    )
    return self.module.init({"params": rng}, encoder, decoder, decoder, enable_dropout=False)

  def init(self, rng: Array, batch_shapes: Mapping[str, Any]) -> dict:
    """Fresh float32 parameters (plain arrays, no partitioning boxes).

    Args:
      rng: PRNG key.
      batch_shapes: feature name -> shape (or anything with `.shape`); needs
        "encoder_input_tokens" and "decoder_input_tokens". Shapes must stay static: to jit,
        close over them (`jax.jit(lambda rng: model.init(rng, shapes), out_shardings=...)`).
    """
    return nn.unbox(self._init_variables(rng, batch_shapes)["params"])

  def param_logical_specs(self) -> Any:
    """PartitionSpecs of logical axis names, one per parameter (the `init` tree's structure)."""
    shapes = {"encoder_input_tokens": (1, 2), "decoder_input_tokens": (1, 2)}
    abstract = jax.eval_shape(lambda rng: self._init_variables(rng, shapes), jax.random.PRNGKey(0))
    return nn.get_partition_spec(abstract)["params"]

  def logits(
    self, params: Any, batch: Mapping[str, Array], *, dropout_rng: Array | None = None
  ) -> Array:
    """Teacher-forced float32 logits [batch, length, vocab]; dropout iff an RNG is given."""
    inputs = {k: batch[k] for k in _NETWORK_INPUTS if k in batch}
    rngs = None if dropout_rng is None else {"dropout": dropout_rng}
    return self.module.apply(
      {"params": params}, **inputs, enable_dropout=dropout_rng is not None, rngs=rngs
    )

  def loss_normalizer(self, batch: Mapping[str, Array]) -> Array:
    """The float32 scalar `loss_fn` divides `batch`'s weighted token sum by."""
    return loss_normalizer_and_weights(self.loss_normalizing_factor, batch)[0]

  def loss_fn(
    self,
    params: Any,
    batch: Mapping[str, Array],
    dropout_rng: Array | None,
    *,
    normalizer: Array | None = None,
  ) -> tuple[Array, dict[str, Array]]:
    """Returns (loss, metrics); metrics are sums over the batch, so they add across steps.

    Args:
      params: the parameters.
      batch: seqio's EncDecFeatureConverter features.
      dropout_rng: dropout iff given.
      normalizer: when `batch` is one microbatch of a larger batch, that batch's
        `loss_normalizer`: the slices' losses and gradients then add up exactly to the whole
        batch's. None: `batch`'s own.

    metrics: "loss", "z_loss", "cross_ent_loss" (all normalised like the loss),
    "cross_ent_sum" (the cross-entropy summed over weighted tokens, unnormalised: per-token
    logs), "accuracy" (correctly predicted weighted tokens), "num_tokens" (sum of loss
    weights), "num_examples" (packed segments, or rows with a target).
    """
    own, loss_weights = loss_normalizer_and_weights(self.loss_normalizing_factor, batch)
    normalizer = own if normalizer is None else normalizer
    logits = self.logits(params, batch, dropout_rng=dropout_rng)
    targets = batch["decoder_target_tokens"]
    weights = jnp.asarray(batch.get("decoder_loss_weights", targets > 0), jnp.float32)
    total, z = token_losses(
      logits, targets, z_loss=self.z_loss, label_smoothing=self.label_smoothing
    )  # [batch, length] each
    loss = jnp.sum(total * loss_weights) / normalizer
    z_loss = jnp.sum(z * loss_weights) / normalizer
    correct = jnp.sum((jnp.argmax(logits, axis=-1) == targets) * weights)
    if "decoder_segment_ids" in batch:
      num_examples = jnp.sum(jnp.max(batch["decoder_segment_ids"], axis=-1))
    else:
      num_examples = jnp.sum(jnp.any(weights > 0, axis=-1))
    metrics = {
      "loss": loss,
      "z_loss": z_loss,
      "cross_ent_loss": loss - z_loss,
      "cross_ent_sum": jnp.sum((total - z) * weights),
      "accuracy": correct,
      "num_tokens": jnp.sum(weights),
      "num_examples": num_examples.astype(jnp.float32),
    }
    return loss, metrics

  def score_batch(self, params: Any, batch: Mapping[str, Any]) -> Array:
    """Sum of target log-probs weighted by `decoder_loss_weights`: [batch] float32.

    One teacher-forced pass, no z-loss, no length normalisation (t5x's rank classification).
    """
    keys = _NETWORK_INPUTS + ("decoder_loss_weights",)
    batch = {k: jnp.asarray(batch[k]) for k in keys if k in batch}
    logits = self.logits(params, batch)
    targets = batch["decoder_target_tokens"]
    weights = jnp.asarray(batch.get("decoder_loss_weights", targets != PAD_ID), jnp.float32)
    return jnp.sum(_target_log_probs(logits, targets) * weights, axis=-1)

  def score_options(self, params: Any, batch: Mapping[str, Any]) -> Array:
    """Rank-classification scores of every option of an example, from one decoder row.

    An example's K options are packed one after another into ONE decoder row, as segments
    1..K (seqio's packing of targets): self-attention stays inside a segment, so each option
    sees exactly the tokens and relative positions it would see alone, while
    cross-attention lets every segment see the example's whole input (`network.Decoder`: a
    packed decoder with an unpacked encoder). The input is therefore encoded, and its
    cross-attention keys/values projected, once per example for all options, and no option
    is padded to the longest one. The scores equal `score_batch` on (example, option) rows
    up to float rounding.

    Args:
      params: the parameters.
      batch: {"encoder_input_tokens": [E, Li],
        "decoder_target_tokens": [E, Ld]: the options' tokens (each EOS-terminated),
          concatenated, PAD after;
        "decoder_input_tokens": [E, Ld]: each option shifted right within its segment
          (0 at its first position);
        "decoder_segment_ids": [E, Ld]: option index + 1, 0 on padding}.

    Returns:
      [E, Ld] float32: entry k is the summed target log-probs of option k (segment k + 1);
      entries past the example's options are 0. Ld bounds the number of options, so no
      option count enters the compiled shape.
    """
    keys = (
      "encoder_input_tokens",
      "decoder_input_tokens",
      "decoder_target_tokens",
      "decoder_segment_ids",
    )
    batch = {k: jnp.asarray(batch[k]) for k in keys}
    logits = self.logits(params, batch)  # [E, Ld, V]
    segments = batch["decoder_segment_ids"]  # [E, Ld]
    token = _target_log_probs(logits, batch["decoder_target_tokens"])  # [E, Ld]
    ld = segments.shape[1]
    member = segments[:, :, None] == jnp.arange(1, ld + 1)[None, None, :]  # [E, Ld (token), Ld]
    # A masked sum, not a product with the one-hot: exact float32 on every backend.
    return jnp.sum(jnp.where(member, token[:, :, None], 0.0), axis=1)  # [E, Ld]

  def _decode(
    self,
    params: Any,
    encoder_input_tokens: Array,
    *,
    max_decode_length: int,
    num_beams: int,
    alpha: float,
  ) -> tuple[Array, Array]:
    module = self.module
    batch_size = encoder_input_tokens.shape[0]
    encoded = module.apply(
      {"params": params}, encoder_input_tokens, enable_dropout=False, method=module.encode
    )
    if num_beams > 1:
      encoded = jnp.repeat(encoded, num_beams, axis=0)
      encoder_input_tokens = jnp.repeat(encoder_input_tokens, num_beams, axis=0)
    rows = encoded.shape[0]

    def step(tokens, cache=None):
      variables = {"params": params} if cache is None else {"params": params, "cache": cache}
      logits, state = module.apply(
        variables,
        encoded,
        encoder_input_tokens,
        tokens,
        decode=True,
        enable_dropout=False,
        max_decode_length=max_decode_length,
        mutable=["cache"],
        method=module.decode,
      )
      return logits[:, -1], state["cache"]

    # One call without a cache creates it: empty self-attention slots plus the encoder
    # keys/values of every layer, projected once here instead of at every step.
    _, cache = step(jnp.zeros((rows, 1), jnp.int32))
    if num_beams == 1:
      return decoding.greedy_search(
        step, cache, batch_size=batch_size, max_decode_length=max_decode_length
      )
    sequences, scores = decoding.beam_search(
      step,
      cache,
      batch_size=batch_size,
      num_beams=num_beams,
      max_decode_length=max_decode_length,
      alpha=alpha,
    )
    return sequences[:, 0], scores[:, 0]

  def predict_batch_with_scores(
    self,
    params: Any,
    batch: Mapping[str, Any],
    *,
    max_decode_length: int,
    num_beams: int = 1,
    alpha: float = 0.6,
  ) -> tuple[Array, Array]:
    """Decoded tokens [batch, max_decode_length] int32 and their scores [batch].

    Scores are summed log-probs for greedy decoding and brevity-normalised for beam search.
    """
    if batch.get("encoder_segment_ids") is not None:
      raise ValueError("predict_batch needs unpacked rows; build the eval batches with pack=False.")
    return self._decode(
      params,
      jnp.asarray(batch["encoder_input_tokens"]),
      max_decode_length=int(max_decode_length),
      num_beams=int(num_beams),
      alpha=float(alpha),
    )

  def predict_batch(
    self,
    params: Any,
    batch: Mapping[str, Any],
    *,
    max_decode_length: int,
    num_beams: int = 1,
    alpha: float = 0.6,
  ) -> Array:
    """Decoded tokens [batch, max_decode_length] int32, EOS-terminated, PAD after.

    `num_beams=1` is greedy decoding; more beams run t5x's beam search with brevity
    penalty `alpha` and return the best beam. The encoder runs once and each step reads the
    KV cache; jitted with the three as static arguments, the whole loop compiles once per
    (shape, max_decode_length, num_beams, alpha).
    """
    return self.predict_batch_with_scores(
      params, batch, max_decode_length=max_decode_length, num_beams=num_beams, alpha=alpha
    )[0]
