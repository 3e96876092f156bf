"""Building blocks of the T5 1.1 network (`flan.model.network` assembles them).

RMSNorm, bias-free Dense, the gather embedding, the shared relative position bias, which
keys a query may see in packed rows, multi-head attention with a decode cache (its core is
`flan.model.attention`), and the gated MLP. Each parameter is created with its logical axis names;
`config` is a `flan.model.network.T5Config`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flan.model import attention as attention_lib
from flan.model.config import ACTIVATION_NAMES, T5Config

Array = jax.Array
ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
  "gelu": functools.partial(nn.gelu, approximate=True),  # tanh approximation, as T5 1.1
  "relu": nn.relu,
  "linear": lambda x: x,
}
assert tuple(ACTIVATIONS) == ACTIVATION_NAMES

BATCH_LENGTH_EMBED = ("batch", "length", "embed")


def kernel_init(scale: float = 1.0, distribution: str = "normal"):
  """t5x's DenseGeneral init: variance_scaling(1.0, fan_in), optionally divided by `scale`."""
  base = nn.initializers.variance_scaling(1.0, "fan_in", distribution)
  if scale == 1.0:
    return base
  return lambda key, shape, dtype=jnp.float32: base(key, shape, dtype) / scale


def constrain(x: Array, axes: tuple[str, ...]) -> Array:
  return nn.with_logical_constraint(x, axes)


def relative_position_bucket(
  relative_position: Array, *, bidirectional: bool, num_buckets: int, max_distance: int
) -> Array:
  """Maps key-minus-query offsets to bucket ids.

  The algorithm of t5x/examples/t5/layers.py (`RelativePositionBiases`), itself from Mesh
  TensorFlow, re-written in jnp so that decoding can bucket a traced step index.

  Small offsets get one bucket each; larger ones share logarithmically wider buckets up to
  `max_distance`. Bidirectional tables spend half the buckets on each sign; causal ones
  fold every future offset into bucket 0 (those keys are masked anyway).
  """
  n = -relative_position
  bucket = jnp.zeros_like(n)
  if bidirectional:
    num_buckets //= 2
    bucket = (n < 0).astype(n.dtype) * num_buckets
    n = jnp.abs(n)
  else:
    n = jnp.maximum(n, 0)
  max_exact = num_buckets // 2
  ratio = n.astype(jnp.float32) / max_exact + jnp.finfo(jnp.float32).eps
  log_bucket = max_exact + (
    jnp.log(ratio) / np.log(max_distance / max_exact) * (num_buckets - max_exact)
  ).astype(n.dtype)
  log_bucket = jnp.minimum(log_bucket, num_buckets - 1)
  return bucket + jnp.where(n < max_exact, n, log_bucket)


class RMSNorm(nn.Module):
  """T5's layer norm: no mean, no bias; statistics in float32, eps 1e-6."""

  dtype: Any = jnp.float32
  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = self.param(
      "scale",
      nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
      (x.shape[-1],),
      jnp.float32,
    )
    x = x.astype(jnp.float32)
    y = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + self.epsilon)
    return y.astype(self.dtype) * scale.astype(self.dtype)


class Dense(nn.Module):
  """A bias-free [in, out] matmul with a float32 kernel cast to the compute dtype.

  `matmul` is `T5Config.matmul_kernel`: "xla" multiplies the [..., in] operand as it is;
  "flat" makes it one [tokens, in] @ [in, out] matmul (on [batch, length, in] operands
  XLA:CPU builds the weight gradient from a transposed copy of the output gradient), with
  `flat_matmul`'s gradient in bfloat16.
  """

  features: int
  axes: tuple[str, str]
  dtype: Any
  kernel_init: Callable = kernel_init()
  matmul: str = "xla"

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param(
      "kernel",
      nn.with_logical_partitioning(self.kernel_init, self.axes),
      (x.shape[-1], self.features),
      jnp.float32,
    )
    if self.matmul == "xla":
      return jnp.dot(x.astype(self.dtype), kernel.astype(self.dtype))  # [..., out]
    y = flat_matmul(x.reshape(-1, x.shape[-1]), kernel, self.dtype)  # [tokens, out]
    return y.reshape(*x.shape[:-1], self.features)  # [..., out]


def flat_matmul(x: Array, kernel: Array, dtype: Any) -> Array:
  """[tokens, in] @ [in, out] in the compute dtype (float32 accumulation either way).

  bfloat16 goes through `_cpu_bf16_matmul`, whose three products all take XLA:CPU's fast
  bfloat16 kernel; float32 uses XLA's own matmul and gradient.
  """
  if jnp.dtype(dtype) == jnp.bfloat16:
    return _cpu_bf16_matmul(x.astype(dtype), kernel.astype(dtype))
  return jnp.dot(x.astype(dtype), kernel.astype(dtype))


_MK_KN = (((1,), (0,)), ((), ()))  # [m, k] @ [k, n]
_MN_KN = (((1,), (1,)), ((), ()))  # [m, n] @ [k, n]^T


@jax.custom_vjp
def _cpu_bf16_matmul(x: Array, w: Array) -> Array:
  """bfloat16 [m, k] @ [k, n], float32 accumulation, bfloat16 result, with a gradient shaped
  for XLA:CPU.

  XLA:CPU multiplies bfloat16 at about twice its float32 rate (YNNPACK, avx512_bf16), but only
  when the left operand contracts over its last dimension; any other bfloat16 product is
  converted to float32 first. Autodiff's weight gradient x^T @ g contracts over the tokens,
  the first dimension of x, and XLA folds a plain transpose back into the product. Appending
  8 zero rows to x^T makes the transpose a real [k + 8, m] array (the rows are sliced off
  the result, so nothing changes numerically), which XLA:CPU then multiplies at its bfloat16
  rate (figures in the README).
  """
  return jax.lax.dot_general(x, w, _MK_KN, preferred_element_type=jnp.float32).astype(x.dtype)


def _cpu_bf16_matmul_fwd(x: Array, w: Array):
  return _cpu_bf16_matmul(x, w), (x, w)


def _cpu_bf16_matmul_bwd(residuals, g: Array):
  x, w = residuals  # [m, k], [k, n]; g: [m, n]
  dx = jax.lax.dot_general(g, w, _MN_KN, preferred_element_type=jnp.float32)  # [m, k]
  xt = jnp.concatenate([x.T, jnp.zeros((8, x.shape[0]), x.dtype)], axis=0)  # [k + 8, m]
  dw = jax.lax.dot_general(xt, g, _MK_KN, preferred_element_type=jnp.float32)[: x.shape[1]]
  return dx.astype(x.dtype), dw.astype(w.dtype)


_cpu_bf16_matmul.defvjp(_cpu_bf16_matmul_fwd, _cpu_bf16_matmul_bwd)


class Embed(nn.Module):
  """The shared token embedding, looked up by gather (t5x uses a one-hot matmul)."""

  vocab_size: int
  features: int
  dtype: Any

  def setup(self):
    self.embedding = self.param(
      "embedding",
      nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed")),
      (self.vocab_size, self.features),
      jnp.float32,
    )

  def __call__(self, tokens: Array) -> Array:
    return jnp.take(self.embedding, tokens, axis=0).astype(self.dtype)  # [batch, length, embed]


class RelativePositionBias(nn.Module):
  """One [heads, buckets] table per stack, turned into an additive [heads, q, k] bias."""

  config: T5Config
  bidirectional: bool

  @nn.compact
  def __call__(self, query_positions: Array, key_positions: Array) -> Array:
    cfg = self.config
    table = self.param(
      "rel_embedding",
      nn.with_logical_partitioning(
        nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"), ("heads", "relpos_buckets")
      ),
      (cfg.num_heads, cfg.relative_attention_num_buckets),
      jnp.float32,
    )
    buckets = relative_position_bucket(
      key_positions[None, :] - query_positions[:, None],
      bidirectional=self.bidirectional,
      num_buckets=cfg.relative_attention_num_buckets,
      max_distance=cfg.relative_attention_max_distance,
    )  # [q, k]
    return jnp.take(table, buckets, axis=1).astype(cfg.activation_dtype)  # [heads, q, k]


def visibility(
  query_valid: Array,
  key_valid: Array,
  query_segments: Array | None,
  key_segments: Array | None,
  *,
  causal: bool,
) -> Array:
  """Which keys each query may see, [batch, q, k] bool.

  A pair is visible when both tokens are real, they belong to the same packed segment (when
  segment ids are given) and, if `causal`, the key does not come after the query.
  """
  visible = query_valid[:, :, None] & key_valid[:, None, :]
  if query_segments is not None:
    visible &= query_segments[:, :, None] == key_segments[:, None, :]
  if causal:
    q, k = query_valid.shape[1], key_valid.shape[1]
    visible &= jnp.arange(q)[:, None] >= jnp.arange(k)[None, :]
  return visible


class Attention(nn.Module):
  """Multi-head dot-product attention with unscaled logits.

  With `decode=True`, self-attention keeps a [batch, max_length, heads, kv] key/value cache
  that each step writes at `decode_index`; cross-attention (`cross=True`) projects the
  encoder output once, on the cache-creating call, and reads it back on every step.
  """

  config: T5Config
  deterministic: bool
  decode: bool = False
  cross: bool = False
  max_length: int | None = None

  @nn.compact
  def __call__(
    self,
    inputs_q: Array,
    inputs_kv: Array,
    bias: Array | None,
    visible: Array,
    decode_index: Array | None = None,
  ) -> Array:
    """`bias` [heads, q, k] or None, `visible` [batch, q or 1, k] (see `flan.model.attention`)."""
    cfg = self.config
    dtype = cfg.activation_dtype
    joined = cfg.num_heads * cfg.head_dim
    heads = ("batch", "length", "heads", "kv")

    def project(name, inputs, init):
      y = Dense(joined, ("embed", "joined_kv"), dtype, init, cfg.matmul_kernel, name=name)(inputs)
      y = y.reshape(*inputs.shape[:2], cfg.num_heads, cfg.head_dim)
      return constrain(y, heads)  # [batch, length, heads, kv]

    def keys_and_values():
      return project("key", inputs_kv, kernel_init()), project("value", inputs_kv, kernel_init())

    query = project("query", inputs_q, kernel_init(np.sqrt(cfg.head_dim)))
    if self.decode and self.cross:
      key, value = self._cached_projection(keys_and_values)
    elif self.decode:
      key, value = self._use_cache(*keys_and_values(), decode_index)
    else:
      key, value = keys_and_values()

    keep = None  # dropout multiplier per (row, head, key), shared by the queries
    if cfg.dropout_rate > 0 and not self.deterministic:
      ones = jnp.ones((key.shape[0], cfg.num_heads, 1, key.shape[1]), jnp.float32)
      keep = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(ones, deterministic=False)[:, :, 0]
    out = attention_lib.dot_product_attention(
      query,
      key,
      value,
      bias,
      visible,
      keep,
      implementation="xla" if self.decode else cfg.attention_kernel,
    )  # [batch, q, heads, kv]
    out = constrain(out, heads).reshape(*out.shape[:2], joined)
    return Dense(
      cfg.emb_dim, ("joined_kv", "embed"), dtype, kernel_init(), cfg.matmul_kernel, name="out"
    )(out)

  def _use_cache(self, key: Array, value: Array, index: Array) -> tuple[Array, Array]:
    """Writes this step's key/value at `index`; returns the whole cache.

    The cache-creating call only allocates zeros and attends over its own inputs.
    """
    initialized = self.has_variable("cache", "cached_key")
    shape = (key.shape[0], self.max_length, *key.shape[2:])
    cached_key = self.variable("cache", "cached_key", jnp.zeros, shape, key.dtype)
    cached_value = self.variable("cache", "cached_value", jnp.zeros, shape, value.dtype)
    if not initialized:
      return key, value
    start = (0, index, 0, 0)
    cached_key.value = jax.lax.dynamic_update_slice(cached_key.value, key, start)
    cached_value.value = jax.lax.dynamic_update_slice(cached_value.value, value, start)
    return cached_key.value, cached_value.value  # [batch, max_length, heads, kv]

  def _cached_projection(self, compute: Callable[[], tuple[Array, Array]]) -> tuple[Array, Array]:
    """Encoder keys/values: computed on the cache-creating call, read back afterwards."""
    if self.has_variable("cache", "cached_key"):
      return self.get_variable("cache", "cached_key"), self.get_variable("cache", "cached_value")
    key, value = compute()
    self.put_variable("cache", "cached_key", key)
    self.put_variable("cache", "cached_value", value)
    return key, value


class Mlp(nn.Module):
  """Gated MLP: product of one projection per activation, dropout, then back to embed."""

  config: T5Config
  deterministic: bool

  @nn.compact
  def __call__(self, x: Array) -> Array:
    cfg = self.config
    dtype = cfg.activation_dtype
    init = kernel_init(distribution="truncated_normal")
    hidden = None
    for i, name in enumerate(cfg.mlp_activations):
      wi_name = "wi" if len(cfg.mlp_activations) == 1 else f"wi_{i}"
      h = ACTIVATIONS[name](
        Dense(cfg.mlp_dim, ("embed", "mlp"), dtype, init, cfg.matmul_kernel, name=wi_name)(x)
      )
      hidden = h if hidden is None else hidden * h
    hidden = constrain(hidden, ("batch", "length", "mlp"))  # [batch, length, mlp]
    hidden = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(
      hidden, deterministic=self.deterministic
    )
    return Dense(cfg.emb_dim, ("mlp", "embed"), dtype, init, cfg.matmul_kernel, name="wo")(hidden)
