"""Adafactor against a direct numpy transcription of t5x's rule; the LR schedules."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from flan.training import optimizer as opt


def _t5x_reference(params, grads_per_step, lr_fn, *, decay=0.8, clip=1.0, eps1=1e-30,
                   eps2=1e-3, min_dim=128):
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
        y = g * np.expand_dims(r, d0) * np.expand_dims(vc ** -0.5, d1)
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
      "kernel": rng.normal(size=(128, 256)).astype(np.float32),   # factored (d1=0, d0=1)
      "tall": rng.normal(size=(300, 130)).astype(np.float32),     # factored (d1=1, d0=0)
      "narrow": rng.normal(size=(3, 300)).astype(np.float32),     # unfactored: 3 < 128
      "scale": np.full((16,), 1e-4, np.float32),                  # rms below the 1e-3 floor
  }
  grads = [{k: rng.normal(size=v.shape).astype(np.float32) * (i + 1) for k, v in params.items()}
           for i in range(3)]
  return params, grads


@pytest.mark.parametrize("factors", ["constant", "constant * rsqrt_decay"])
def test_adafactor_three_steps_equal_the_t5x_rule_in_numpy(factors):
  params, grads = _problem()
  schedule = opt.learning_rate_schedule(factors=factors, base_learning_rate=0.01,
                                        warmup_steps=2)
  tx = opt.adafactor(schedule)
  p = jax.tree.map(jnp.asarray, params)
  state = tx.init(p)
  for step, g in enumerate(grads):
    updates, state = tx.update(jax.tree.map(jnp.asarray, g), state, p, step=jnp.int32(step))
    p = optax.apply_updates(p, updates)
  expected = _t5x_reference(params, grads, lambda s: float(schedule(s)))
  for name in params:
    np.testing.assert_allclose(np.asarray(p[name]), expected[name], rtol=2e-5, atol=1e-7,
                               err_msg=name)
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
  beta_early = 1 - 2.0 ** -0.8
  g2 = np.square(np.asarray(g1["narrow"], np.float64)) + 1e-30
  np.testing.assert_allclose(early.v["narrow"],
                             beta_early * state.v["narrow"] + (1 - beta_early) * g2, rtol=1e-5)
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


def test_schedules_follow_t5x_factors():
  const = opt.learning_rate_schedule(factors="constant", base_learning_rate=1e-3)
  assert float(const(0)) == pytest.approx(1e-3) and float(const(10**6)) == pytest.approx(1e-3)
  warm = opt.learning_rate_schedule(factors="constant * linear_warmup", base_learning_rate=1.0,
                                    warmup_steps=100)
  assert float(warm(50)) == pytest.approx(0.5) and float(warm(500)) == pytest.approx(1.0)
  rsqrt = opt.learning_rate_schedule(factors="constant * rsqrt_decay", base_learning_rate=1.0,
                                     warmup_steps=10_000)
  assert float(rsqrt(0)) == pytest.approx(0.01) and float(rsqrt(40_000)) == pytest.approx(0.005)
  cos = opt.learning_rate_schedule(factors="constant * linear_warmup * cosine_decay",
                                   base_learning_rate=1.0, warmup_steps=10, decay_steps=100)
  assert float(cos(10)) == pytest.approx(1.0)
  assert float(cos(60)) == pytest.approx(0.5, abs=1e-6)
  assert float(cos(110)) == pytest.approx(1e-8)
  with pytest.raises(ValueError, match="rsqrt_decya"):
    opt.learning_rate_schedule(factors="constant * rsqrt_decya")


def test_moment_specs_drop_the_reduced_axis_of_each_parameter():
  params, _ = _problem()
  specs = {"kernel": P("embed", "mlp"), "tall": P("vocab", "embed"), "narrow": P(None, "mlp"),
           "scale": P("embed")}
  tx = opt.adafactor(1e-3)
  s = tx.state_logical_specs(specs, params)
  assert s.v_row["kernel"] == P("embed") and s.v_col["kernel"] == P("mlp")
  assert s.v_row["tall"] == P("embed") and s.v_col["tall"] == P("vocab")
  assert s.v["narrow"] == P(None, "mlp") and s.v["kernel"] == P(None)
