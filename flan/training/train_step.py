"""The train state, born sharded, and the one pure jitted train step.

`make_train_step` returns `(state, batch, rng) -> (state, metrics)`: the only place
gradients are taken. Everything with side effects (logging, checkpoints, evaluation)
lives in the host loop of `flan.train`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from flan.errors import UserError
from flan.model import partitioning

NAN_POLICIES = ("stop", "skip")


class TrainState(flax.struct.PyTreeNode):
  """Everything a resume needs on device: no run state lives anywhere else.

  Attributes:
    step: int32 scalar, the number of updates applied (the global step t5x keys on).
    params: float32 parameter pytree.
    opt_state: the optimizer state (for Adafactor: the v_row/v_col/v moments).
  """

  step: jax.Array
  params: Any
  opt_state: Any


def state_logical_specs(model: Any, optimizer: Any, state_shapes: TrainState) -> TrainState:
  """Logical PartitionSpecs for every leaf of the train state.

  The optimizer's own `state_logical_specs` is used when it has one (flan's Adafactor);
  any other optax state is replicated.
  """
  param_specs = model.param_logical_specs()
  derive = getattr(optimizer, "state_logical_specs", None)
  if derive is not None:
    opt_specs = derive(param_specs, state_shapes.params)
  else:
    opt_specs = jax.tree.map(lambda _: P(), state_shapes.opt_state)
  return TrainState(step=P(), params=param_specs, opt_state=opt_specs)


def _init_fn(model: Any, optimizer: Any, batch_shapes: Mapping[str, tuple[int, ...]]):
  def init(rng, params):
    p = model.init(rng, batch_shapes) if params is None else jax.tree.map(jnp.asarray, params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=optimizer.init(p))

  return init


def train_state_shapes(
  model: Any,
  optimizer: Any,
  rng: jax.Array,
  batch_shapes: Mapping[str, tuple[int, ...]],
  params: Any = None,
) -> TrainState:
  """The train state's ShapeDtypeStructs, computing nothing."""
  return jax.eval_shape(_init_fn(model, optimizer, batch_shapes), rng, params)


def create_train_state(
  model: Any,
  optimizer: Any,
  mesh: Mesh,
  rng: jax.Array,
  batch_shapes: Mapping[str, tuple[int, ...]],
  *,
  fsdp: bool = False,
  params: Any = None,
) -> tuple[TrainState, TrainState]:
  """A fresh train state whose every shard is created in place on its devices.

  eval_shape -> logical specs -> shardings -> jit(init, out_shardings=...), so no host
  ever holds the full model.

  Args:
    model: an `EncoderDecoderModel` (init, param_logical_specs).
    optimizer: an optax transformation.
    mesh: the ("data", "model") mesh.
    rng: the init key.
    batch_shapes: feature name -> global shape, to trace `model.init`.
    fsdp: also shard parameters' "embed" axis over "data".
    params: optional initial parameters (e.g. imported weights) instead of `model.init`.

  Returns:
    (state, shardings): the state and the matching pytree of NamedSharding.
  """
  init = _init_fn(model, optimizer, batch_shapes)
  shapes = jax.eval_shape(init, rng, params)
  shardings = state_shardings(model, optimizer, mesh, shapes, fsdp=fsdp)
  with partitioning.activation_rules(mesh):
    # Imported params are an argument, not a closure constant baked into the program.
    state = jax.jit(init, out_shardings=shardings)(rng, params)
  return state, shardings


def state_shardings(
  model: Any, optimizer: Any, mesh: Mesh, shapes: TrainState, *, fsdp: bool = False
) -> TrainState:
  """NamedShardings of the train state on `mesh`, from the one rules table."""
  specs = state_logical_specs(model, optimizer, shapes)
  return partitioning.logical_to_sharding(
    specs, mesh, shapes=shapes, rules_table=partitioning.rules(fsdp=fsdp)
  )


def _split_microbatches(batch: Mapping[str, jax.Array], num: int) -> dict[str, jax.Array]:
  """[B, ...] -> [num, B/num, ...], strided so that every microbatch spans all data shards."""

  def split(x):
    b = x.shape[0]
    if b % num:
      raise UserError(f"batch of {b} is not divisible by NUM_MICROBATCHES={num}.")
    x = x.reshape((b // num, num) + x.shape[1:])  # [B/num, num, ...]
    return jnp.swapaxes(x, 0, 1)  # [num, B/num, ...]

  return {k: split(v) for k, v in batch.items()}


def _batch_statistics(batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
  """Token counts of the batch itself (the model's metrics cover loss and accuracy)."""
  enc = batch["encoder_input_tokens"]
  dec = batch["decoder_target_tokens"]
  weights = batch["decoder_loss_weights"]
  return {
    "num_encoder_tokens": jnp.sum(enc != 0).astype(jnp.float32),
    "num_decoder_tokens": jnp.sum(dec != 0).astype(jnp.float32),
    "num_loss_weights": jnp.sum(weights).astype(jnp.float32),
    "encoder_slots": jnp.float32(enc.size),
    "decoder_slots": jnp.float32(dec.size),
    "num_sequences": jnp.float32(dec.shape[0]),
    **{
      f"num_{side}_segments": _count_segments(batch[f"{side}_segment_ids"])
      for side in ("encoder", "decoder")
      if f"{side}_segment_ids" in batch
    },
  }


def _count_segments(segment_ids: jax.Array) -> jax.Array:
  """Packed examples in a [B, L] batch: positions where a non-zero segment id starts.

  t5x's `count_packed_examples` (behind `effective_batch_size/*`) counts the same.
  """
  previous = jnp.pad(segment_ids[:, :-1], ((0, 0), (1, 0)))  # [B, L], 0 before each row
  return jnp.sum((segment_ids != 0) & (segment_ids != previous)).astype(jnp.float32)


def make_train_step(
  model: Any,
  optimizer: Any,
  *,
  mesh: Mesh,
  shardings: TrainState,
  schedule: Callable[[jax.Array], jax.Array] | None = None,
  num_microbatches: int = 1,
  nan_policy: str = "stop",
) -> Callable[[TrainState, dict, jax.Array], tuple[TrainState, dict]]:
  """The jitted pure train step, state donated, shardings pinned.

  Args:
    model: an `EncoderDecoderModel`: `loss_normalizer(batch)` and
      `loss_fn(params, batch, dropout_rng, normalizer=) -> (loss, metrics)`.
    optimizer: an optax transformation; flan's Adafactor takes `step=` (global step).
    mesh: the mesh the state lives on.
    shardings: the state's NamedShardings (from `create_train_state`).
    schedule: step -> learning rate, only for the logged `learning_rate` metric.
    num_microbatches: > 1 accumulates float32 gradients over this many slices of the batch;
      the loss normaliser is the whole batch's, computed once, so the accumulated loss and
      gradient equal the whole batch's (t5x normalises each slice by its own, which differs).
    nan_policy: "stop" (the update is applied; the host loop raises on a non-finite loss)
      or "skip" (a non-finite loss or gradient leaves params and moments unchanged and
      counts in metrics["skipped_updates"]; the step still advances).

  Returns:
    step(state, batch, rng) -> (new_state, metrics): metrics are on-device float32 sums
    (loss, z_loss, cross_ent_loss, cross_ent_sum, accuracy = correct tokens, num_tokens,
    token counts)
    plus learning_rate, grad_norm, skipped_updates.
  """
  if nan_policy not in NAN_POLICIES:
    raise UserError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}.")
  grad_fn = jax.value_and_grad(model.loss_fn, has_aux=True)

  def micro_grads(params, batch, dropout_rng):
    normalizer = model.loss_normalizer(batch)  # the whole batch's, once
    if num_microbatches <= 1:
      (_, metrics), grads = grad_fn(params, batch, dropout_rng, normalizer=normalizer)
      return grads, metrics
    micro = _split_microbatches(batch, num_microbatches)

    def body(carry, xs):
      i, mb = xs
      mb = jax.lax.with_sharding_constraint(mb, NamedSharding(mesh, P("data")))
      (_, m), g = grad_fn(params, mb, jax.random.fold_in(dropout_rng, i), normalizer=normalizer)
      acc_g, acc_m = carry
      return (
        jax.tree.map(lambda a, x: a + x.astype(jnp.float32), acc_g, g),
        jax.tree.map(jnp.add, acc_m, m),
      ), None

    zeros_g = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
    first = jax.tree.map(lambda x: x[0], micro)
    m_shape = jax.eval_shape(
      lambda: grad_fn(params, first, dropout_rng, normalizer=normalizer)[0][1]
    )
    zeros_m = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), m_shape)
    (grads, metrics), _ = jax.lax.scan(
      body, (zeros_g, zeros_m), (jnp.arange(num_microbatches), micro)
    )
    return grads, metrics

  def step_fn(state: TrainState, batch: dict, rng: jax.Array):
    dropout_rng = jax.random.fold_in(rng, state.step)
    grads, metrics = micro_grads(state.params, batch, dropout_rng)
    grad_norm = optax.global_norm(grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params, step=state.step)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)
    if nan_policy == "skip":
      keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
      params, opt_state = keep(params, state.params), keep(opt_state, state.opt_state)
    metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
    metrics.update(_batch_statistics(batch))
    metrics["grad_norm"] = grad_norm.astype(jnp.float32)
    metrics["learning_rate"] = (
      schedule(state.step) if schedule is not None else jnp.float32(jnp.nan)
    )
    metrics["skipped_updates"] = jnp.where(finite, 0.0, 1.0) if nan_policy == "skip" else 0.0
    metrics["nonfinite"] = jnp.where(finite, 0.0, 1.0)
    new_state = TrainState(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, metrics

  replicated = NamedSharding(mesh, P())
  jitted = jax.jit(
    step_fn,
    in_shardings=(shardings, None, replicated),
    out_shardings=(shardings, replicated),
    donate_argnums=(0,),
  )

  def train_step(state: TrainState, batch: dict, rng: jax.Array):
    # Every input must already be on device (`shard_batch`): an implicit host-to-device
    # copy here would be a silent per-step stall, so it is an error instead.
    with partitioning.activation_rules(mesh), jax.transfer_guard_host_to_device("disallow"):
      return jitted(state, batch, rng)

  train_step.jitted = jitted  # for .lower(...) / cost analysis
  return train_step


class NonFiniteLossError(UserError, RuntimeError):
  """The loss or gradient norm became NaN/Inf with nan_policy="stop"."""


def check_finite(metrics: Mapping[str, Any], step: int) -> None:
  """Raises NonFiniteLossError naming `step` if that step's loss/grad was not finite.

  Called by the host loop one step behind, so it does not stall the device pipeline.
  """
  if float(np.asarray(jax.device_get(metrics["nonfinite"]))) > 0:
    loss = float(np.asarray(jax.device_get(metrics["loss"])))
    raise NonFiniteLossError(
      f"Non-finite loss ({loss}) or gradient at step {step}; stopping without saving "
      "(the last good checkpoint in MODEL_DIR is kept). Lower the learning rate, check the "
      "data, or run with NAN_POLICY='skip' to skip such updates."
    )


_all_finite = jax.jit(
  lambda tree: jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))
)


class NanGuard:
  """The host side of NAN_POLICY: when to stop, and whether a state may be saved.

  "stop": the first non-finite step raises (`check_finite`). "skip": skipped updates are
  counted; more than `max_consecutive_skips` in a row means the model has diverged (every
  step is skipped, the run would spin for nothing), so it raises. Either way a state is
  saved only when its parameters are finite (`check_state`): a NaN model never replaces,
  nor rotates out, the last good checkpoint.

  Args:
    nan_policy: "stop" or "skip".
    max_consecutive_skips: the longest run of skipped updates tolerated ("skip").
  """

  def __init__(self, nan_policy: str, max_consecutive_skips: int = 100):
    if max_consecutive_skips < 1:
      raise UserError(f"MAX_CONSECUTIVE_SKIPS must be >= 1, got {max_consecutive_skips}.")
    self.nan_policy, self.max_consecutive_skips = nan_policy, int(max_consecutive_skips)
    self.consecutive = 0
    self._last_step = -1

  def check(self, metrics: Mapping[str, Any], step: int) -> None:
    """Looks at `step`'s metrics once (later calls for the same step do nothing)."""
    if step <= self._last_step:
      return
    self._last_step = step
    if self.nan_policy == "stop":
      check_finite(metrics, step)
      return
    skipped = float(np.asarray(jax.device_get(metrics["skipped_updates"]))) > 0
    self.consecutive = self.consecutive + 1 if skipped else 0
    if self.consecutive > self.max_consecutive_skips:
      raise NonFiniteLossError(
        f"{self.consecutive} consecutive updates skipped (steps {step - self.consecutive + 1}"
        f"-{step}): the model has diverged; stopping without saving (the last good checkpoint "
        "in MODEL_DIR is kept). Lower the learning rate or check the data; "
        "MAX_CONSECUTIVE_SKIPS sets the limit."
      )

  def check_state(self, state: Any, step: int) -> None:
    """Raises NonFiniteLossError if `state`'s parameters are not all finite."""
    if not bool(jax.device_get(_all_finite(state.params))):
      raise NonFiniteLossError(
        f"The parameters are not finite at step {step}; not saving them (the last good "
        "checkpoint in MODEL_DIR is kept). Lower the learning rate or check the data."
      )
