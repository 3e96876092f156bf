"""Adafactor against a direct numpy transcription of t5x's rule, per layer under scan; the LR
schedules against t5x's formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from flan.training import optimizer as opt


def _t5x_reference(
  params, grads_per_step, lr_fn, *, decay=0.8, clip=1.0, eps1=1e-30, eps2=1e-3, min_dim=128
):
  """t5x's Adafactor written out in float64 numpy, one parameter at a time."""
  params = {k: v.astype(np.float64) for k, v in params.items()}
  state = {}
  for step, grads in enumerate(grads_per_step):
    beta = 1.0 - (step + 1.0) ** -decay
    lr = lr_fn(step)
    new = {}
    for name, p in params.items():
      g = grads[name].astype(np.float64)
      g2 = g * g + eps1
      shape = p.shape
      order = sorted(range(len(shape)), key=lambda i: (shape[i], i))
      if len(shape) >= 2 and shape[order[-2]] >= min_dim:
        d1, d0 = order[-2], order[-1]
        vr, vc = state.get(name, (0.0, 0.0))
        vr = beta * vr + (1 - beta) * g2.mean(axis=d0)
        vc = beta * vc + (1 - beta) * g2.mean(axis=d1)
        state[name] = (vr, vc)
        rd1 = d1 - 1 if d1 > d0 else d1
        r = (vr / vr.mean(axis=rd1, keepdims=True)) ** -0.5
        y = g * np.expand_dims(r, d0) * np.expand_dims(vc**-0.5, d1)
      else:
        v = state.get(name, 0.0)
        v = beta * v + (1 - beta) * g2
        state[name] = v
        y = g / np.sqrt(v)
      y = y / max(1.0, np.sqrt(np.mean(y * y)) / clip)
      scale = lr * max(np.sqrt(np.mean(p * p)), eps2)
      new[name] = p - scale * y
    params = new
  return params


def _problem(seed=0):
  rng = np.random.default_rng(seed)
  params = {
    "kernel": rng.normal(size=(128, 256)).astype(np.float32),  # factored (d1=0, d0=1)
    "tall": rng.normal(size=(300, 130)).astype(np.float32),  # factored (d1=1, d0=0)
    "narrow": rng.normal(size=(3, 300)).astype(np.float32),  # unfactored: 3 < 128
    "scale": np.full((16,), 1e-4, np.float32),  # rms below the 1e-3 floor
  }
  grads = [
    {k: rng.normal(size=v.shape).astype(np.float32) * (i + 1) for k, v in params.items()}
    for i in range(3)
  ]
  return params, grads


@pytest.mark.parametrize("factors", ["constant", "constant * rsqrt_decay"])
def test_adafactor_three_steps_equal_the_t5x_rule_in_numpy(factors):
  params, grads = _problem()
  schedule = opt.learning_rate_schedule(factors=factors, base_learning_rate=0.01, warmup_steps=2)
  tx = opt.adafactor(schedule)
  p = jax.tree.map(jnp.asarray, params)
  state = tx.init(p)
  for step, g in enumerate(grads):
    updates, state = tx.update(jax.tree.map(jnp.asarray, g), state, p, step=jnp.int32(step))
    p = optax.apply_updates(p, updates)
  expected = _t5x_reference(params, grads, lambda s: float(schedule(s)))
  for name in params:
    np.testing.assert_allclose(
      np.asarray(p[name]), expected[name], rtol=2e-5, atol=1e-7, err_msg=name
    )
  assert state.v_row["kernel"].shape == (128,) and state.v_col["kernel"].shape == (256,)
  assert state.v_row["tall"].shape == (130,) and state.v_col["tall"].shape == (300,)
  assert state.v["narrow"].shape == (3, 300) and state.v["kernel"].shape == (1,)


def test_adafactor_matches_optax_adafactor_when_no_update_is_skipped():
  params, grads = _problem(1)
  ours = opt.adafactor(1e-2)
  ref = optax.adafactor(learning_rate=1e-2)
  p, q = jax.tree.map(jnp.asarray, params), jax.tree.map(jnp.asarray, params)
  s1, s2 = ours.init(p), ref.init(q)
  for step, g in enumerate(grads):
    g = jax.tree.map(jnp.asarray, g)
    u1, s1 = ours.update(g, s1, p, step=jnp.int32(step))
    u2, s2 = ref.update(g, s2, q)
    p, q = optax.apply_updates(p, u1), optax.apply_updates(q, u2)
  for name in params:
    np.testing.assert_allclose(p[name], q[name], rtol=1e-5, atol=1e-7)


def test_decay_is_keyed_on_the_given_global_step_not_on_a_private_counter():
  params, grads = _problem(2)
  tx = opt.adafactor(1e-2)
  p = jax.tree.map(jnp.asarray, params)
  g0, g1 = (jax.tree.map(jnp.asarray, g) for g in grads[:2])
  _, state = tx.update(g0, tx.init(p), p, step=jnp.int32(0))
  # Same state, same gradient: only beta2 differs (0.43 at step 1 vs ~1 at step 10**6).
  _, early = tx.update(g1, state, p, step=jnp.int32(1))
  _, late = tx.update(g1, state, p, step=jnp.int32(10**6))
  beta_early = 1 - 2.0**-0.8
  g2 = np.square(np.asarray(g1["narrow"], np.float64)) + 1e-30
  np.testing.assert_allclose(
    early.v["narrow"], beta_early * state.v["narrow"] + (1 - beta_early) * g2, rtol=1e-5
  )
  moved_late = np.abs(late.v["narrow"] - state.v["narrow"]).max()
  moved_early = np.abs(early.v["narrow"] - state.v["narrow"]).max()
  assert moved_late < 1e-3 * moved_early


def test_update_without_step_is_a_clear_error():
  p = {"w": jnp.ones((3,))}
  tx = opt.adafactor(1e-2)
  with pytest.raises(ValueError, match="step="):
    tx.update(p, tx.init(p), p)


def test_global_norm_clip_bounds_gradients_before_the_statistics():
  # With clipping, scaling all gradients by 1000 changes nothing (Adafactor is scale-free
  # anyway), but a clip threshold must not break the update either.
  params, grads = _problem(3)
  p = jax.tree.map(jnp.asarray, params)
  g = jax.tree.map(jnp.asarray, grads[0])
  tx = opt.adafactor(1e-2, global_norm_clip=1.0)
  u, _ = tx.update(g, tx.init(p), p, step=jnp.int32(0))
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(u))


# t5x's create_learning_rate_scheduler by hand, with warmup_steps=100, decay_factor=0.5,
# steps_per_decay=50, steps_per_cycle=200, base_learning_rate=2.0 (linear_decay: decay_factor
# 0.001), min_learning_rate=1e-8, at steps 0, mid-warmup, warmup, 1.5 cycles after it,
# 2 cycles after it (500), a quarter cycle later, and far out.
STEPS = (0, 50, 100, 400, 500, 550, 1100)
T5X_VALUES = {
  "constant": (2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0),
  # min(1, t / 100), floored at 1e-8 at step 0
  "linear_warmup": (1e-8, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0),
  # 1 / sqrt(max(t, 100))
  "rsqrt_decay": (0.1, 0.1, 0.1, 0.05, 0.044721360, 0.042640143, 0.030151134),
  # sqrt(100) / sqrt(max(t, 100))
  "rsqrt_normalized_decay": (1.0, 1.0, 1.0, 0.5, 0.44721360, 0.42640143, 0.30151134),
  # 0.5 ** (t // 50)
  "decay_every": (1.0, 0.5, 0.25, 0.5**8, 0.5**10, 0.5**11, 0.5**22),
  # (1 + cos(pi * (max(0, (t - 100) / 200) % 1))) / 2: 1 during warmup, 0.5 half-way
  # through a cycle, back to 1 at every cycle start (300, 500, ...)
  "cosine_decay": (1.0, 1.0, 1.0, 0.5, 1.0, 0.85355339, 1.0),
  # 2 * min(t / 100, 1 + 0.001 * (100 - t)), floored at 1e-8
  "linear_decay": (1e-8, 1.0, 2.0, 1.4, 1.2, 1.1, 1e-8),
}


@pytest.mark.parametrize("factor", sorted(T5X_VALUES))
def test_each_schedule_factor_equals_t5x_values(factor):
  schedule = opt.learning_rate_schedule(
    factors=factor,
    base_learning_rate=2.0,
    warmup_steps=100,
    decay_factor=0.001 if factor == "linear_decay" else 0.5,
    steps_per_decay=50,
    steps_per_cycle=200,
  )
  got = [float(schedule(jnp.int32(s))) for s in STEPS]
  np.testing.assert_allclose(got, T5X_VALUES[factor], rtol=1e-6, atol=1e-9, err_msg=factor)
  jitted = jax.jit(schedule)
  assert float(jitted(jnp.int32(STEPS[3]))) == pytest.approx(got[3], rel=1e-6)


def test_schedule_factors_multiply_and_step_offset_shifts_them():
  warm_rsqrt = opt.learning_rate_schedule(
    factors="constant * linear_warmup * rsqrt_decay",
    base_learning_rate=1.0,
    warmup_steps=100,
    step_offset=1000,
  )
  # t = max(0, step - 1000): nothing before the offset, then t5x's pretraining shape.
  assert float(warm_rsqrt(500)) == pytest.approx(1e-8)
  assert float(warm_rsqrt(1050)) == pytest.approx(0.5 * 0.1)
  assert float(warm_rsqrt(1400)) == pytest.approx(0.05)


def test_schedule_rejects_unknown_factors_and_zero_lengths():
  with pytest.raises(ValueError, match="rsqrt_decya"):
    opt.learning_rate_schedule(factors="constant * rsqrt_decya")
  with pytest.raises(ValueError, match="warmup_steps"):
    opt.learning_rate_schedule(factors="constant * linear_warmup", warmup_steps=0)
  with pytest.raises(ValueError, match="steps_per_cycle"):
    opt.learning_rate_schedule(factors="cosine_decay", steps_per_cycle=0)
  # A zero warmup is fine where no factor divides by it.
  constant = opt.learning_rate_schedule(factors="constant", warmup_steps=0)
  assert float(constant(5)) == pytest.approx(1e-3)


# ---------------------------------------------------------------------------- scanned layers

LAYERS = 3


def _layer_problem(seed=4):
  """One layer's params (factored, unfactored and 1-D) and 10 steps of gradients per layer.

  Layer i's gradients are scaled by 10**i and its params by 2**i, so any RMS or mean taken
  across layers instead of within each one changes the result.
  """
  rng = np.random.default_rng(seed)
  shapes = {"kernel": (128, 160), "narrow": (5, 130), "scale": (12,)}
  params = [
    {k: (rng.normal(size=s) * 2.0**i).astype(np.float32) for k, s in shapes.items()}
    for i in range(LAYERS)
  ]
  grads = [
    [
      {k: (rng.normal(size=s) * 10.0**i).astype(np.float32) for k, s in shapes.items()}
      for i in range(LAYERS)
    ]
    for _ in range(10)
  ]
  axes = {"kernel": ("embed", "mlp"), "narrow": (None, "mlp"), "scale": ("embed",)}
  return params, grads, axes


def _stack(per_layer):
  return {k: jnp.stack([jnp.asarray(layer[k]) for layer in per_layer]) for k in per_layer[0]}


def _train(tx, params, grads_per_step):
  state = tx.init(params)
  for step, grads in enumerate(grads_per_step):
    updates, state = tx.update(grads, state, params, step=jnp.int32(step))
    params = optax.apply_updates(params, updates)
  return params, state


def test_scanned_adafactor_equals_unrolled_layer_by_layer():
  params, grads, axes = _layer_problem()
  unrolled = {f"layers_{i}": params[i] for i in range(LAYERS)}
  unrolled_grads = [{f"layers_{i}": g[i] for i in range(LAYERS)} for g in grads]
  schedule = opt.learning_rate_schedule(factors="constant", base_learning_rate=0.05)
  want, want_state = _train(
    opt.adafactor(schedule),
    jax.tree.map(jnp.asarray, unrolled),
    jax.tree.map(jnp.asarray, unrolled_grads),
  )

  scanned_axes = {"layers": {k: P("layers", *a) for k, a in axes.items()}}
  tx = opt.adafactor(schedule, param_axes=scanned_axes)
  got, state = _train(tx, {"layers": _stack(params)}, [{"layers": _stack(g)} for g in grads])
  for i in range(LAYERS):
    for k in axes:
      np.testing.assert_allclose(
        got["layers"][k][i], want[f"layers_{i}"][k], rtol=2e-6, atol=1e-7, err_msg=f"layer {i} {k}"
      )
  # Per-layer moments: the stacked v_row/v_col are the unrolled ones, stacked.
  assert state.v_row["layers"]["kernel"].shape == (LAYERS, 128)
  np.testing.assert_allclose(
    state.v_col["layers"]["kernel"][2], want_state.v_col["layers_2"]["kernel"], rtol=1e-5
  )
  assert state.v["layers"]["narrow"].shape == (LAYERS, 5, 130)

  # Without the axes, the same stacked run mixes the layers' statistics: the test can fail.
  mixed, _ = _train(
    opt.adafactor(schedule), {"layers": _stack(params)}, [{"layers": _stack(g)} for g in grads]
  )
  assert not np.allclose(mixed["layers"]["kernel"][0], want["layers_0"]["kernel"], rtol=1e-3)


def test_factor_rule_treats_layers_as_a_batch_dim():
  rule = opt.factor_rule((4, 128, 512), ("layers", "embed", "mlp"))
  assert rule == opt.FactorRule(averaging_dims=(1, 2), factored=(1, 2))
  # [layers, mlp, embed] with embed the smaller dim: d1 = embed, d0 = mlp, per layer.
  assert opt.factor_rule((4, 1024, 512), ("layers", "mlp", "embed")).factored == (2, 1)
  # 130 layers must not make a [130, 128, 4] kernel factored over the layer axis.
  assert opt.factor_rule((130, 128, 4), ("layers", "embed", "heads")).factored is None
  assert opt.factor_rule((130, 128, 4)).factored == (1, 0)  # heuristic over all dims


def test_scanned_model_without_param_axes_is_refused():
  tx = opt.adafactor(1e-3)
  params = {"layers": {"kernel": np.zeros((2, 4, 4), np.float32)}}
  with pytest.raises(ValueError, match="param_axes=model.param_logical_specs"):
    tx.state_logical_specs({"layers": {"kernel": P("layers", "embed", "mlp")}}, params)


def test_scanned_state_specs_keep_the_layer_axis():
  params = {"layers": {"kernel": np.zeros((2, 128, 256), np.float32)}}
  specs = {"layers": {"kernel": P("layers", "embed", "mlp")}}
  s = opt.adafactor(1e-3, param_axes=specs).state_logical_specs(specs, params)
  assert s.v_row["layers"]["kernel"] == P("layers", "embed")
  assert s.v_col["layers"]["kernel"] == P("layers", "mlp")


def test_moment_specs_drop_the_reduced_axis_of_each_parameter():
  params, _ = _problem()
  specs = {
    "kernel": P("embed", "mlp"),
    "tall": P("vocab", "embed"),
    "narrow": P(None, "mlp"),
    "scale": P("embed"),
  }
  tx = opt.adafactor(1e-3)
  s = tx.state_logical_specs(specs, params)
  assert s.v_row["kernel"] == P("embed") and s.v_col["kernel"] == P("mlp")
  assert s.v_row["tall"] == P("embed") and s.v_col["tall"] == P("vocab")
  assert s.v["narrow"] == P(None, "mlp") and s.v["kernel"] == P(None)


@pytest.mark.slow  # two tiny-T5 compilations, ~40 s on 2 cores
def test_tiny_t5_scanned_trains_as_unrolled():
  """10 Adafactor steps of the real tiny T5, scanned vs unrolled, from the same weights.

  min_dim_size_to_factor=16 factors the tiny kernels, so factoring, clipping and parameter
  scale all run per layer.
  """
  from tiny_training import make_batch, tiny_model

  from flan.model import network

  unrolled_model = tiny_model(dropout_rate=0.0)
  config = network.T5Config(**{**unrolled_model.config.__dict__, "scan_layers": True})
  scanned_model = type(unrolled_model)(config)
  batches = [make_batch(0, i, 4) for i in range(10)]
  shapes = {k: v.shape for k, v in batches[0].items()}
  params = unrolled_model.init(jax.random.PRNGKey(0), shapes)

  def run(model, params):
    tx = opt.adafactor(0.05, min_dim_size_to_factor=16, param_axes=model.param_logical_specs())

    @jax.jit
    def step(params, state, batch, i):
      grads = jax.grad(lambda p: model.loss_fn(p, batch, None)[0])(params)
      updates, state = tx.update(grads, state, params, step=i)
      return optax.apply_updates(params, updates), state

    state = tx.init(params)
    for i, batch in enumerate(batches):
      params, state = step(params, state, batch, jnp.int32(i))
    return params

  with jax.default_matmul_precision("highest"):
    want = run(unrolled_model, params)
    got = network.unscan_layer_params(
      run(scanned_model, network.scan_layer_params(params, config)), config
    )
  moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), want, params)
  assert max(jax.tree.leaves(moved)) > 1e-3  # training moved the weights
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(want)[0], jax.tree.leaves(got)):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=2e-6, err_msg=jax.tree_util.keystr(path))
