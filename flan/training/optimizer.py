"""Adafactor exactly as t5x runs it, as an optax transformation, plus t5x's LR schedules.

Why our own transformation instead of `optax.adafactor`: the per-parameter algebra is the
same, but t5x keys both the second-moment decay (beta2_t = 1 - (t + 1) ** -0.8) and the
learning rate on the GLOBAL train step, which is checkpointed and imported with the
weights. `optax.adafactor` keys beta2 on a private counter in its own state, which drifts
from the train step as soon as an update is skipped (NaN "skip" mode) or a checkpoint
brings a step without that counter. Here the step is an explicit argument of `update`
(`optimizer.update(grads, state, params, step=step)`), so the rule reads the same as
t5x's `adafactor.py`, and the state holds only the moments, named as t5x names them
(`v_row`, `v_col`, `v`).

Per parameter p with gradient g (float32):
  g2 = g**2 + epsilon1
  factored (two largest dims d1 < d0 by size, the smaller >= 128):
    v_row = b*v_row + (1-b)*mean(g2, d0);  v_col = b*v_col + (1-b)*mean(g2, d1)
    y = g * (v_row / mean(v_row))**-1/2 * v_col**-1/2
  otherwise: v = b*v + (1-b)*g2;  y = g * v**-1/2
  y /= max(1, rms(y) / clipping_threshold)
  update = -lr * max(rms(p), epsilon2) * y
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

from flan.errors import UserError

Schedule = Callable[[jax.Array], jax.Array]


# ---------------------------------------------------------------------------- schedules


def learning_rate_schedule(*, factors: str = "constant", base_learning_rate: float = 1e-3,
                           warmup_steps: int = 1000, decay_steps: int = 100_000,
                           step_offset: int = 0, min_learning_rate: float = 1e-8) -> Schedule:
  """t5x's composable schedule: the product of the `*`-separated `factors`.

  Factors (t5x names): `constant` (base_learning_rate), `linear_warmup` (min(1, t/warmup)),
  `rsqrt_decay` (1/sqrt(max(t, warmup))), `rsqrt_normalized_decay` (sqrt(warmup) times
  rsqrt_decay, so it starts at 1), `linear_decay` (1 -> 0 over decay_steps after warmup)
  and `cosine_decay` (one half-cosine cycle of decay_steps after warmup). t counts from
  `step_offset`. t5x's finetune.gin is `constant` at 1e-3 (its warmup_steps is inert there);
  pretrain.gin is `constant * rsqrt_decay` with base 1.0 and warmup 10000.

  Returns:
    A function step -> float32 learning rate, jit-friendly, floored at min_learning_rate.
  """
  if isinstance(base_learning_rate, bool) or not isinstance(base_learning_rate, (int, float)):
    raise UserError(f"LEARNING_RATE must be a number, got {base_learning_rate!r} "
                    f"({type(base_learning_rate).__name__}); set --gin.LEARNING_RATE=1e-3 or so.")
  names = [f.strip() for f in factors.split("*") if f.strip()]
  known = {"constant", "linear_warmup", "rsqrt_decay", "rsqrt_normalized_decay",
           "linear_decay", "cosine_decay"}
  unknown = [n for n in names if n not in known]
  if unknown or not names:
    raise ValueError(f"Unknown learning-rate factor(s) {unknown or factors!r} in {factors!r}; "
                     f"use a '*'-product of {sorted(known)}.")

  def schedule(step):
    t = jnp.maximum(0.0, jnp.asarray(step, jnp.float32) - step_offset)
    warm = float(max(warmup_steps, 1))
    lr = jnp.float32(1.0)
    for name in names:
      if name == "constant":
        lr = lr * base_learning_rate
      elif name == "linear_warmup":
        lr = lr * jnp.minimum(1.0, t / warm)
      elif name == "rsqrt_decay":
        lr = lr / jnp.sqrt(jnp.maximum(t, warm))
      elif name == "rsqrt_normalized_decay":
        lr = lr * math.sqrt(warm) / jnp.sqrt(jnp.maximum(t, warm))
      elif name == "linear_decay":
        lr = lr * jnp.clip(1.0 - (t - warmup_steps) / decay_steps, 0.0, 1.0)
      elif name == "cosine_decay":
        progress = jnp.clip((t - warmup_steps) / decay_steps, 0.0, 1.0)
        lr = lr * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    return jnp.maximum(lr, min_learning_rate).astype(jnp.float32)

  return schedule


# ---------------------------------------------------------------------------- adafactor


class AdafactorState(NamedTuple):
  """Second moments, each a pytree shaped like the params (t5x's slot names).

  For a factored parameter `v` is a [1] placeholder; otherwise `v_row`/`v_col` are.
  """
  v_row: Any
  v_col: Any
  v: Any


def factored_dims(shape: tuple[int, ...], *, min_dim_size_to_factor: int = 128
                  ) -> tuple[int, int] | None:
  """(d1, d0): the second-largest and largest dims, when factoring applies; else None.

  t5x's heuristic (which its logical factor rules fall back to for every 2-D T5 kernel):
  ties keep index order, so for a square kernel d1 = 0 and d0 = 1.
  """
  if len(shape) < 2:
    return None
  order = sorted(range(len(shape)), key=lambda i: (shape[i], i))
  if shape[order[-2]] < min_dim_size_to_factor:
    return None
  return order[-2], order[-1]


def _rms(x: jax.Array) -> jax.Array:
  return jnp.sqrt(jnp.mean(jnp.square(x)))


def _decay_rate(step: jax.Array, exponent: float) -> jax.Array:
  """beta2_t = 1 - (t + 1) ** -exponent: 0 at step 0, so the first update is sign-like."""
  t = jnp.asarray(step, jnp.float32) + 1.0
  return 1.0 - t ** (-exponent)


def adafactor(learning_rate: Schedule | float = 1e-3, *, decay_rate: float = 0.8,
              step_offset: int = 0, clipping_threshold: float | None = 1.0,
              multiply_by_parameter_scale: bool = True, epsilon1: float = 1e-30,
              epsilon2: float = 1e-3, min_dim_size_to_factor: int = 128,
              factored: bool = True, global_norm_clip: float | None = None
              ) -> optax.GradientTransformationExtraArgs:
  """t5x's Adafactor (no momentum, no weight decay) with an explicit global step.

  Args:
    learning_rate: a schedule step -> lr (see `learning_rate_schedule`) or a constant.
    decay_rate: exponent of the beta2 schedule, keyed on `step - step_offset`.
    step_offset: subtracted from the global step before the decay rule.
    clipping_threshold: clip each parameter's update to this RMS (None: off).
    multiply_by_parameter_scale: scale updates by max(rms(param), epsilon2).
    epsilon1: added to squared gradients.
    epsilon2: floor of the parameter scale.
    min_dim_size_to_factor: factor second moments when the second-largest dim >= this.
    factored: False stores full second moments for every parameter.
    global_norm_clip: if set, clip the gradients' global norm before the statistics
      (t5x's `global_norm_clip_threshold`).

  Returns:
    An optax transformation whose `update(grads, state, params, *, step)` needs `params`
    and the global `step` (an int32 scalar, the step BEFORE this update); its
    `learning_rate_schedule` is the schedule it follows (the trainer logs it).
  """
  schedule = learning_rate if callable(learning_rate) else (lambda _: jnp.float32(learning_rate))

  def dims(shape):
    return factored_dims(shape, min_dim_size_to_factor=min_dim_size_to_factor) if factored else None

  def init_fn(params):
    def row(p):
      d = dims(p.shape)
      return jnp.zeros(p.shape[:d[1]] + p.shape[d[1] + 1:] if d else (1,), jnp.float32)

    def col(p):
      d = dims(p.shape)
      return jnp.zeros(p.shape[:d[0]] + p.shape[d[0] + 1:] if d else (1,), jnp.float32)

    def full(p):
      return jnp.zeros((1,) if dims(p.shape) else p.shape, jnp.float32)

    return AdafactorState(v_row=jax.tree.map(row, params), v_col=jax.tree.map(col, params),
                          v=jax.tree.map(full, params))

  def update_fn(grads, state, params=None, *, step=None, **unused_extra_args):
    if params is None or step is None:
      raise ValueError("flan's adafactor needs update(grads, state, params, step=global_step).")
    if global_norm_clip is not None:
      norm = optax.global_norm(grads)
      grads = jax.tree.map(lambda g: g * jnp.minimum(1.0, global_norm_clip / (norm + 1e-12)), grads)
    beta = _decay_rate(jnp.asarray(step) - step_offset, decay_rate)
    lr = schedule(step)

    def one(g, p, v_row, v_col, v):
      g = g.astype(jnp.float32)
      g2 = jnp.square(g) + epsilon1
      d = dims(g.shape)
      if d is not None:
        d1, d0 = d
        v_row = beta * v_row + (1.0 - beta) * jnp.mean(g2, axis=d0)
        v_col = beta * v_col + (1.0 - beta) * jnp.mean(g2, axis=d1)
        row_axis = d1 - 1 if d1 > d0 else d1  # d1's index once d0 is gone
        row_factor = (v_row / jnp.mean(v_row, axis=row_axis, keepdims=True)) ** -0.5
        y = g * jnp.expand_dims(row_factor, d0) * jnp.expand_dims(v_col ** -0.5, d1)
      else:
        v = beta * v + (1.0 - beta) * g2
        y = g * v ** -0.5
      if clipping_threshold is not None:
        y = y / jnp.maximum(1.0, _rms(y) / clipping_threshold)
      scale = lr
      if multiply_by_parameter_scale:
        scale = scale * jnp.maximum(_rms(p.astype(jnp.float32)), epsilon2)
      return (-scale * y).astype(p.dtype), v_row, v_col, v

    out = jax.tree.map(one, grads, params, state.v_row, state.v_col, state.v)
    treedef = jax.tree.structure(grads)
    leaves = treedef.flatten_up_to(out)
    updates, v_row, v_col, v = (treedef.unflatten([leaf[i] for leaf in leaves]) for i in range(4))
    return updates, AdafactorState(v_row=v_row, v_col=v_col, v=v)

  tx = Adafactor(init_fn, update_fn)
  tx.state_logical_specs = lambda specs, params: _state_logical_specs(specs, params, dims)
  tx.learning_rate_schedule = schedule
  return tx


class Adafactor(optax.GradientTransformationExtraArgs):
  """The transformation, carrying `state_logical_specs(param_specs, params)`.

  `v` takes its parameter's logical axes; `v_row`/`v_col` take the parameter's axes minus
  the reduced dimension (t5x replicates them; sharding them is free and saves memory).
  The trainer uses it to create the optimizer state already sharded.
  """


def _state_logical_specs(param_specs: Any, params: Any, dims: Callable) -> AdafactorState:
  def drop(spec, shape, which):
    d = dims(shape)
    if d is None:
      return P(None) if which != "v" else spec
    if which == "v":
      return P(None)
    axes = tuple(spec) + (None,) * (len(shape) - len(spec))
    gone = d[1] if which == "v_row" else d[0]
    return P(*(a for i, a in enumerate(axes) if i != gone))

  is_spec = lambda x: isinstance(x, P)
  shapes = jax.tree.map(lambda x: tuple(x.shape), params)
  make = lambda which: jax.tree.map(lambda s, sh: drop(s, sh, which), param_specs, shapes,
                                    is_leaf=is_spec)
  return AdafactorState(v_row=make("v_row"), v_col=make("v_col"), v=make("v"))


def make_optimizer(*, learning_rate_factors: str = "constant", base_learning_rate: float = 1e-3,
                   warmup_steps: int = 1000, decay_steps: int = 100_000,
                   min_learning_rate: float = 1e-8, global_norm_clip: float | None = None
                   ) -> tuple[optax.GradientTransformationExtraArgs, Schedule]:
  """Adafactor (t5x defaults) on a t5x schedule, and that schedule: (optimizer, schedule).

  A shorthand for library callers; a gin run builds the same from `adafactor` and
  `learning_rate_schedule` (the OPTIMIZER macro of configs/runs/finetune.gin).
  """
  schedule = learning_rate_schedule(factors=learning_rate_factors,
                                    base_learning_rate=base_learning_rate,
                                    warmup_steps=warmup_steps, decay_steps=decay_steps,
                                    min_learning_rate=min_learning_rate)
  return adafactor(schedule, global_norm_clip=global_norm_clip), schedule
