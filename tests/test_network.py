"""The T5 1.1 network: bucketing, masks, packing, logical axes, scan/remat equivalence."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flan.model import layers, network

CONFIG = network.T5Config(
  vocab_size=64,
  emb_dim=16,
  num_heads=2,
  num_encoder_layers=2,
  num_decoder_layers=2,
  head_dim=6,
  mlp_dim=24,
  dtype="float32",
)
LOGICAL_NAMES = {"embed", "mlp", "heads", "joined_kv", "vocab", "relpos_buckets", "layers"}


@functools.cache
def _init(config=CONFIG):
  """(module, boxed variables); jitted so that tests pay one compile, not op-by-op dispatch."""
  module = network.Transformer(config)
  tokens = jnp.ones((1, 4), jnp.int32)
  init = jax.jit(lambda rng: module.init(rng, tokens, tokens, tokens, enable_dropout=False))
  return module, init(jax.random.PRNGKey(0))


def _unboxed(variables):
  return jax.tree.map(lambda p: p.value, variables["params"], is_leaf=lambda x: hasattr(x, "names"))


def _abstract(config=CONFIG):
  """Boxed parameter shapes without running (or compiling) anything."""
  module = network.Transformer(config)
  tokens = jnp.ones((1, 4), jnp.int32)
  return jax.eval_shape(
    lambda: module.init(jax.random.PRNGKey(0), tokens, tokens, tokens, enable_dropout=False)
  )


@functools.cache
def _apply(module, enable_dropout=False):
  return jax.jit(functools.partial(module.apply, enable_dropout=enable_dropout))


def _logits(module, params, batch):
  return np.asarray(_apply(module)({"params": params}, **batch))


def _example(rng, enc_len, dec_len):
  enc = rng.integers(2, CONFIG.vocab_size, enc_len).astype(np.int32)
  enc[-1] = 1
  targets = rng.integers(2, CONFIG.vocab_size, dec_len).astype(np.int32)
  targets[-1] = 1
  return enc, targets, np.concatenate([[0], targets[:-1]]).astype(np.int32)


def _reference_bucket(relative_position, bidirectional, num_buckets=32, max_distance=128):
  """Plain-Python Mesh TensorFlow bucketing, one offset at a time."""
  n = -relative_position
  bucket = 0
  if bidirectional:
    num_buckets //= 2
    bucket += num_buckets if n < 0 else 0
    n = abs(n)
  else:
    n = max(n, 0)
  max_exact = num_buckets // 2
  if n < max_exact:
    return bucket + n
  large = max_exact + int(
    np.log(np.float32(n) / max_exact + np.finfo(np.float32).eps)
    / np.log(max_distance / max_exact)
    * (num_buckets - max_exact)
  )
  return bucket + min(large, num_buckets - 1)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_position_bucket_matches_reference(bidirectional):
  offsets = np.arange(-300, 301)
  got = layers.relative_position_bucket(
    jnp.asarray(offsets), bidirectional=bidirectional, num_buckets=32, max_distance=128
  )
  want = [_reference_bucket(int(o), bidirectional) for o in offsets]
  np.testing.assert_array_equal(np.asarray(got), want)
  assert int(np.max(got)) == 31


def test_every_parameter_has_logical_axes_of_its_rank():
  for scan in (False, True):
    config = network.T5Config(**{**CONFIG.__dict__, "scan_layers": scan})
    variables = _abstract(config)
    specs = jax.tree.leaves(
      jax.tree.map(
        lambda p: (p.names, p.value.ndim),
        variables["params"],
        is_leaf=lambda x: hasattr(x, "names"),
      ),
      is_leaf=lambda x: isinstance(x, tuple),
    )
    assert len(specs) == len(jax.tree.leaves(variables["params"]))
    for names, ndim in specs:
      assert len(names) == ndim and set(names) <= LOGICAL_NAMES, names
    assert any(names[0] == "layers" for names, _ in specs) == scan


def test_param_tree_matches_t5x_layout():
  params = _abstract()["params"]
  assert set(params) == {"token_embedder", "encoder", "decoder"}
  assert set(params["decoder"]["layers_0"]) == {
    "pre_self_attention_layer_norm",
    "self_attention",
    "pre_cross_attention_layer_norm",
    "encoder_decoder_attention",
    "pre_mlp_layer_norm",
    "mlp",
  }
  assert params["decoder"]["logits_dense"]["kernel"].value.shape == (16, 64)
  assert params["encoder"]["relpos_bias"]["rel_embedding"].value.shape == (2, 32)
  assert params["encoder"]["layers_0"]["attention"]["query"]["kernel"].value.shape == (16, 12)
  assert all(l.dtype == jnp.float32 for l in jax.tree.leaves(params))


ENC_LEN, DEC_LEN = 14, 9  # one shape for most calls: each new shape is a new compile


def _rows(examples):
  """Unpacked [len(examples), ENC_LEN / DEC_LEN] batch, zero-padded."""
  batch = {
    k: np.zeros((len(examples), n), np.int32)
    for k, n in (
      ("encoder_input_tokens", ENC_LEN),
      ("decoder_target_tokens", DEC_LEN),
      ("decoder_input_tokens", DEC_LEN),
    )
  }
  for i, (enc, tgt, inp) in enumerate(examples):
    batch["encoder_input_tokens"][i, : len(enc)] = enc
    batch["decoder_target_tokens"][i, : len(tgt)] = tgt
    batch["decoder_input_tokens"][i, : len(inp)] = inp
  return batch


def test_packed_row_gives_each_example_its_own_logits():
  module, variables = _init()
  params = _unboxed(variables)
  rng = np.random.default_rng(1)
  examples = [_example(rng, 5, 4), _example(rng, 6, 3)]
  packed = {
    k: np.zeros((1, n), np.int32)
    for k, n in (
      ("encoder_input_tokens", ENC_LEN),
      ("decoder_target_tokens", DEC_LEN),
      ("decoder_input_tokens", DEC_LEN),
      ("encoder_segment_ids", ENC_LEN),
      ("decoder_segment_ids", DEC_LEN),
    )
  }
  enc_at, dec_at = 0, 0
  for seg, (enc, tgt, inp) in enumerate(examples, start=1):
    packed["encoder_input_tokens"][0, enc_at : enc_at + len(enc)] = enc
    packed["encoder_segment_ids"][0, enc_at : enc_at + len(enc)] = seg
    packed["decoder_target_tokens"][0, dec_at : dec_at + len(tgt)] = tgt
    packed["decoder_input_tokens"][0, dec_at : dec_at + len(tgt)] = inp
    packed["decoder_segment_ids"][0, dec_at : dec_at + len(tgt)] = seg
    enc_at, dec_at = enc_at + len(enc), dec_at + len(tgt)
  packed_logits = _logits(module, params, packed)[0]
  alone = _logits(module, params, _rows(examples))
  np.testing.assert_allclose(packed_logits[:4], alone[0, :4], atol=1e-5)
  np.testing.assert_allclose(packed_logits[4:7], alone[1, :3], atol=1e-5)


def test_padding_and_later_tokens_do_not_change_earlier_logits():
  module, variables = _init()
  params = _unboxed(variables)
  enc, tgt, inp = _example(np.random.default_rng(2), 6, 5)
  changed = inp.copy()
  changed[3] = (changed[3] + 1) % CONFIG.vocab_size + 2
  padded = _logits(module, params, _rows([(enc, tgt, inp), (enc, tgt, changed)]))
  tight = _logits(
    module,
    params,
    {
      "encoder_input_tokens": enc[None],
      "decoder_target_tokens": tgt[None],
      "decoder_input_tokens": inp[None],
    },
  )
  np.testing.assert_allclose(padded[0, :5], tight[0], atol=1e-5)
  np.testing.assert_allclose(padded[1, :3], padded[0, :3], atol=1e-6)
  assert np.abs(padded[1, 3:5] - padded[0, 3:5]).max() > 1e-4


@functools.cache
def _loss_grad(module):
  def loss(p, batch):
    return jnp.sum(module.apply({"params": p}, **batch, enable_dropout=False) ** 2)

  return jax.jit(jax.grad(loss))


@pytest.mark.parametrize(
  "scan_layers,remat_policy",
  [
    (True, "none"),
    pytest.param(True, "full", marks=pytest.mark.slow),
    pytest.param(False, "minimal", marks=pytest.mark.slow),
  ],
)
def test_scan_and_remat_give_the_same_logits_and_grads(scan_layers, remat_policy):
  module, variables = _init()
  params = _unboxed(variables)
  enc, tgt, inp = _example(np.random.default_rng(3), 7, 5)
  batch = _rows([(enc, tgt, inp)])
  other = network.Transformer(
    network.T5Config(
      **{**CONFIG.__dict__, "scan_layers": scan_layers, "remat_policy": remat_policy}
    )
  )
  to_other = (
    functools.partial(network.scan_layer_params, config=CONFIG) if scan_layers else (lambda p: p)
  )
  from_other = (
    functools.partial(network.unscan_layer_params, config=CONFIG) if scan_layers else (lambda p: p)
  )
  grads = _loss_grad(module)(params, batch)
  other_grads = from_other(_loss_grad(other)(to_other(params), batch))
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(other_grads)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  if scan_layers and remat_policy == "none":
    np.testing.assert_allclose(
      _logits(other, to_other(params), batch), _logits(module, params, batch), atol=1e-5
    )


def test_dropout_only_with_rng_and_enable_flag():
  module, variables = _init()
  params = _unboxed(variables)
  noisy = network.Transformer(network.T5Config(**{**CONFIG.__dict__, "dropout_rate": 0.5}))
  batch = _rows([_example(np.random.default_rng(4), 6, 4)])
  off = _logits(module, params, batch)
  np.testing.assert_array_equal(_logits(noisy, params, batch), off)
  on = [
    np.asarray(
      _apply(noisy, True)({"params": params}, **batch, rngs={"dropout": jax.random.PRNGKey(s)})
    )
    for s in (0, 1)
  ]
  assert np.abs(on[0] - off).max() > 1e-3 and np.abs(on[0] - on[1]).max() > 1e-3


def test_bfloat16_activations_keep_float32_params_and_logits():
  module, variables = _init()
  params = _unboxed(variables)
  half = network.Transformer(network.T5Config(**{**CONFIG.__dict__, "dtype": "bfloat16"}))
  batch = _rows([_example(np.random.default_rng(5), 6, 4)])
  logits = _apply(half)({"params": params}, **batch)
  assert logits.dtype == jnp.float32
  reference = _logits(module, params, batch)
  np.testing.assert_allclose(np.asarray(logits), reference, atol=0.1 * np.abs(reference).max())


def test_initialisers_follow_t5x():
  # Query init carries the 1/sqrt(head_dim) that the logits do not; embedding stddev 1.
  config = network.T5Config(
    vocab_size=256,
    emb_dim=128,
    num_heads=4,
    num_encoder_layers=1,
    num_decoder_layers=1,
    head_dim=32,
    mlp_dim=256,
    dtype="float32",
  )
  module = network.Transformer(config)
  tokens = jnp.ones((1, 2), jnp.int32)
  params = _unboxed(
    jax.jit(lambda rng: module.init(rng, tokens, tokens, tokens, enable_dropout=False))(
      jax.random.PRNGKey(0)
    )
  )
  attention = params["encoder"]["layers_0"]["attention"]
  std = lambda x: float(np.std(np.asarray(x)))
  np.testing.assert_allclose(std(attention["query"]["kernel"]), 128**-0.5 * 32**-0.5, rtol=0.05)
  np.testing.assert_allclose(std(attention["key"]["kernel"]), 128**-0.5, rtol=0.05)
  np.testing.assert_allclose(std(attention["out"]["kernel"]), 128**-0.5, rtol=0.05)
  np.testing.assert_allclose(std(params["token_embedder"]["embedding"]), 1.0, rtol=0.05)
  bound = np.sqrt(6.0 / (4 + 32))  # variance_scaling(1, fan_avg, uniform) on [heads, buckets]
  rel = np.asarray(params["encoder"]["relpos_bias"]["rel_embedding"])
  assert np.abs(rel).max() <= bound and np.abs(rel).max() > 0.8 * bound
  assert np.all(np.asarray(params["encoder"]["encoder_norm"]["scale"]) == 1.0)


def test_config_rejects_unknown_options_with_the_fix():
  with pytest.raises(ValueError, match="remat_policy"):
    network.T5Config(**{**CONFIG.__dict__, "remat_policy": "some"})
  with pytest.raises(ValueError, match="mlp_activations"):
    network.T5Config(**{**CONFIG.__dict__, "mlp_activations": ("swish", "linear")})


@pytest.mark.parametrize("m,k,n", [(64, 16, 24), (40, 24, 8)])
def test_cpu_bfloat16_matmul_matches_xla_product_and_gradient(m, k, n):
  """The hand-written gradient of the XLA:CPU bfloat16 matmul (zero rows appended to x^T) is
  the same function as XLA's own product and autodiff, to bfloat16 rounding."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(m, k)), jnp.bfloat16)
  w = jnp.asarray(rng.normal(size=(k, n)) / np.sqrt(k), jnp.float32)
  probe = jnp.asarray(rng.normal(size=(m, n)), jnp.float32)

  def loss(product, x, w):
    return jnp.sum(product(x, w).astype(jnp.float32) * probe)

  ours = layers._cpu_bf16_matmul  # pylint: disable=protected-access
  xla = lambda x, w: jnp.dot(x, w.astype(jnp.bfloat16), preferred_element_type=jnp.float32).astype(
    jnp.bfloat16
  )
  y_ours, y_xla = ours(x, w.astype(jnp.bfloat16)), xla(x, w)
  np.testing.assert_array_equal(np.asarray(y_ours, np.float32), np.asarray(y_xla, np.float32))
  g_ours = jax.jit(jax.grad(lambda x, w: loss(ours, x, w.astype(jnp.bfloat16)), (0, 1)))(x, w)
  g_xla = jax.jit(jax.grad(lambda x, w: loss(xla, x, w), (0, 1)))(x, w)
  for a, b in zip(g_ours, g_xla):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=2e-2, atol=2e-2 * np.abs(b).max())
  exact = jax.grad(lambda w: jnp.sum((x.astype(jnp.float32) @ w) * probe))(w)
  np.testing.assert_allclose(
    np.asarray(g_ours[1], np.float32), exact, rtol=2e-2, atol=2e-2 * np.abs(exact).max()
  )


def test_dense_takes_the_cpu_bfloat16_path_only_for_flat_bfloat16():
  x = jnp.ones((2, 3, 16), jnp.float32)
  for matmul, dtype, custom in (
    ("flat", "bfloat16", True),
    ("flat", "float32", False),
    ("xla", "bfloat16", False),
  ):
    dense = layers.Dense(8, ("embed", "mlp"), jnp.dtype(dtype), matmul=matmul)
    variables = dense.init(jax.random.PRNGKey(0), x)
    jaxpr = str(jax.make_jaxpr(lambda v, dense=dense: dense.apply(v, x))(variables))
    assert ("custom_vjp_call" in jaxpr) == custom, (matmul, dtype)
    assert ("reshape" in jaxpr) == (matmul == "flat"), (matmul, dtype)


def test_config_resolves_auto_kernels_from_the_platform_once_and_keeps_auto_in_its_fields():
  config = network.T5Config(**CONFIG.__dict__)
  assert config.attention == config.matmul == "auto"  # what is saved stays portable
  assert jax.devices()[0].platform == "cpu"  # these tests run on CPU devices
  assert (config.attention_kernel, config.matmul_kernel) == ("rows", "flat")
  chosen = network.T5Config(**{**CONFIG.__dict__, "attention": "xla", "matmul": "xla"})
  assert (chosen.attention_kernel, chosen.matmul_kernel) == ("xla", "xla")
  with pytest.raises(ValueError, match="T5Config.matmul"):
    network.T5Config(**{**CONFIG.__dict__, "matmul": "fast"})
