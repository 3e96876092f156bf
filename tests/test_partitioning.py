"""The mesh, the one rules table, host data shards and global batches (8 fake CPU devices)."""

import types

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from flan.model import partitioning as pt


def test_mesh_fills_the_minus_one_axis_with_the_remaining_devices():
  mesh = pt.make_mesh({"data": -1, "model": 2})
  assert mesh.axis_names == ("data", "model") and dict(mesh.shape) == {"data": 4, "model": 2}
  assert dict(pt.make_mesh().shape) == {"data": 8, "model": 1}
  assert dict(pt.make_mesh({"model": 8}).shape) == {"data": 1, "model": 8}


@pytest.mark.parametrize(
  "shape, message",
  [
    ({"data": 3, "model": 2}, "needs 6 devices but 8"),
    ({"data": -1, "model": 3}, "not divisible by 3"),
    ({"data": -1, "model": -1}, "at most one axis"),
    ({"data": -1, "tensor": 2}, "unknown axes"),
  ],
)
def test_bad_mesh_shapes_are_clear_errors(shape, message):
  with pytest.raises(ValueError, match=message):
    pt.make_mesh(shape)


def test_rules_map_logical_names_as_documented():
  spec = lambda *names: pt.logical_to_mesh_spec(P(*names))
  assert spec("batch", "length", "embed") == P("data")
  assert spec("embed", "mlp") == P(None, "model")
  assert spec("vocab", "embed") == P("model")
  assert spec("embed", "heads", "kv") == P(None, "model")
  assert spec("relpos_buckets") == P() and spec("layers", "embed") == P()
  fsdp = pt.rules(fsdp=True)
  assert pt.logical_to_mesh_spec(P("embed", "mlp"), fsdp) == P("data", "model")
  # A mesh axis is used once per array: the second "model" name stays replicated.
  assert spec("mlp", "heads") == P("model")


def test_dims_that_do_not_divide_their_mesh_axis_stay_replicated():
  mesh = pt.make_mesh({"data": 4, "model": 2})
  assert pt.logical_to_mesh_spec(P("embed", "mlp"), shape=(8, 6), mesh=mesh) == P(None, "model")
  assert pt.logical_to_mesh_spec(P("embed", "mlp"), shape=(8, 5), mesh=mesh) == P()
  shardings = pt.logical_to_sharding(
    {"w": P("embed", "mlp")}, mesh, shapes={"w": jax.ShapeDtypeStruct((8, 6), np.float32)}
  )
  assert shardings["w"].spec == P(None, "model") and shardings["w"].mesh is mesh


def test_shard_batch_makes_global_arrays_split_along_data():
  mesh = pt.make_mesh({"data": 4, "model": 2})
  local = {"encoder_input_tokens": np.arange(8 * 3, dtype=np.int32).reshape(8, 3)}
  batch = pt.shard_batch(local, mesh)
  x = batch["encoder_input_tokens"]
  assert x.shape == (8, 3) and x.sharding.spec == P("data")
  assert len(x.addressable_shards) == 8
  assert {s.data.shape for s in x.addressable_shards} == {(2, 3)}
  np.testing.assert_array_equal(np.asarray(x), local["encoder_input_tokens"])


def test_batch_size_must_divide_over_data():
  mesh = pt.make_mesh({"data": 4, "model": 2})
  pt.check_batch_size(8, mesh)
  with pytest.raises(ValueError, match="BATCH_SIZE=6 is not divisible by the data-parallel size 4"):
    pt.check_batch_size(6, mesh)


def _fake_mesh(process_of_device: np.ndarray):
  """A stand-in mesh of fake devices: only .devices and .shape are read."""
  devices = np.vectorize(lambda p: types.SimpleNamespace(process_index=int(p)), otypes=[object])(
    process_of_device
  )
  return types.SimpleNamespace(
    devices=devices, shape={"data": devices.shape[0], "model": devices.shape[1]}
  )


def test_host_data_shards_follow_the_data_rows_each_host_holds(monkeypatch):
  # 2 hosts x 4 devices, data=4 x model=2: host 0 holds rows 0-1, host 1 rows 2-3.
  by_rows = _fake_mesh(np.array([[0, 0], [0, 0], [1, 1], [1, 1]]))
  # data=2 x model=4 with each model replica split over both hosts: one shard for both.
  by_model = _fake_mesh(np.array([[0, 0, 1, 1], [0, 0, 1, 1]]))
  for process, expected in [(0, (0, 2)), (1, (1, 2))]:
    monkeypatch.setattr(jax, "process_index", lambda p=process: p)
    assert pt.data_shard_info(by_rows) == expected
    assert pt.data_shard_info(by_model) == (0, 1)


def test_single_process_needs_no_distributed_initialisation(monkeypatch):
  called = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: called.append(kw))
  pt.initialize_distributed(None)
  assert not called
  pt.initialize_distributed("10.0.0.1:1234", 2, 1)
  assert called == [{"coordinator_address": "10.0.0.1:1234", "num_processes": 2, "process_id": 1}]
  assert pt.data_shard_info(pt.make_mesh()) == (0, 1)
