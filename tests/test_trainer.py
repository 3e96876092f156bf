"""The train state is born sharded by the rules; the step is mesh-independent; NaN handling.

The mesh-equivalence and sharding tests train the real tiny T5; the microbatch, FSDP and NaN
tests check the step's own arithmetic on the one-block stand-in (much faster to compile).
"""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from tiny_training import (
  LENGTHS,
  PoisonedModel,
  StandInConfig,
  StandInModel,
  SyntheticIterator,
  make_batch,
  tiny_model,
)

from flan.model import partitioning
from flan.training import optimizer as optimizer_lib
from flan.training import train_step as trainer

jax.config.update("jax_default_matmul_precision", "highest")

BATCH = 8


def _shapes(batch_size=BATCH):
  return SyntheticIterator("x", LENGTHS, batch_size, 0).batch_shapes()


def _run(model, mesh, steps, *, num_microbatches=1, nan_policy="stop", poison_at=()):
  """Trains `steps` steps; returns (final state, losses, host metrics, host params per step)."""
  tx, schedule = optimizer_lib.make_optimizer(base_learning_rate=1e-2)
  it = SyntheticIterator("x", LENGTHS, BATCH, 0, poison_at=poison_at)
  state, shardings = trainer.create_train_state(
    model, tx, mesh, jax.random.PRNGKey(0), it.batch_shapes()
  )
  step = trainer.make_train_step(
    model,
    tx,
    mesh=mesh,
    shardings=shardings,
    schedule=schedule,
    num_microbatches=num_microbatches,
    nan_policy=nan_policy,
  )
  rng = jax.random.PRNGKey(1)
  losses, all_metrics, snapshots = [], [], []
  for _ in range(steps):
    state, metrics = step(state, partitioning.shard_batch(next(it), mesh), rng)
    all_metrics.append(jax.device_get(metrics))
    snapshots.append(jax.device_get((state.params, state.opt_state)))  # state is donated
    losses.append(float(metrics["loss"]))
  return state, np.array(losses), all_metrics, snapshots


@pytest.fixture(scope="module")
def one_and_eight():
  """The same 10 steps (dropout on, fixed seeds) on 1 device and on a data=4 x model=2 mesh."""
  one = partitioning.make_mesh({"data": 1, "model": 1}, devices=jax.devices()[:1])
  eight = partitioning.make_mesh({"data": 4, "model": 2})
  return _run(tiny_model(), one, 10), _run(tiny_model(), eight, 10)


def test_params_and_moments_are_born_sharded_as_the_rules_say(one_and_eight):
  model = tiny_model()
  mesh = partitioning.make_mesh({"data": 4, "model": 2})
  state = one_and_eight[1][0]
  logical = model.param_logical_specs()
  checked = 0
  for (path, arr), spec in zip(
    jax.tree_util.tree_flatten_with_path(state.params)[0],
    jax.tree.leaves(logical, is_leaf=lambda x: isinstance(x, P)),
  ):
    expected = partitioning.logical_to_mesh_spec(
      spec, partitioning.LOGICAL_AXIS_RULES, arr.shape, mesh
    )
    assert arr.sharding.spec == expected, jax.tree_util.keystr(path)
    if "mlp" in tuple(spec):  # every mlp kernel is split over "model", nothing over "data"
      assert "model" in tuple(arr.sharding.spec) and "data" not in tuple(arr.sharding.spec)
      checked += 1
  assert checked >= 2
  assert state.step.sharding.spec == P()
  # v (unfactored moments) shares its parameter's sharding.
  for p, v in zip(jax.tree.leaves(state.params), jax.tree.leaves(state.opt_state.v)):
    if v.shape == p.shape:
      assert v.sharding.spec == p.sharding.spec


def test_fsdp_rules_shard_embed_over_data():
  model = StandInModel()
  mesh = partitioning.make_mesh({"data": 4, "model": 2})
  tx, _ = optimizer_lib.make_optimizer()
  state, _ = trainer.create_train_state(
    model, tx, mesh, jax.random.PRNGKey(0), _shapes(), fsdp=True
  )
  specs = [tuple(a.sharding.spec) for a in jax.tree.leaves(state.params)]
  assert any("data" in s for s in specs)


def test_ten_steps_give_the_same_losses_on_1_device_and_on_a_4x2_mesh(one_and_eight):
  (state1, losses1, _, _), (state8, losses8, _, _) = one_and_eight
  np.testing.assert_allclose(losses8, losses1, rtol=1e-5, atol=1e-5)
  assert losses1[-1] < losses1[0]  # it learns
  assert int(state1.step) == int(state8.step) == 10
  for a, b in zip(jax.tree.leaves(state1.params), jax.tree.leaves(state8.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_bfloat16_steps_agree_on_1_device_and_on_a_4x2_mesh():
  """bfloat16 activations (on CPU, flan.model.layers' own matmul gradient) shard like float32."""
  one = partitioning.make_mesh({"data": 1, "model": 1}, devices=jax.devices()[:1])
  eight = partitioning.make_mesh({"data": 4, "model": 2})
  (_, losses1, _, _), (_, losses8, _, _) = (
    _run(tiny_model(dropout_rate=0.0, dtype="bfloat16"), mesh, 5) for mesh in (one, eight)
  )
  np.testing.assert_allclose(losses8, losses1, rtol=2e-2)
  assert losses1[-1] < losses1[0]


def test_metrics_count_tokens_and_learning_rate_on_device(one_and_eight):
  m = one_and_eight[1][2][0]
  batch = make_batch(0, 1, BATCH)
  assert m["num_loss_weights"] == batch["decoder_loss_weights"].sum()
  assert m["num_encoder_tokens"] == (batch["encoder_input_tokens"] > 0).sum()
  assert m["num_tokens"] == batch["decoder_loss_weights"].sum()
  assert 0 <= m["accuracy"] <= m["num_tokens"]
  assert m["learning_rate"] == pytest.approx(1e-2)
  assert m["grad_norm"] > 0 and m["skipped_updates"] == 0 and m["nonfinite"] == 0


@pytest.mark.parametrize(
  "normaliser",
  [None, 512.0, "NUM_REAL_TARGET_TOKENS", "NUM_TOTAL_TARGET_TOKENS", "AVERAGE_PER_SEQUENCE"],
)
def test_microbatches_accumulate_the_same_gradient_as_the_full_batch(normaliser):
  # With a per-batch normaliser t5x's sum of per-slice losses differs from the full batch;
  # ours divides every slice by the whole batch's normaliser, so every case matches.
  mesh = partitioning.make_mesh({"data": 2, "model": 1}, devices=jax.devices()[:2])
  model = StandInModel(StandInConfig(dropout_rate=0.0), loss_normalizing_factor=normaliser)
  full, losses_full, _, _ = _run(model, mesh, 2)
  micro, losses_micro, _, _ = _run(model, mesh, 2, num_microbatches=2)
  np.testing.assert_allclose(losses_micro, losses_full, rtol=1e-5)
  assert (losses_full[0] < 10) == (normaliser is not None)  # normalised vs token sum
  for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(micro.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_skip_policy_leaves_params_unchanged_on_a_nan_step_and_counts_it():
  mesh = partitioning.make_mesh({"data": 2, "model": 1}, devices=jax.devices()[:2])
  state, losses, metrics, snaps = _run(
    PoisonedModel(StandInModel()), mesh, 3, nan_policy="skip", poison_at=(3,)
  )
  assert np.isnan(losses[2]) and metrics[2]["skipped_updates"] == 1
  assert metrics[1]["skipped_updates"] == 0
  assert int(state.step) == 3
  for a, b in zip(jax.tree.leaves(snaps[1]), jax.tree.leaves(snaps[2])):
    np.testing.assert_array_equal(a, b)
  # The host-side check of "stop" mode names the step from the same metrics.
  trainer.check_finite(metrics[1], 2)
  with pytest.raises(trainer.NonFiniteLossError, match="at step 3"):
    trainer.check_finite(metrics[2], 3)


def test_unknown_nan_policy_is_rejected():
  with pytest.raises(ValueError, match="nan_policy"):
    trainer.make_train_step(
      StandInModel(), optimizer_lib.adafactor(), mesh=None, shardings=None, nan_policy="ignore"
    )
