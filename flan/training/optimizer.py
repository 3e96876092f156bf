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
Dims named "layers" (a scanned stack, from the params' logical axes) are batch dims, as in
t5x's factor rules: every mean and RMS above is taken within each layer (`factor_rule`).
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

FACTORS = (
  "constant",
  "linear_warmup",
  "linear_decay",
  "rsqrt_decay",
  "rsqrt_normalized_decay",
  "decay_every",
  "cosine_decay",
)


def learning_rate_schedule(
  *,
  factors: str = "constant",
  base_learning_rate: float = 1e-3,
  warmup_steps: int = 1000,
  decay_factor: float = 0.5,
  steps_per_decay: int = 20_000,
  steps_per_cycle: int = 100_000,
  step_offset: int = 0,
  min_learning_rate: float = 1e-8,
) -> Schedule:
  """t5x's `create_learning_rate_scheduler`: the product of the `*`-separated `factors`.

  With t = max(0, step - step_offset) and w = warmup_steps, each factor multiplies by
  (t5x's names, formulas and argument defaults, except `factors` and `base_learning_rate`,
  which default to t5x's finetune.gin):
    constant                base_learning_rate
    linear_warmup           min(1, t / w)
    linear_decay            base_learning_rate * min(t / w, 1 + decay_factor * (w - t)):
                            warmup then a straight line of slope -decay_factor per step; it
                            implies `constant * linear_warmup`, so use it alone
    rsqrt_decay             1 / sqrt(max(t, w))
    rsqrt_normalized_decay  sqrt(w) / sqrt(max(t, w)), so 1 until w
    decay_every             decay_factor ** (t // steps_per_decay)
    cosine_decay            max(0, (1 + cos(pi * (p % 1))) / 2), p = max(0, (t - w) /
                            steps_per_cycle): cyclic, back to 1 at every cycle's start
  and the product is floored at min_learning_rate. t5x's finetune.gin is `constant` at 1e-3
  (its warmup_steps is inert there); pretrain.gin is `constant * rsqrt_decay` with base 1.0
  and warmup 10000.

  Where t5x divides by zero (w = 0 with a factor that divides by it, steps_per_decay or
  steps_per_cycle = 0 where used) it returns nan or inf; we refuse those arguments instead.

  Returns:
    A function step -> float32 learning rate, jit-friendly.

  Raises:
    ValueError: an unknown factor, or a zero/negative length that a chosen factor divides by.
  """
  if isinstance(base_learning_rate, bool) or not isinstance(base_learning_rate, (int, float)):
    raise UserError(
      f"LEARNING_RATE must be a number, got {base_learning_rate!r} "
      f"({type(base_learning_rate).__name__}); set --gin.LEARNING_RATE=1e-3 or so."
    )
  names = [f.strip() for f in factors.split("*") if f.strip()]
  unknown = [n for n in names if n not in FACTORS]
  if unknown or not names:
    raise UserError(
      f"Unknown learning-rate factor(s) {unknown or factors!r} in {factors!r}; "
      f"use a '*'-product of {', '.join(FACTORS)}."
    )
  needs = {
    "warmup_steps": (
      {"linear_warmup", "linear_decay", "rsqrt_decay", "rsqrt_normalized_decay"},
      warmup_steps,
    ),
    "steps_per_decay": ({"decay_every"}, steps_per_decay),
    "steps_per_cycle": ({"cosine_decay"}, steps_per_cycle),
  }
  for arg, (users, value) in needs.items():
    used = sorted(users & set(names))
    if used and value <= 0:
      raise UserError(
        f"Learning-rate factor(s) {', '.join(used)} divide by {arg}, which is "
        f"{value}; set it to a positive number of steps."
      )

  def schedule(step):
    t_int = jnp.maximum(0, jnp.asarray(step, jnp.int32) - step_offset)  # int, as t5x's step
    t = t_int.astype(jnp.float32)
    lr = jnp.float32(1.0)
    for name in names:
      if name == "constant":
        lr = lr * base_learning_rate
      elif name == "linear_warmup":
        lr = lr * jnp.minimum(1.0, t / warmup_steps)
      elif name == "linear_decay":
        lr = (
          lr
          * base_learning_rate
          * jnp.minimum(t / warmup_steps, 1.0 + decay_factor * (warmup_steps - t))
        )
      elif name == "rsqrt_decay":
        lr = lr / jnp.sqrt(jnp.maximum(t, warmup_steps))
      elif name == "rsqrt_normalized_decay":
        lr = lr * math.sqrt(warmup_steps) / jnp.sqrt(jnp.maximum(t, warmup_steps))
      elif name == "decay_every":
        lr = lr * decay_factor ** (t_int // steps_per_decay).astype(jnp.float32)
      elif name == "cosine_decay":
        progress = jnp.maximum(0.0, (t - warmup_steps) / float(steps_per_cycle))
        lr = lr * jnp.maximum(0.0, 0.5 * (1.0 + jnp.cos(jnp.pi * (progress % 1.0))))
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


# Logical axes that stack independent parameters (t5x's standard_logical_factor_rules marks
# them FactorDim.BATCH): "layers" is the axis `nn.scan` adds under SCAN_LAYERS.
BATCH_AXES = ("layers", "stack")


class FactorRule(NamedTuple):
  """How one parameter's statistics are taken (t5x's `_parse_rule` result).

  Attributes:
    averaging_dims: the dims every RMS (update clipping, parameter scale) averages over:
      all but the batch dims, so a stacked [layers, ...] parameter gets one RMS per layer.
    factored: (d1, d0), the second-largest and largest non-batch dims, when the second
      moment is factored; else None.
  """

  averaging_dims: tuple[int, ...]
  factored: tuple[int, int] | None


def factored_dims(
  shape: tuple[int, ...], *, min_dim_size_to_factor: int = 128
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


def factor_rule(
  shape: tuple[int, ...],
  axes: tuple[str | None, ...] = (),
  *,
  factored: bool = True,
  min_dim_size_to_factor: int = 128,
) -> FactorRule:
  """The statistics of one parameter of `shape` whose dims are named `axes` (logical names).

  Dims named in `BATCH_AXES` are batch dims, as in t5x: no mean runs over them, so each
  slice along them (each layer of a scanned stack) is clipped, scaled and factored exactly
  as the same unstacked parameter would be. The other dims follow the heuristic of
  `factored_dims`.

  t5x differs in one corner, on purpose here: with logical factor rules it factors a
  stacked kernel along its named ROW ("embed") and COLUMN ("mlp", "heads", ...) dims even
  when one is under `min_dim_size_to_factor`, where the same unstacked kernel (rank 2, no
  batch dim) falls back to the heuristic and stays unfactored. Applying the heuristic per
  slice keeps scanned and unrolled training equal; they differ from t5x only for kernels
  with a dim under 128 (none in the T5 1.1 sizes; row/column order does not change the
  factored estimate).
  """
  axes = tuple(axes) + (None,) * (len(shape) - len(axes))
  batch = tuple(i for i, a in enumerate(axes) if a in BATCH_AXES)
  inner = tuple(i for i in range(len(shape)) if i not in batch)
  dims = None
  if factored:
    d = factored_dims(tuple(shape[i] for i in inner), min_dim_size_to_factor=min_dim_size_to_factor)
    dims = None if d is None else (inner[d[0]], inner[d[1]])
  return FactorRule(averaging_dims=inner, factored=dims)


def _rms(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
  """sqrt(mean(x**2)) over `axes`, kept as size-1 dims (one RMS per batch slice)."""
  return jnp.sqrt(jnp.mean(jnp.square(x), axis=axes, keepdims=True))


def _decay_rate(step: jax.Array, exponent: float) -> jax.Array:
  """beta2_t = 1 - (t + 1) ** -exponent: 0 at step 0, so the first update is sign-like."""
  t = jnp.asarray(step, jnp.float32) + 1.0
  return 1.0 - t ** (-exponent)


def _axes_by_path(param_axes: Any) -> dict[str, tuple[str | None, ...]]:
  """`{keystr(path): axis names}` from a pytree of logical PartitionSpecs (or name tuples)."""
  is_spec = lambda x: (
    isinstance(x, P) or (isinstance(x, tuple) and all(a is None or isinstance(a, str) for a in x))
  )
  flat, _ = jax.tree_util.tree_flatten_with_path(param_axes, is_leaf=is_spec)
  return {jax.tree_util.keystr(path): tuple(spec) for path, spec in flat}


def adafactor(
  learning_rate: Schedule | float = 1e-3,
  *,
  decay_rate: float = 0.8,
  step_offset: int = 0,
  clipping_threshold: float | None = 1.0,
  multiply_by_parameter_scale: bool = True,
  epsilon1: float = 1e-30,
  epsilon2: float = 1e-3,
  min_dim_size_to_factor: int = 128,
  factored: bool = True,
  global_norm_clip: float | None = None,
  param_axes: Any = None,
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
    param_axes: the parameters' logical axis names, a pytree of PartitionSpecs matching the
      params (`model.param_logical_specs()`), as t5x's `set_param_axes`. Dims named
      "layers" (scanned stacks) are batch dims, so statistics are per layer (see
      `factor_rule`). None: no batch dims, right for unrolled layers only.

  Returns:
    An optax transformation whose `update(grads, state, params, *, step)` needs `params`
    and the global `step` (an int32 scalar, the step BEFORE this update); its
    `learning_rate_schedule` is the schedule it follows (the trainer logs it).
  """
  schedule = learning_rate if callable(learning_rate) else (lambda _: jnp.float32(learning_rate))
  axes_by_path = None if param_axes is None else _axes_by_path(param_axes)

  def rules(params) -> list[FactorRule]:
    """One FactorRule per leaf of `params`, in `jax.tree.leaves` order (static: shapes)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    out = []
    for path, p in flat:
      axes = ()
      if axes_by_path is not None:
        key = jax.tree_util.keystr(path)
        if key not in axes_by_path:
          raise ValueError(
            f"adafactor(param_axes=...) has no logical axes for parameter {key}; "
            "pass the model's param_logical_specs() for the same parameters."
          )
        axes = axes_by_path[key]
      out.append(
        factor_rule(
          tuple(p.shape), axes, factored=factored, min_dim_size_to_factor=min_dim_size_to_factor
        )
      )
    return out

  def init_fn(params):
    leaves, treedef = jax.tree.flatten(params)
    v_row, v_col, v = [], [], []
    for p, rule in zip(leaves, rules(params)):
      if rule.factored:
        d1, d0 = rule.factored
        v_row.append(jnp.zeros(p.shape[:d0] + p.shape[d0 + 1 :], jnp.float32))
        v_col.append(jnp.zeros(p.shape[:d1] + p.shape[d1 + 1 :], jnp.float32))
        v.append(jnp.zeros((1,), jnp.float32))
      else:
        v_row.append(jnp.zeros((1,), jnp.float32))
        v_col.append(jnp.zeros((1,), jnp.float32))
        v.append(jnp.zeros(p.shape, jnp.float32))
    return AdafactorState(*(treedef.unflatten(x) for x in (v_row, v_col, v)))

  def one(rule, g, p, v_row, v_col, v, beta, lr):
    g = g.astype(jnp.float32)
    g2 = jnp.square(g) + epsilon1
    if rule.factored:
      d1, d0 = rule.factored
      v_row = beta * v_row + (1.0 - beta) * jnp.mean(g2, axis=d0)  # d0 gone
      v_col = beta * v_col + (1.0 - beta) * jnp.mean(g2, axis=d1)  # d1 gone
      row_axis = d1 - 1 if d1 > d0 else d1  # d1's index once d0 is gone
      row_factor = (v_row / jnp.mean(v_row, axis=row_axis, keepdims=True)) ** -0.5
      y = g * jnp.expand_dims(row_factor, d0) * jnp.expand_dims(v_col**-0.5, d1)
    else:
      v = beta * v + (1.0 - beta) * g2
      y = g * v**-0.5
    if clipping_threshold is not None:
      y = y / jnp.maximum(1.0, _rms(y, rule.averaging_dims) / clipping_threshold)
    scale = lr
    if multiply_by_parameter_scale:
      scale = scale * jnp.maximum(_rms(p.astype(jnp.float32), rule.averaging_dims), epsilon2)
    return (-scale * y).astype(p.dtype), v_row, v_col, v

  def update_fn(grads, state, params=None, *, step=None, **unused_extra_args):
    if params is None or step is None:
      raise ValueError("flan's adafactor needs update(grads, state, params, step=global_step).")
    if global_norm_clip is not None:
      norm = optax.global_norm(grads)
      grads = jax.tree.map(lambda g: g * jnp.minimum(1.0, global_norm_clip / (norm + 1e-12)), grads)
    beta = _decay_rate(jnp.asarray(step) - step_offset, decay_rate)
    lr = schedule(step)
    treedef = jax.tree.structure(params)
    columns = [treedef.flatten_up_to(x) for x in (grads, params, state.v_row, state.v_col, state.v)]
    out = [one(rule, *leaf, beta, lr) for rule, *leaf in zip(rules(params), *columns)]
    updates, v_row, v_col, v = (treedef.unflatten([o[i] for o in out]) for i in range(4))
    return updates, AdafactorState(v_row=v_row, v_col=v_col, v=v)

  tx = Adafactor(init_fn, update_fn)
  tx.state_logical_specs = lambda specs, params: _state_logical_specs(
    specs, params, rules, has_axes=param_axes is not None
  )
  tx.learning_rate_schedule = schedule
  return tx


class Adafactor(optax.GradientTransformationExtraArgs):
  """The transformation, carrying `state_logical_specs(param_specs, params)`.

  `v` takes its parameter's logical axes; `v_row`/`v_col` take the parameter's axes minus
  the reduced dimension (t5x replicates them; sharding them is free and saves memory).
  The trainer uses it to create the optimizer state already sharded.
  """


def _state_logical_specs(
  param_specs: Any, params: Any, rules: Callable, *, has_axes: bool
) -> AdafactorState:
  treedef = jax.tree.structure(params)
  specs = treedef.flatten_up_to(param_specs)
  if not has_axes:
    stacked = [s for s in specs if any(a in BATCH_AXES for a in tuple(s))]
    if stacked:
      raise ValueError(
        f"The model stacks parameters along {BATCH_AXES} (e.g. {stacked[0]}) "
        "but adafactor was built without param_axes, so its statistics would "
        "mix layers; build it with param_axes=model.param_logical_specs()."
      )
  v_row, v_col, v = [], [], []
  for spec, p, rule in zip(specs, treedef.flatten_up_to(params), rules(params)):
    axes = tuple(spec) + (None,) * (len(p.shape) - len(tuple(spec)))
    if rule.factored is None:
      v_row.append(P(None))
      v_col.append(P(None))
      v.append(spec)
    else:
      d1, d0 = rule.factored
      v_row.append(P(*(a for i, a in enumerate(axes) if i != d0)))
      v_col.append(P(*(a for i, a in enumerate(axes) if i != d1)))
      v.append(P(None))
  return AdafactorState(*(treedef.unflatten(x) for x in (v_row, v_col, v)))


def make_optimizer(
  *,
  learning_rate_factors: str = "constant",
  base_learning_rate: float = 1e-3,
  warmup_steps: int = 1000,
  decay_factor: float = 0.5,
  steps_per_decay: int = 20_000,
  steps_per_cycle: int = 100_000,
  min_learning_rate: float = 1e-8,
  global_norm_clip: float | None = None,
  param_axes: Any = None,
) -> tuple[optax.GradientTransformationExtraArgs, Schedule]:
  """Adafactor on a t5x schedule, and that schedule: (optimizer, schedule).

  A shorthand for library callers; a gin run builds the same from `adafactor` and
  `learning_rate_schedule` (the OPTIMIZER macro of configs/runs/finetune.gin).

  Args:
    learning_rate_factors, base_learning_rate, warmup_steps, decay_factor, steps_per_decay,
      steps_per_cycle, min_learning_rate: `learning_rate_schedule`'s (t5x's) arguments.
    global_norm_clip: see `adafactor`.
    param_axes: the model's `param_logical_specs()`; needed when layers are scanned.

  Adafactor's own constants keep t5x's defaults.
  """
  schedule = learning_rate_schedule(
    factors=learning_rate_factors,
    base_learning_rate=base_learning_rate,
    warmup_steps=warmup_steps,
    decay_factor=decay_factor,
    steps_per_decay=steps_per_decay,
    steps_per_cycle=steps_per_cycle,
    min_learning_rate=min_learning_rate,
  )
  return adafactor(schedule, global_norm_clip=global_norm_clip, param_axes=param_axes), schedule
