"""EncoderDecoderModel: t5x's loss formulas, normalisers, packing, scoring, gin configs."""

import functools
import pathlib

import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flan.model import encoder_decoder as model_lib
from flan.model import hf, network

FIXTURE = pathlib.Path(__file__).parent / "testdata" / "hf_tiny_t5"
CONFIGS = pathlib.Path(__file__).resolve().parent.parent / "configs" / "models"


@functools.cache
def _fixture():
  config, params = hf.params_from_hf(FIXTURE, dtype="float32")
  data = np.load(FIXTURE / "expected_logits.npz")
  batch = {
    k: data[k] for k in ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")
  }
  batch["decoder_loss_weights"] = (batch["decoder_target_tokens"] > 0).astype(np.int32)
  return config, params, batch


@functools.cache
def _fixture_logits():
  config, params, batch = _fixture()
  model = model_lib.EncoderDecoderModel(config)
  return np.asarray(jax.jit(model.logits)(params, batch))


def _model_with_fixed_logits(**kwargs):
  """A model whose network is replaced by the fixture's logits: tests only the loss math."""
  config, _, _ = _fixture()
  model = model_lib.EncoderDecoderModel(config, **kwargs)
  model.logits = lambda params, batch, dropout_rng=None: jnp.asarray(_fixture_logits())
  return model


def _numpy_loss(logits, targets, weights, z_loss, label_smoothing):
  """t5x's formula spelled out with a dense soft-target matrix, in float64."""
  logits = logits.astype(np.float64)
  vocab = logits.shape[-1]
  confidence, low = 1.0 - label_smoothing, label_smoothing / (vocab - 1)
  soft = np.full(logits.shape, low)
  np.put_along_axis(soft, targets[..., None], confidence, axis=-1)
  log_z = np.log(np.sum(np.exp(logits), axis=-1))
  log_softmax = logits - log_z[..., None]
  entropy = -(confidence * np.log(confidence) + (vocab - 1) * low * np.log(low + 1e-20))
  per_token = -np.sum(soft * log_softmax, axis=-1) - entropy + z_loss * log_z**2
  return np.sum(per_token * weights), np.sum(z_loss * log_z**2 * weights)


@pytest.mark.parametrize("z_loss,label_smoothing", [(0.0, 0.0), (1e-4, 0.0), (1e-2, 0.1)])
def test_cross_entropy_matches_numpy_formula(z_loss, label_smoothing):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 5, 11)).astype(np.float32) * 3
  targets = rng.integers(0, 11, size=(2, 5)).astype(np.int32)
  weights = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.float32)
  loss, z = model_lib.cross_entropy_with_z_loss(
    jnp.asarray(logits),
    jnp.asarray(targets),
    jnp.asarray(weights),
    z_loss=z_loss,
    label_smoothing=label_smoothing,
  )
  want_loss, want_z = _numpy_loss(logits, targets, weights, z_loss, label_smoothing)
  np.testing.assert_allclose(float(loss), want_loss, rtol=1e-5)
  np.testing.assert_allclose(float(z), want_z, rtol=1e-5, atol=1e-9)


def test_cross_entropy_gradient_is_t5x_closed_form():
  rng = np.random.default_rng(1)
  logits = jnp.asarray(rng.normal(size=(1, 3, 7)).astype(np.float32))
  targets = jnp.asarray([[0, 3, 6]], jnp.int32)
  weights = jnp.ones((1, 3), jnp.float32)
  z_loss, ls = 1e-2, 0.1
  grad = jax.grad(
    lambda x: model_lib.cross_entropy_with_z_loss(
      x, targets, weights, z_loss=z_loss, label_smoothing=ls
    )[0]
  )(logits)
  log_z = jax.nn.logsumexp(logits, axis=-1, keepdims=True)
  soft = jax.nn.one_hot(targets, 7) * (1 - ls - ls / 6) + ls / 6
  want = (1 + 2 * z_loss * log_z) * jax.nn.softmax(logits) - soft
  np.testing.assert_allclose(np.asarray(grad), np.asarray(want), atol=1e-6)


def test_perfect_prediction_scores_zero_with_label_smoothing():
  # The entropy subtraction makes the smoothed target distribution itself cost 0.
  vocab, ls = 5, 0.2
  probs = np.full(vocab, ls / (vocab - 1))
  probs[2] = 1 - ls
  logits = jnp.asarray(np.log(probs)[None, None].astype(np.float32))
  loss, _ = model_lib.cross_entropy_with_z_loss(
    logits, jnp.array([[2]]), jnp.ones((1, 1)), z_loss=0.0, label_smoothing=ls
  )
  assert abs(float(loss)) < 1e-5


def test_loss_fn_sums_tokens_and_reports_metrics():
  config, params, batch = _fixture()
  model = model_lib.EncoderDecoderModel(config)
  loss, metrics = jax.jit(model.loss_fn)(params, batch, None)
  logits = _fixture_logits()
  weights = batch["decoder_loss_weights"]
  want, want_z = _numpy_loss(logits, batch["decoder_target_tokens"], weights, 1e-4, 0.0)
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)
  np.testing.assert_allclose(float(metrics["z_loss"]), want_z, rtol=1e-4)
  np.testing.assert_allclose(float(metrics["cross_ent_loss"]), want - want_z, rtol=1e-5)
  correct = np.sum((logits.argmax(-1) == batch["decoder_target_tokens"]) * weights)
  assert float(metrics["accuracy"]) == correct
  assert float(metrics["num_tokens"]) == weights.sum() == 31
  assert float(metrics["num_examples"]) == 3


@pytest.mark.parametrize(
  "factor,divisor",
  [
    (None, 1.0),
    (233472.0, 233472.0),
    ("NUM_REAL_TARGET_TOKENS", 31.0),
    ("NUM_TOTAL_TARGET_TOKENS", 36.0),
  ],
)
def test_loss_normalizing_factor(factor, divisor):
  """Each normaliser divides the token sum by what t5x divides it by."""
  _, params, batch = _fixture()
  summed, _ = _model_with_fixed_logits().loss_fn(params, batch, None)
  model = _model_with_fixed_logits(loss_normalizing_factor=factor)
  loss, metrics = model.loss_fn(params, batch, None)
  np.testing.assert_allclose(float(loss), float(summed) / divisor, rtol=1e-6)
  assert float(metrics["loss"]) == float(loss)


def test_average_per_sequence_is_the_mean_of_per_sequence_token_means():
  _, params, batch = _fixture()
  model = _model_with_fixed_logits(loss_normalizing_factor="AVERAGE_PER_SEQUENCE")
  loss, metrics = model.loss_fn(params, batch, None)
  # By hand: each row's mean loss over its weighted tokens, then the mean over rows.
  logits, targets = _fixture_logits(), batch["decoder_target_tokens"]
  weights = batch["decoder_loss_weights"].astype(np.float64)
  per_row = [
    _numpy_loss(logits[i : i + 1], targets[i : i + 1], weights[i : i + 1], 1e-4, 0.0)[0]
    / weights[i].sum()
    for i in range(len(weights))
  ]
  np.testing.assert_allclose(float(loss), np.mean(per_row), rtol=1e-5)
  assert float(model.loss_normalizer(batch)) == pytest.approx(3.0)  # three sequences
  # The per-token logs stay a plain token sum.
  _, summed_metrics = _model_with_fixed_logits().loss_fn(params, batch, None)
  np.testing.assert_allclose(
    float(metrics["cross_ent_sum"]), float(summed_metrics["cross_ent_sum"]), rtol=1e-6
  )


def test_average_per_sequence_weighs_each_packed_segment_once():
  weights = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]], np.float32)
  segments = np.array([[1, 1, 1, 2, 0, 0], [1, 1, 0, 0, 0, 0]], np.int32)
  batch = {
    "decoder_target_tokens": np.ones((2, 6), np.int32),
    "decoder_loss_weights": weights,
    "decoder_segment_ids": segments,
  }
  factor, w = model_lib.loss_normalizer_and_weights("AVERAGE_PER_SEQUENCE", batch)
  np.testing.assert_allclose(
    np.asarray(w), [[1 / 3, 1 / 3, 1 / 3, 1, 0, 0], [1 / 2, 1 / 2, 0, 0, 0, 0]], rtol=1e-6
  )
  assert float(factor) == pytest.approx(3.0)


@pytest.mark.parametrize(
  "factor",
  [None, 233472.0, "NUM_REAL_TARGET_TOKENS", "NUM_TOTAL_TARGET_TOKENS", "AVERAGE_PER_SEQUENCE"],
)
def test_microbatch_losses_and_gradients_add_up_to_the_whole_batch(factor):
  config, params, batch = _fixture()
  model = model_lib.EncoderDecoderModel(config, loss_normalizing_factor=factor)
  grad = jax.jit(jax.value_and_grad(model.loss_fn, has_aux=True))
  (whole, _), whole_grads = grad(params, batch, None)
  normalizer = model.loss_normalizer(batch)  # the whole batch's, as the train step passes it
  slices = [{k: v[rows] for k, v in batch.items()} for rows in ([0], [1, 2])]
  parts = [grad(params, mb, None, normalizer=normalizer) for mb in slices]
  np.testing.assert_allclose(sum(float(l) for (l, _), _ in parts), float(whole), rtol=1e-5)
  summed_grads = jax.tree.map(lambda a, b: a + b, parts[0][1], parts[1][1])
  for a, b in zip(jax.tree.leaves(summed_grads), jax.tree.leaves(whole_grads)):
    b = np.asarray(b)  # float32 sums in another order: rounding relative to the largest entry
    np.testing.assert_allclose(np.asarray(a), b, rtol=1e-4, atol=1e-5 * np.abs(b).max())


def test_bad_loss_normalizing_factor_says_what_is_allowed():
  config, _, _ = _fixture()
  with pytest.raises(ValueError, match="NUM_REAL_TARGET_TOKENS"):
    model_lib.EncoderDecoderModel(config, loss_normalizing_factor="AVERAGE_PER_TOKEN")


def test_packed_loss_equals_sum_of_separate_losses():
  config, params, batch = _fixture()
  model = model_lib.EncoderDecoderModel(config)
  # Rows 1 and 2 of the fixture, packed into one row of the same lengths.
  enc = [r[r > 0] for r in batch["encoder_input_tokens"][1:]]
  tgt = [r[r > 0] for r in batch["decoder_target_tokens"][1:]]
  enc_len = batch["encoder_input_tokens"].shape[1]
  dec_len = sum(len(t) for t in tgt) + 2
  packed = {
    k: np.zeros((1, enc_len if k.startswith("encoder") else dec_len), np.int32)
    for k in (
      "encoder_input_tokens",
      "encoder_segment_ids",
      "decoder_target_tokens",
      "decoder_input_tokens",
      "decoder_segment_ids",
      "decoder_loss_weights",
    )
  }
  e = d = 0
  for seg, (x, y) in enumerate(zip(enc, tgt), start=1):
    packed["encoder_input_tokens"][0, e : e + len(x)] = x
    packed["encoder_segment_ids"][0, e : e + len(x)] = seg
    packed["decoder_target_tokens"][0, d : d + len(y)] = y
    packed["decoder_input_tokens"][0, d + 1 : d + len(y)] = y[:-1]
    packed["decoder_segment_ids"][0, d : d + len(y)] = seg
    packed["decoder_loss_weights"][0, d : d + len(y)] = 1
    e, d = e + len(x), d + len(y)
  separate = {k: v[1:] for k, v in batch.items()}
  loss_fn = jax.jit(model.loss_fn)
  packed_loss, packed_metrics = loss_fn(params, packed, None)
  separate_loss, _ = loss_fn(params, separate, None)
  np.testing.assert_allclose(float(packed_loss), float(separate_loss), rtol=1e-5)
  assert float(packed_metrics["num_examples"]) == 2
  np.testing.assert_allclose(
    np.asarray(model.score_batch(params, separate)).sum(),
    float(model.score_batch(params, packed)[0]),
    rtol=1e-5,
  )


def test_score_batch_is_weighted_target_log_prob_sum():
  config, params, batch = _fixture()
  model = model_lib.EncoderDecoderModel(config)
  scores = np.asarray(model.score_batch(params, batch))
  logits = _fixture_logits().astype(np.float64)
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  picked = np.take_along_axis(log_probs, batch["decoder_target_tokens"][..., None], -1)[..., 0]
  np.testing.assert_allclose(scores, (picked * batch["decoder_loss_weights"]).sum(-1), rtol=1e-5)
  assert scores.shape == (3,) and scores.dtype == np.float32


def test_options_packed_in_one_decoder_row_score_as_separate_rows():
  config, params, _ = _fixture()
  model = model_lib.EncoderDecoderModel(config)  # float32 activations
  rng = np.random.default_rng(3)
  vocab = config.vocab_size
  inputs = [list(rng.integers(2, vocab, size=n)) + [1] for n in (5, 17, 2)]
  options = [  # different counts and lengths per example, each EOS-terminated
    [list(rng.integers(2, vocab, size=n)) + [1] for n in counts]
    for counts in ((3, 0, 6), (1,), (4, 2, 2, 7, 0))
  ]
  enc = np.zeros((3, 20), np.int32)
  for e, x in enumerate(inputs):
    enc[e, : len(x)] = x
  length = 32
  tgt, dec_in, seg = (np.zeros((3, length), np.int32) for _ in range(3))
  for e, opts in enumerate(options):
    at = 0
    for j, o in enumerate(opts):
      tgt[e, at : at + len(o)] = o
      dec_in[e, at + 1 : at + len(o)] = o[:-1]
      seg[e, at : at + len(o)] = j + 1
      at += len(o)
  packed = np.asarray(
    jax.jit(model.score_options)(
      params,
      {
        "encoder_input_tokens": enc,
        "decoder_input_tokens": dec_in,
        "decoder_target_tokens": tgt,
        "decoder_segment_ids": seg,
      },
    )
  )
  assert packed.shape == (3, length)
  # The reference: score_batch on one (example, option) row each.
  flat = [(e, o) for e, opts in enumerate(options) for o in opts]
  rows = np.zeros((len(flat), 8), np.int32)
  for r, (_, o) in enumerate(flat):
    rows[r, : len(o)] = o
  separate = np.asarray(
    jax.jit(model.score_batch)(
      params,
      {
        "encoder_input_tokens": enc[[e for e, _ in flat]],
        "decoder_input_tokens": np.pad(rows[:, :-1], ((0, 0), (1, 0))),
        "decoder_target_tokens": rows,
        "decoder_loss_weights": (rows > 0).astype(np.int32),
      },
    )
  )
  r = 0
  for e, opts in enumerate(options):
    np.testing.assert_allclose(packed[e, : len(opts)], separate[r : r + len(opts)], rtol=1e-5)
    assert not packed[e, len(opts) :].any()  # no option, no score
    r += len(opts)
  assert len(set(np.round(separate, 3))) == len(separate)  # the options do score differently


def test_dropout_rng_changes_the_loss_and_grads_are_finite():
  config, params, batch = _fixture()
  noisy = network.T5Config(**{**config.__dict__, "dropout_rate": 0.3})
  model = model_lib.EncoderDecoderModel(noisy)
  grad_fn = jax.jit(jax.value_and_grad(model.loss_fn, has_aux=True))
  (clean, _), _ = grad_fn(params, batch, None)
  (loss, _), grads = grad_fn(params, batch, jax.random.PRNGKey(0))
  assert abs(float(loss) - float(clean)) > 1e-3
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_init_and_logical_specs_share_one_tree():
  config, params, _ = _fixture()
  model = model_lib.EncoderDecoderModel(config)
  shapes = {"encoder_input_tokens": (2, 8), "decoder_input_tokens": (2, 4)}
  fresh = jax.eval_shape(lambda rng: model.init(rng, shapes), jax.random.PRNGKey(0))
  specs = model.param_logical_specs()
  assert jax.tree.structure(fresh) == jax.tree.structure(params)
  flat_specs = jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
  assert [len(s) for s in flat_specs] == [x.ndim for x in jax.tree.leaves(fresh)]
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(fresh))


# t5x's T5 1.1 sizes (t5_1_1/*.gin) and parameter counts of the released checkpoints.
SIZES = {
  "tiny": (8, 4, 3, 16, 2, 0.52e6),
  "small": (512, 6, 64, 1024, 8, 77e6),
  "base": (768, 12, 64, 2048, 12, 248e6),
  "large": (1024, 16, 64, 2816, 24, 783e6),
  "xl": (2048, 32, 64, 5120, 24, 2.85e9),
  "xxl": (4096, 64, 64, 10240, 24, 11.1e9),
}


@gin.configurable
def _built(model=None):
  return model


@pytest.mark.parametrize("size", sorted(SIZES))
def test_model_gin_builds_t5x_sizes(size):
  emb, heads, head_dim, mlp, layers, num_params = SIZES[size]
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings(
      [str(CONFIGS / f"{size}.gin")], ["DROPOUT_RATE = 0.1", "_built.model = %MODEL"]
    )
    model = _built()
  finally:
    gin.clear_config()
  c = model.config
  assert (c.emb_dim, c.num_heads, c.head_dim, c.mlp_dim) == (emb, heads, head_dim, mlp)
  assert c.num_encoder_layers == c.num_decoder_layers == layers
  assert c.vocab_size == 32128 and c.dropout_rate == 0.1 and model.z_loss == 1e-4
  shapes = {"encoder_input_tokens": (1, 2), "decoder_input_tokens": (1, 2)}
  abstract = jax.eval_shape(lambda rng: model.init(rng, shapes), jax.random.PRNGKey(0))
  count = sum(x.size for x in jax.tree.leaves(abstract))
  assert abs(count - num_params) / num_params < 0.01
