"""The attention core: the row-blocked CPU kernel is the same function as XLA's einsum form."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from flan.model import attention, network, partitioning

B, Q, K, H, D = 4, 6, 7, 2, 5


def _inputs(seed=0, *, bias=True, dropout=False, broadcast_queries=False):
  """q, k, v, bias, visible, keep with packed segments, a causal part and one query that sees
  no key at all (a padding query)."""
  rng = np.random.default_rng(seed)
  normal = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)
  segments_q = np.sort(rng.integers(1, 3, (B, Q)), axis=1)
  segments_k = np.sort(rng.integers(1, 3, (B, K)), axis=1)
  visible = (segments_q[:, :, None] == segments_k[:, None, :]) & (
    np.arange(Q)[:, None] + 1 >= np.arange(K)[None, :]
  )
  visible[1, 3] = False  # a query with no visible key
  if broadcast_queries:
    visible = visible[:, :1]  # [batch, 1, k]
  keep = None
  if dropout:
    keep = jnp.asarray((rng.random((B, H, K)) > 0.3) / 0.7, jnp.float32)
  return (
    normal(B, Q, H, D),
    normal(B, K, H, D),
    normal(B, K, H, D),
    normal(H, Q, K) if bias else None,
    jnp.asarray(visible),
    keep,
  )


def _numpy_attention(q, k, v, bias, visible, keep):
  logits = np.einsum("bqhd,bkhd->bhqk", q, k) + (0 if bias is None else np.asarray(bias)[None])
  logits = np.where(np.asarray(visible)[:, None], logits, -1e10)
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  if keep is not None:
    weights = weights * np.asarray(keep)[:, :, None, :]
  return np.einsum("bhqk,bkhd->bqhd", weights, v)


@functools.cache
def _grad(implementation):
  probe = jnp.cos(jnp.arange(B * Q * H * D, dtype=jnp.float32)).reshape(B, Q, H, D)

  def loss(q, k, v, bias, visible, keep):
    out = attention.dot_product_attention(
      q, k, v, bias, visible, keep, implementation=implementation
    )
    return jnp.sum(out.astype(jnp.float32) * probe)

  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))


@pytest.mark.parametrize(
  "bias,dropout,broadcast_queries",
  [(True, False, False), (False, False, False), (True, True, False), (False, True, True)],
)
def test_rows_kernel_equals_einsum_form_in_value_and_gradient(bias, dropout, broadcast_queries):
  args = _inputs(bias=bias, dropout=dropout, broadcast_queries=broadcast_queries)
  want = _numpy_attention(*[None if a is None else np.asarray(a) for a in args])
  for implementation in ("xla", "rows"):
    out = attention.dot_product_attention(*args, implementation=implementation)
    np.testing.assert_allclose(np.asarray(out), want, atol=2e-6, err_msg=implementation)
  (_, g_xla), (_, g_rows) = _grad("xla")(*args), _grad("rows")(*args)
  for name, a, b in zip(("dq", "dk", "dv", "dbias"), g_xla, g_rows):
    if a is None:
      assert b is None
      continue
    assert float(jnp.abs(a).max()) > 1e-3, name  # a gradient that actually flows
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5, err_msg=name)


def test_rows_kernel_takes_bfloat16_and_returns_bfloat16():
  q, k, v, bias, visible, keep = _inputs(1)
  half = [x.astype(jnp.bfloat16) for x in (q, k, v, bias)]
  out = attention.dot_product_attention(*half, visible, keep, implementation="rows")
  assert out.dtype == jnp.bfloat16
  want = _numpy_attention(*[np.asarray(x, np.float32) for x in half], np.asarray(visible), None)
  np.testing.assert_allclose(np.asarray(out, np.float32), want, atol=3e-2)
  grads = jax.grad(
    lambda *a: jnp.sum(
      attention.dot_product_attention(*a, visible, implementation="rows").astype(jnp.float32)
    ),
    argnums=(0, 1, 2, 3),
  )(*half)
  assert [g.dtype for g in grads] == [jnp.bfloat16] * 4


def test_rows_kernel_on_a_4x2_mesh_equals_one_device():
  """Under a mesh the kernel runs per device (shard_map); the shared bias's gradient is the
  sum over the devices that split the batch."""
  mesh = partitioning.make_mesh({"data": 4, "model": 2})
  q, k, v, bias, visible, keep = _inputs(2, dropout=True)
  q, k, v = (jnp.concatenate([x, x[::-1]], axis=2) for x in (q, k, v))  # 4 heads
  bias = jnp.concatenate([bias, -bias], axis=0)
  keep = jnp.concatenate([keep, keep], axis=1)
  args = (q, k, v, bias, visible, keep)

  def loss(*a):
    return jnp.sum(jnp.sin(attention.dot_product_attention(*a, implementation="rows")))

  grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))
  want_value, want = grad(*args)
  specs = (P("data", None, "model"),) * 3 + (P("model"), P("data"), P("data", "model"))
  placed = [jax.device_put(a, NamedSharding(mesh, s)) for a, s in zip(args, specs)]
  with partitioning.activation_rules(mesh):
    text = grad.lower(*placed).as_text()
    value, got = grad(*placed)
  assert "shard_map" in text or "manual" in text.lower()  # the per-device path ran
  np.testing.assert_allclose(float(value), float(want_value), rtol=1e-6)
  for a, b in zip(got, want):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_unknown_implementation_is_rejected_with_the_choices():
  with pytest.raises(ValueError, match="'xla', 'rows'"):
    attention.dot_product_attention(*_inputs(), implementation="flash")
  config = dict(
    vocab_size=64,
    emb_dim=16,
    num_heads=2,
    num_encoder_layers=1,
    num_decoder_layers=1,
    head_dim=6,
    mlp_dim=24,
  )
  with pytest.raises(ValueError, match="T5Config.attention"):
    network.T5Config(**config, attention="flash")


def test_network_gives_the_same_logits_and_gradients_with_either_attention():
  """Packed rows with padding, encoder and decoder, dropout on: one function, two programs."""
  base = dict(
    vocab_size=64,
    emb_dim=16,
    num_heads=2,
    num_encoder_layers=2,
    num_decoder_layers=2,
    head_dim=6,
    mlp_dim=24,
    dtype="float32",
    dropout_rate=0.3,
  )
  rng = np.random.default_rng(3)
  batch = {
    "encoder_input_tokens": rng.integers(2, 64, (2, 12)),
    "decoder_input_tokens": rng.integers(2, 64, (2, 8)),
    "decoder_target_tokens": rng.integers(2, 64, (2, 8)),
    "encoder_segment_ids": np.array([[1] * 5 + [2] * 5 + [0] * 2, [1] * 12]),
    "decoder_segment_ids": np.array([[1] * 3 + [2] * 4 + [0], [1] * 8]),
  }
  for key in ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens"):
    segments = batch["encoder_segment_ids" if key.startswith("enc") else "decoder_segment_ids"]
    batch[key] = np.where(segments > 0, batch[key], 0).astype(np.int32)
  batch = {k: jnp.asarray(v, jnp.int32) for k, v in batch.items()}
  results = {}
  for implementation in ("xla", "rows"):
    module = network.Transformer(network.T5Config(**base, attention=implementation))
    params = module.init(jax.random.PRNGKey(0), **batch, enable_dropout=False)["params"]
    rngs = {"dropout": jax.random.PRNGKey(7)}

    def loss(p, module=module, rngs=rngs):
      logits = module.apply({"params": p}, **batch, enable_dropout=True, rngs=rngs)
      return jnp.sum(jnp.where(batch["decoder_target_tokens"][..., None] > 0, logits, 0) ** 2)

    results[implementation] = jax.jit(jax.value_and_grad(loss))(params)
  (value_xla, grads_xla), (value_rows, grads_rows) = results["xla"], results["rows"]
  np.testing.assert_allclose(float(value_rows), float(value_xla), rtol=1e-5)
  for a, b in zip(jax.tree.leaves(grads_xla), jax.tree.leaves(grads_rows)):
    np.testing.assert_allclose(
      np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-5 * float(np.abs(a).max()) + 1e-7
    )


def test_heads_that_do_not_divide_the_model_axis_fall_back_to_the_einsum_form():
  mesh = partitioning.make_mesh({"data": 2, "model": 4})
  q, k, v, bias, visible, keep = _inputs(4)  # 2 heads over a model axis of 4
  want = attention.dot_product_attention(q, k, v, bias, visible, keep, implementation="xla")
  run = jax.jit(functools.partial(attention.dot_product_attention, implementation="rows"))
  with partitioning.activation_rules(mesh):
    text = run.lower(q, k, v, bias, visible, keep).as_text()
    got = run(q, k, v, bias, visible, keep)
  assert "while" not in text  # no row loop: the einsum form ran
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)
