"""Orbax checkpoints: round trip onto another mesh, atomicity, fallback, wrong-size errors."""

import logging
import pathlib

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from tiny_training import LENGTHS, StandInConfig, StandInModel, SyntheticIterator

from flan.model import partitioning
from flan.training import checkpoints as ckpt_lib
from flan.training import optimizer as optimizer_lib
from flan.training import train_step as trainer

SHAPES = SyntheticIterator("x", LENGTHS, 8, 0).batch_shapes()


def _state(mesh, model=None, seed=0):
  model = model or StandInModel()
  tx, _ = optimizer_lib.make_optimizer()
  state, shardings = trainer.create_train_state(model, tx, mesh, jax.random.PRNGKey(seed), SHAPES)
  return state, shardings, model, tx


def _target(model, tx, mesh):
  shapes = trainer.train_state_shapes(model, tx, jax.random.PRNGKey(0), SHAPES)
  shardings = trainer.state_shardings(model, tx, mesh, shapes)
  return ckpt_lib.abstract_state(shapes, shardings)


def _save(tmp_path, steps, mesh, **kw):
  ckpts = ckpt_lib.Checkpoints(str(tmp_path), **kw)
  states = {}
  for step in steps:
    state, _, model, tx = _state(mesh, seed=step)
    ckpts.save(step, state, {"position": step})
    states[step] = jax.device_get(state)
  ckpts.close()
  return states, model, tx


def _assert_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_restore_onto_a_different_mesh_gets_the_current_shardings(tmp_path):
  saved, model, tx = _save(tmp_path, [3], partitioning.make_mesh({"data": 8, "model": 1}))
  other = partitioning.make_mesh({"data": 2, "model": 4})
  ckpts = ckpt_lib.Checkpoints(str(tmp_path))
  state, data_state, step = ckpts.restore_latest(_target(model, tx, other))
  ckpts.close()
  assert step == 3 and data_state == {"position": 3}
  _assert_equal(state, saved[3])
  assert state.params["wi"].sharding.spec == P(None, "model")
  assert state.params["wi"].sharding.mesh.shape == {"data": 2, "model": 4}


def test_saves_are_atomic_and_leftover_temporaries_are_ignored(tmp_path):
  _save(tmp_path, [1, 2], partitioning.make_mesh())
  names = sorted(p.name for p in tmp_path.iterdir())
  assert "checkpoint_1" in names and "checkpoint_2" in names
  assert not [n for n in names if "tmp" in n]  # committed by rename, nothing half-written
  # A crash mid-save leaves only a temporary directory: it is not a checkpoint.
  (tmp_path / "checkpoint_3.orbax-checkpoint-tmp-123").mkdir()
  ckpts = ckpt_lib.Checkpoints(str(tmp_path))
  assert ckpts.steps() == [1, 2]
  ckpts.close()


def test_keep_n_deletes_the_oldest(tmp_path):
  _save(tmp_path, [1, 2, 3], partitioning.make_mesh(), keep=2)
  assert ckpt_lib.Checkpoints(str(tmp_path)).steps() == [2, 3]


def _corrupt(step_dir: pathlib.Path):
  for f in (step_dir / "state").rglob("*"):
    if f.is_file():
      f.write_bytes(b"garbage")


def test_corrupt_latest_falls_back_to_the_previous_with_a_warning(tmp_path, caplog):
  mesh = partitioning.make_mesh()
  saved, model, tx = _save(tmp_path, [1, 2], mesh)
  _corrupt(tmp_path / "checkpoint_2")
  ckpts = ckpt_lib.Checkpoints(str(tmp_path))
  with caplog.at_level(logging.WARNING):
    state, data_state, step = ckpts.restore_latest(_target(model, tx, mesh))
  assert step == 1 and data_state == {"position": 1}
  _assert_equal(state, saved[1])
  assert "checkpoint_2" in caplog.text and "unreadable" in caplog.text


def test_no_readable_checkpoint_is_a_clear_error(tmp_path):
  mesh = partitioning.make_mesh()
  _, model, tx = _save(tmp_path, [1], mesh)
  _corrupt(tmp_path / "checkpoint_1")
  with pytest.raises(ckpt_lib.CheckpointError, match="checkpoint_1"):
    ckpt_lib.Checkpoints(str(tmp_path)).restore_latest(_target(model, tx, mesh))


def test_checkpoint_of_another_model_size_names_both_shapes(tmp_path):
  mesh = partitioning.make_mesh()
  _save(tmp_path, [1], mesh)
  bigger = StandInModel(StandInConfig(mlp_dim=96))
  tx, _ = optimizer_lib.make_optimizer()
  with pytest.raises(ckpt_lib.CheckpointError, match=r"\(32, 64\).*\(32, 96\)"):
    ckpt_lib.Checkpoints(str(tmp_path)).restore_latest(_target(bigger, tx, mesh))


def test_restore_order_latest_then_initial_checkpoint_then_scratch(tmp_path):
  mesh = partitioning.make_mesh()
  saved, model, tx = _save(tmp_path / "pretrained", [7], mesh)
  target = _target(model, tx, mesh)
  fresh = lambda params: _state(mesh, model)[0]
  empty = ckpt_lib.Checkpoints(str(tmp_path / "run"))
  state, data_state, source = ckpt_lib.restore_or_initialize(
    empty, target, init_state=fresh, initial_checkpoint_path=str(tmp_path / "pretrained")
  )
  assert data_state is None and "pretrained" in source
  _assert_equal(state, saved[7])
  state, _, source = ckpt_lib.restore_or_initialize(empty, target, init_state=fresh)
  assert int(state.step) == 0 and source == "initialised from scratch"
  with pytest.raises(ckpt_lib.CheckpointError, match="does not exist"):
    ckpt_lib.restore_or_initialize(
      empty, target, init_state=fresh, initial_checkpoint_path=str(tmp_path / "nope")
    )
  empty.close()


def test_initial_checkpoint_from_a_hugging_face_directory_gives_its_weights(tmp_path):
  hf = pytest.importorskip("flan.model.hf")
  from tiny_training import tiny_model

  model = tiny_model(dropout_rate=0.0)
  mesh = partitioning.make_mesh({"data": 4, "model": 2})
  tx, _ = optimizer_lib.make_optimizer()
  rng = jax.random.PRNGKey(5)
  params = jax.device_get(model.init(rng, SHAPES))
  hf.params_to_hf(model.config, params, tmp_path / "hf")
  shapes = trainer.train_state_shapes(model, tx, rng, SHAPES)
  shardings = trainer.state_shardings(model, tx, mesh, shapes)
  init = lambda p: trainer.create_train_state(model, tx, mesh, rng, SHAPES, params=p)[0]
  empty = ckpt_lib.Checkpoints(str(tmp_path / "run"))
  state, data_state, source = ckpt_lib.restore_or_initialize(
    empty,
    ckpt_lib.abstract_state(shapes, shardings),
    init_state=init,
    initial_checkpoint_path=str(tmp_path / "hf"),
    model_config=model.config,
  )
  empty.close()
  assert "Hugging Face" in source and data_state is None and int(state.step) == 0
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(state.params)):
    np.testing.assert_allclose(np.asarray(b), a, rtol=1e-6)
  assert any("model" in tuple(x.sharding.spec) for x in jax.tree.leaves(state.params))
