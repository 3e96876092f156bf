"""The T5 1.1 / FLAN-T5 encoder-decoder in Flax linen: math only, no training code.

Numerically this is t5x's `examples/t5` network (T5.1.1 settings): pre-norm RMSNorm blocks,
gated-GELU MLPs, one relative position bias table per stack shared by its layers, no biases,
no 1/sqrt(head_dim) on the attention logits (the query init carries that factor), float32
parameters cast to the activation dtype where used, and an untied float32 logits layer.
Two deliberate departures, neither changing the numbers: the embedding is a gather instead of
a one-hot matmul, and the decode-time cache is laid out [batch, length, heads, kv].

Every parameter carries logical axis names (`nn.with_logical_partitioning`) drawn from
("vocab", "embed", "mlp", "heads", "joined_kv", "relpos_buckets", "layers");
`flan.model.partitioning` maps them onto the mesh. The attention kernels are stored 2-D as in t5x,
[embed, heads*kv] and [heads*kv, embed] with t5x's "joined_kv" name for the joined axis
(sharded like "heads"), so that Adafactor factors them exactly as t5x does.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flan.model.config import T5Config  # configs/models/*.gin bind it as network.T5Config
from flan.model.layers import (
  BATCH_LENGTH_EMBED,
  Array,
  Attention,
  Dense,
  Embed,
  Mlp,
  RelativePositionBias,
  RMSNorm,
  constrain,
  kernel_init,
  visibility,
)


class EncoderLayer(nn.Module):
  """Pre-norm self-attention block then pre-norm MLP block, each with dropout + residual."""

  config: T5Config
  deterministic: bool
  decode: bool = False  # unused; keeps one constructor signature for `_run_layers`

  @nn.compact
  def __call__(self, x: Array, bias: Array, visible: Array) -> tuple[Array, None]:
    cfg = self.config
    dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))
    h = RMSNorm(cfg.activation_dtype, name="pre_attention_layer_norm")(x)
    h = Attention(cfg, self.deterministic, name="attention")(h, h, bias, visible)
    x = constrain(x + dropout(h, deterministic=self.deterministic), BATCH_LENGTH_EMBED)
    h = RMSNorm(cfg.activation_dtype, name="pre_mlp_layer_norm")(x)
    h = Mlp(cfg, self.deterministic, name="mlp")(h)
    x = constrain(x + dropout(h, deterministic=self.deterministic), BATCH_LENGTH_EMBED)
    return x, None


class DecoderLayer(nn.Module):
  """Causal self-attention, encoder-decoder attention and MLP blocks, pre-norm each."""

  config: T5Config
  deterministic: bool
  decode: bool = False
  max_decode_length: int | None = None

  @nn.compact
  def __call__(
    self,
    x: Array,
    encoded: Array,
    self_bias: Array,
    self_visible: Array,
    cross_visible: Array,
    decode_index: Array,
  ) -> tuple[Array, None]:
    cfg = self.config
    dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))
    h = RMSNorm(cfg.activation_dtype, name="pre_self_attention_layer_norm")(x)
    h = Attention(
      cfg, self.deterministic, self.decode, max_length=self.max_decode_length, name="self_attention"
    )(h, h, self_bias, self_visible, decode_index)
    x = constrain(x + dropout(h, deterministic=self.deterministic), BATCH_LENGTH_EMBED)
    h = RMSNorm(cfg.activation_dtype, name="pre_cross_attention_layer_norm")(x)
    h = Attention(
      cfg, self.deterministic, self.decode, cross=True, name="encoder_decoder_attention"
    )(h, encoded, None, cross_visible)
    x = constrain(x + dropout(h, deterministic=self.deterministic), BATCH_LENGTH_EMBED)
    h = RMSNorm(cfg.activation_dtype, name="pre_mlp_layer_norm")(x)
    h = Mlp(cfg, self.deterministic, name="mlp")(h)
    x = constrain(x + dropout(h, deterministic=self.deterministic), BATCH_LENGTH_EMBED)
    return x, None


def _run_layers(
  parent: nn.Module,
  layer_cls: type[nn.Module],
  num_layers: int,
  deterministic: bool,
  decode: bool,
  x: Array,
  *args: Array,
  **layer_kwargs: Any,
) -> Array:
  """Applies `num_layers` blocks: unrolled `layers_<i>`, or one scanned `layers` module."""
  cfg = parent.config
  if cfg.remat_policy != "none" and not decode:
    policy = (
      None
      if cfg.remat_policy == "full"
      else jax.checkpoint_policies.dots_with_no_batch_dims_saveable
    )
    layer_cls = nn.remat(layer_cls, policy=policy, prevent_cse=not cfg.scan_layers)
  if cfg.scan_layers:
    scanned = nn.scan(
      layer_cls,
      # Cache leaves keep batch first ([batch, layers, ...]) so beam search can gather rows.
      variable_axes={"params": 0, "cache": 1},
      split_rngs={"params": True, "dropout": True},
      in_axes=(nn.broadcast,) * len(args),
      length=num_layers,
      metadata_params={nn.PARTITION_NAME: "layers"},
    )
    x, _ = scanned(cfg, deterministic, decode, name="layers", **layer_kwargs)(x, *args)
    return x
  for i in range(num_layers):
    x, _ = layer_cls(cfg, deterministic, decode, name=f"layers_{i}", **layer_kwargs)(x, *args)
  return x


class Encoder(nn.Module):
  """Embeds, runs the bidirectional stack, and normalises."""

  config: T5Config
  embedder: Embed

  @nn.compact
  def __call__(self, tokens: Array, segment_ids: Array | None, *, enable_dropout: bool) -> Array:
    cfg = self.config
    det = not enable_dropout
    x = constrain(self.embedder(tokens), BATCH_LENGTH_EMBED)  # [batch, length, embed]
    x = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=det)
    positions = jnp.arange(tokens.shape[1])
    valid = tokens > 0
    bias = RelativePositionBias(cfg, bidirectional=True, name="relpos_bias")(
      positions, positions
    )  # [heads, length, length]
    visible = visibility(valid, valid, segment_ids, segment_ids, causal=False)  # [b, l, l]
    x = _run_layers(self, EncoderLayer, cfg.num_encoder_layers, det, False, x, bias, visible)
    x = RMSNorm(cfg.activation_dtype, name="encoder_norm")(x)
    return nn.Dropout(cfg.dropout_rate)(x, deterministic=det)


class Decoder(nn.Module):
  """Embeds, runs the causal stack over the encoder output, and projects to float32 logits."""

  config: T5Config
  embedder: Embed

  @nn.compact
  def __call__(
    self,
    encoded: Array,
    encoder_input_tokens: Array,
    decoder_input_tokens: Array,
    decoder_target_tokens: Array | None,
    encoder_segment_ids: Array | None,
    decoder_segment_ids: Array | None,
    *,
    enable_dropout: bool,
    decode: bool,
    max_decode_length: int | None,
  ) -> Array:
    cfg = self.config
    det = not enable_dropout
    dtype = cfg.activation_dtype
    x = constrain(self.embedder(decoder_input_tokens), BATCH_LENGTH_EMBED)
    x = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=det)
    relpos = RelativePositionBias(cfg, bidirectional=False, name="relpos_bias")
    encoder_valid = encoder_input_tokens > 0

    stepping = decode and self.has_variable("cache", "index")
    index = jnp.zeros((), jnp.int32)
    if decode:
      index_var = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
      index = index_var.value
    if stepping:
      # One new token at position `index`, attending to cache slots 0..index.
      if decoder_segment_ids is not None:
        raise ValueError("Packed (segmented) decoder inputs cannot be decoded step by step.")
      index_var.value = index + 1
      keys = jnp.arange(max_decode_length)
      self_bias = relpos(index[None], keys)  # [heads, 1, max_length]
      self_visible = (keys <= index)[None, None]  # [1, 1, max_length]
      cross_visible = encoder_valid[:, None]  # [batch, 1, encoder length]
    else:
      targets = decoder_input_tokens if decoder_target_tokens is None else decoder_target_tokens
      target_valid = (
        jnp.ones_like(targets, bool) if decoder_target_tokens is None or decode else targets > 0
      )
      positions = jnp.arange(decoder_input_tokens.shape[1])
      self_bias = relpos(positions, positions)  # [heads, length, length]
      self_visible = visibility(
        target_valid, target_valid, decoder_segment_ids, decoder_segment_ids, causal=True
      )  # [batch, length, length]
      # Packed decoder over an unpacked encoder (`encoder_segment_ids` None): the segments
      # are several targets of one input (rank classification's options of an example,
      # `EncoderDecoderModel.score_options`), so each sees that whole input.
      cross_segments = None if encoder_segment_ids is None else decoder_segment_ids
      cross_visible = visibility(
        target_valid, encoder_valid, cross_segments, encoder_segment_ids, causal=False
      )  # [batch, length, enc]

    x = _run_layers(
      self,
      DecoderLayer,
      cfg.num_decoder_layers,
      det,
      decode,
      x,
      encoded.astype(dtype),
      self_bias,
      self_visible,
      cross_visible,
      index,
      max_decode_length=max_decode_length,
    )
    x = RMSNorm(dtype, name="decoder_norm")(x)
    x = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=det)
    logits = Dense(
      cfg.vocab_size,
      ("embed", "vocab"),
      jnp.float32,
      kernel_init(distribution="truncated_normal"),
      matmul=cfg.matmul_kernel,
      name="logits_dense",
    )(x)
    return constrain(logits, ("batch", "length", "vocab"))  # [batch, length, vocab] float32


class Transformer(nn.Module):
  """The encoder-decoder. `__call__` is the teacher-forced pass; `encode`/`decode` serve
  decoding, where `decode(..., decode=True)` runs one step against the "cache" collection.

  `*_positions` are accepted and ignored, as in t5x: relative positions are measured along
  the packed row, which is exact because attention never crosses a segment boundary.
  Decoder segments without encoder segments (`decoder_segment_ids` only) are several targets
  of one input, each attending to the whole input: the options of rank classification.
  """

  config: T5Config

  def setup(self):
    cfg = self.config
    self.token_embedder = Embed(cfg.vocab_size, cfg.emb_dim, cfg.activation_dtype)
    self.encoder = Encoder(cfg, self.token_embedder)
    self.decoder = Decoder(cfg, self.token_embedder)

  def encode(
    self,
    encoder_input_tokens: Array,
    encoder_segment_ids: Array | None = None,
    encoder_positions: Array | None = None,
    *,
    enable_dropout: bool = True,
  ) -> Array:
    """Returns the encoder output [batch, length, embed] in the activation dtype."""
    del encoder_positions
    return self.encoder(encoder_input_tokens, encoder_segment_ids, enable_dropout=enable_dropout)

  def decode(
    self,
    encoded: Array,
    encoder_input_tokens: Array,
    decoder_input_tokens: Array,
    decoder_target_tokens: Array | None = None,
    encoder_segment_ids: Array | None = None,
    decoder_segment_ids: Array | None = None,
    decoder_positions: Array | None = None,
    *,
    enable_dropout: bool = True,
    decode: bool = False,
    max_decode_length: int | None = None,
  ) -> Array:
    """Returns float32 logits [batch, length, vocab].

    With `decode=True`, the first apply (`mutable=["cache"]`, no cache yet, any decoder
    tokens such as zeros [batch, 1]) creates the cache: zero self-attention slots for
    `max_decode_length` tokens (default: the decoder input length) and the projected encoder
    keys/values. Each later apply takes one token [batch, 1] and the same arguments.
    """
    del decoder_positions
    if decode and max_decode_length is None:
      max_decode_length = decoder_input_tokens.shape[1]
    return self.decoder(
      encoded,
      encoder_input_tokens,
      decoder_input_tokens,
      decoder_target_tokens,
      encoder_segment_ids,
      decoder_segment_ids,
      enable_dropout=enable_dropout,
      decode=decode,
      max_decode_length=max_decode_length,
    )

  def __call__(
    self,
    encoder_input_tokens: Array,
    decoder_input_tokens: Array,
    decoder_target_tokens: Array,
    encoder_segment_ids: Array | None = None,
    decoder_segment_ids: Array | None = None,
    encoder_positions: Array | None = None,
    decoder_positions: Array | None = None,
    *,
    enable_dropout: bool = True,
  ) -> Array:
    encoded = self.encode(
      encoder_input_tokens, encoder_segment_ids, encoder_positions, enable_dropout=enable_dropout
    )
    return self.decode(
      encoded,
      encoder_input_tokens,
      decoder_input_tokens,
      decoder_target_tokens,
      encoder_segment_ids,
      decoder_segment_ids,
      decoder_positions,
      enable_dropout=enable_dropout,
    )


def scan_layer_params(params: Any, config: T5Config) -> Any:
  """Stacks unrolled `layers_<i>` subtrees into one `layers` subtree (leading layers axis).

  Host (numpy) parameters stay on the host, so importing a large checkpoint does not
  gather it on one device.
  """

  def stack(*xs):
    return np.stack(xs) if isinstance(xs[0], np.ndarray) else jnp.stack(xs)

  params = dict(params)
  for name, n in (("encoder", config.num_encoder_layers), ("decoder", config.num_decoder_layers)):
    tree = dict(params[name])
    layers = [tree.pop(f"layers_{i}") for i in range(n)]
    tree["layers"] = jax.tree.map(stack, *layers)
    params[name] = tree
  return params


def unscan_layer_params(params: Any, config: T5Config) -> Any:
  """Inverse of `scan_layer_params`."""
  params = dict(params)
  for stack, n in (("encoder", config.num_encoder_layers), ("decoder", config.num_decoder_layers)):
    tree = dict(params[stack])
    layers = tree.pop("layers")
    for i in range(n):
      tree[f"layers_{i}"] = jax.tree.map(lambda x, i=i: x[i], layers)
    params[stack] = tree
  return params
