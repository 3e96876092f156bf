"""Dot-product attention: XLA's einsum form, and a row-blocked kernel for XLA:CPU.

Both compute, per batch row and head, with unscaled logits (T5 puts 1/sqrt(head_dim) in the
query init):

    softmax(q k^T + bias, keys not visible removed) * keep  @  v

* `bias` [heads, q, k]: the relative position bias, shared by every row (the same for packed
  rows, because attention never crosses a segment and offsets within one are unchanged), or
  None (encoder-decoder attention).
* `visible` [batch, q or 1, k] bool: which keys a query may see (real tokens, same segment,
  not in the future).
* `keep` [batch, heads, k]: the attention dropout multiplier (0 or 1 / keep_prob per key,
  shared by the queries as in t5x's `broadcast_dims=(-2,)`), or None.

On accelerators XLA's fused einsum/softmax is the right program. On XLA:CPU it is not: the
[batch, heads, q, k] logits, probabilities and their gradients (50 MB per T5-small encoder
layer at 8 x 512 tokens) go through memory four or five times, and the batched products run
far below the matmul peak. `rows_attention` walks the batch one row at a time (`lax.map` forward,
`lax.scan` backward), so a row's [heads, q, k] block (6 MB) stays in cache; the backward pass
recomputes the probabilities from the saved log-sum-exp (flash attention's trick, at row
granularity). Its products run in float32 whatever the activation dtype: XLA:CPU converts
batched bfloat16 products to float32 anyway. `scripts/benchmark_train.py --attention xla|rows`
compares the two (figures in the README).

Under a mesh, the kernel runs per device inside `shard_map` (batch over the mesh axis of
"batch", heads over that of "heads"), so each device walks only its own rows.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from flan.errors import UserError

Array = jax.Array
NEG_INF = -1e10  # the logit of a key a query may not see (t5x's additive mask value)
IMPLEMENTATIONS = ("xla", "rows")
_F32 = jnp.float32


def dot_product_attention(
  query: Array,
  key: Array,
  value: Array,
  bias: Array | None,
  visible: Array,
  keep: Array | None = None,
  *,
  implementation: str = "auto",
) -> Array:
  """Multi-head attention output [batch, q, heads, kv] in the dtype of `query`.

  Args:
    query: [batch, q, heads, kv].
    key, value: [batch, k, heads, kv].
    bias: [heads, q, k] added to every row's logits, or None.
    visible: [batch, q or 1, k] bool.
    keep: [batch, heads, k] dropout multiplier, or None.
    implementation: "xla" (einsum) or "rows" (the row-blocked kernel); `T5Config` resolves
      its "auto" to one of them when it is built.
  """
  if implementation not in IMPLEMENTATIONS:
    raise UserError(
      f"attention implementation {implementation!r} is not one of "
      f"{IMPLEMENTATIONS} (T5Config resolves 'auto')."
    )
  if implementation == "xla":
    return xla_attention(query, key, value, bias, visible, keep)
  visible = jnp.broadcast_to(visible, (query.shape[0], visible.shape[1], key.shape[1]))
  return _sharded(query, key, value, bias, visible, keep)


def xla_attention(
  query: Array,
  key: Array,
  value: Array,
  bias: Array | None,
  visible: Array,
  keep: Array | None = None,
) -> Array:
  """The einsum form, in the activation dtype (t5x's `dot_product_attention`)."""
  dtype = query.dtype
  logits = jnp.einsum("bqhd,bkhd->bhqk", query, key)  # [batch, heads, q, k]
  if bias is not None:
    logits = logits + bias.astype(dtype)[None]
  # Additive, as t5x: a query that sees no key (padding) attends uniformly, and the gradient
  # reaches the logits of hidden keys exactly as in `rows_attention`.
  logits = logits + jnp.where(visible, 0.0, NEG_INF).astype(dtype)[:, None]
  weights = jax.nn.softmax(logits).astype(dtype)
  if keep is not None:
    weights = weights * keep.astype(dtype)[:, :, None, :]
  return jnp.einsum("bhqk,bkhd->bqhd", weights, value)  # [batch, q, heads, kv]


def _sharded(query, key, value, bias, visible, keep):
  """Runs `rows_attention` per device when a multi-device mesh is set (module docstring)."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or mesh.size == 1:
    return rows_attention(query, key, value, bias, visible, keep, ((), ()))
  batch, heads = nn.logical_to_mesh_axes(("batch", "heads"))
  batch_axes, heads_axes = _names(batch), _names(heads)
  if query.shape[0] % _axis_size(mesh, batch_axes) or query.shape[2] % _axis_size(mesh, heads_axes):
    return xla_attention(query, key, value, bias, visible, keep)  # shards would be uneven
  qkv = P(batch, None, heads, None)
  specs = (
    qkv,
    qkv,
    qkv,
    None if bias is None else P(heads, None, None),
    P(batch, None, None),
    None if keep is None else P(batch, heads, None),
  )
  kernel = lambda *args: rows_attention(*args, (batch_axes, heads_axes))
  return jax.shard_map(kernel, mesh=mesh, in_specs=specs, out_specs=qkv)(
    query, key, value, bias, visible, keep
  )


def _names(axis: str | tuple[str, ...] | None) -> tuple[str, ...]:
  return () if axis is None else (axis,) if isinstance(axis, str) else tuple(axis)


def _axis_size(mesh, names: tuple[str, ...]) -> int:
  size = 1
  for name in names:
    size *= mesh.shape[name]
  return size


# ---------------------------------------------------------------------------- the CPU kernel


def _row_logits(q: Array, k: Array, bias: Array | None, visible: Array) -> Array:
  """One row's float32 logits [heads, q, k], hidden keys set to -1e10."""
  logits = jnp.einsum("qhd,khd->hqk", q.astype(_F32), k.astype(_F32))
  if bias is not None:
    logits = logits + bias.astype(_F32)
  return jnp.where(visible[None], logits, NEG_INF)


def _row_forward(q, k, v, bias, visible, keep):
  logits = _row_logits(q, k, bias, visible)  # [heads, q, k]
  top = jnp.max(logits, axis=-1, keepdims=True)
  unnormalized = jnp.exp(logits - top)
  total = jnp.sum(unnormalized, axis=-1, keepdims=True)
  probs = unnormalized / total
  if keep is not None:
    probs = probs * keep.astype(_F32)[:, None, :]
  out = jnp.einsum("hqk,khd->qhd", probs, v.astype(_F32)).astype(q.dtype)  # [q, heads, kv]
  # The log-sum-exp in two parts: for a query that sees no key, top = -1e10 would swallow
  # log(total) in float32, and the recomputed probabilities would be 1 instead of 1 / k.
  return out, (top, jnp.log(total))  # [heads, q, 1] each


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def rows_attention(
  query: Array,
  key: Array,
  value: Array,
  bias: Array | None,
  visible: Array,
  keep: Array | None,
  axes: tuple[tuple[str, ...], tuple[str, ...]],
) -> Array:
  """The row-blocked kernel (arguments as `dot_product_attention`; `visible` [batch, q, k]).

  `axes`: inside `shard_map`, the mesh axes that split the batch and those that split the
  heads (the position bias is split over the heads only); ((), ()) outside one.
  """
  return _rows_forward(query, key, value, bias, visible, keep, axes)[0]


def _rows_forward(query, key, value, bias, visible, keep, axes):
  del axes
  out, lse = jax.lax.map(
    lambda row: _row_forward(*row[:3], bias, *row[3:]), (query, key, value, visible, keep)
  )
  return out, (query, key, value, bias, visible, keep, out, lse)


def _rows_backward(axes, residuals, d_out):
  query, key, value, bias, visible, keep, out, lse = residuals
  batch_axes, heads_axes = axes

  def row(d_bias, xs):
    q, k, v, vis, kp, o, (top, log_total), do = xs
    probs = jnp.exp(_row_logits(q, k, bias, vis) - top - log_total)  # [heads, q, k]
    do32 = do.astype(_F32)
    dropped = probs if kp is None else probs * kp.astype(_F32)[:, None, :]
    dv = jnp.einsum("hqk,qhd->khd", dropped, do32)
    d_probs = jnp.einsum("qhd,khd->hqk", do32, v.astype(_F32))
    if kp is not None:
      d_probs = d_probs * kp.astype(_F32)[:, None, :]
    # Softmax backward: sum_k p * dp over the keys equals do . o (the dropped probabilities
    # are what multiplied v).
    row_dot = jnp.einsum("qhd,qhd->hq", do32, o.astype(_F32))[..., None]
    d_logits = probs * (d_probs - row_dot)  # [heads, q, k]
    dq = jnp.einsum("hqk,khd->qhd", d_logits, k.astype(_F32))
    dk = jnp.einsum("hqk,qhd->khd", d_logits, q.astype(_F32))
    if d_bias is not None:
      d_bias = d_bias + d_logits
    return d_bias, (dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype))

  d_bias = None
  if bias is not None:
    # The carry accumulates d_logits, which differ between the devices of every axis that
    # splits the batch or the heads: the initial zeros are marked so (a scan carry keeps
    # one type).
    every = tuple(dict.fromkeys(batch_axes + heads_axes))
    d_bias = jnp.zeros(bias.shape, _F32)
    d_bias = jax.lax.pcast(d_bias, every, to="varying") if every else d_bias
  d_bias, (dq, dk, dv) = jax.lax.scan(
    row, d_bias, (query, key, value, visible, keep, out, lse, d_out)
  )
  if bias is not None:
    # Under shard_map the bias is shared by the devices that split the batch: its gradient
    # is the sum of theirs.
    shared = tuple(a for a in batch_axes if a not in heads_axes)
    d_bias = (jax.lax.psum(d_bias, shared) if shared else d_bias).astype(bias.dtype)
  return dq, dk, dv, d_bias, None, None


rows_attention.defvjp(_rows_forward, _rows_backward)
