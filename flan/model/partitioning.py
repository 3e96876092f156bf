"""The device mesh, the one logical-axis rules table, and how batches reach the mesh.

Layers name their dimensions with logical axes ("batch", "embed", "mlp", ...); this module
alone decides which mesh axis each name lands on. The mesh is always ("data", "model"),
given directly as a shape such as {"data": -1, "model": 1} (-1: whatever devices remain),
never through t5x's num_partitions / model_parallel_submesh pair (t5x #410).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ("data", "model")

# The one table: logical name -> mesh axis (None: replicated). Parameters and activations
# share it, except that FSDP adds ("embed", "data") for parameters (see `rules`).
LOGICAL_AXIS_RULES: tuple[tuple[str, str | None], ...] = (
  ("batch", "data"),
  ("vocab", "model"),
  ("mlp", "model"),
  ("heads", "model"),
  ("joined_kv", "model"),
  ("embed", None),
  ("kv", None),
  ("length", None),
  ("relpos_buckets", None),
  ("layers", None),
  ("mlp_activations", None),
)


def rules(*, fsdp: bool = False) -> tuple[tuple[str, str | None], ...]:
  """The rules table; `fsdp=True` also shards parameters' "embed" over "data" (ZeRO-3 style).

  Only for parameter and optimizer-state specs: activations' "embed" must stay unsharded
  because their "batch" already takes "data".
  """
  if not fsdp:
    return LOGICAL_AXIS_RULES
  return tuple(
    ("embed", "data") if name == "embed" else (name, axis) for name, axis in LOGICAL_AXIS_RULES
  )


def make_mesh(
  shape: Mapping[str, int] | None = None, devices: Sequence[jax.Device] | None = None
) -> Mesh:
  """A ("data", "model") mesh; one entry of `shape` may be -1 (the remaining devices).

  Raises:
    ValueError: unknown axis names, or sizes that do not multiply to the device count.
  """
  shape = dict(shape or {"data": -1, "model": 1})
  devices = list(devices if devices is not None else jax.devices())
  unknown = set(shape) - set(MESH_AXES)
  if unknown:
    raise ValueError(
      f"MESH has unknown axes {sorted(unknown)}; use only 'data' and 'model', "
      "e.g. MESH = {'data': -1, 'model': 2}."
    )
  sizes = [int(shape.get(a, 1)) for a in MESH_AXES]
  if sizes.count(-1) > 1:
    raise ValueError(f"MESH {shape}: at most one axis may be -1.")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if known <= 0 or len(devices) % known:
      raise ValueError(f"MESH {shape}: {len(devices)} devices are not divisible by {known}.")
    sizes[sizes.index(-1)] = len(devices) // known
  if math.prod(sizes) != len(devices):
    raise ValueError(
      f"MESH {shape} needs {math.prod(sizes)} devices but {len(devices)} are "
      "present; set one axis to -1 to use all of them."
    )
  # Auto axes: shardings are propagated by XLA from the ones we pin (params, batch), the
  # t5x/pjit model; newer JAX may default make_mesh to Explicit axes.
  auto = (AxisType.Auto,) * len(MESH_AXES)
  if len(devices) == len(jax.devices()):
    # jax.make_mesh orders devices for the physical topology (ICI rings on TPU/GPU).
    return jax.make_mesh(tuple(sizes), MESH_AXES, auto, devices=devices)
  return Mesh(np.asarray(devices).reshape(sizes), MESH_AXES, axis_types=auto)


def logical_to_mesh_spec(
  logical: P,
  rules_table: Sequence[tuple[str, str | None]] = LOGICAL_AXIS_RULES,
  shape: Sequence[int] | None = None,
  mesh: Mesh | None = None,
) -> P:
  """Maps one logical PartitionSpec to mesh axes.

  A mesh axis is used at most once per spec (the first rule that applies wins). With
  `shape` and `mesh`, a dimension not divisible by its mesh axis size stays replicated
  (tiny test models), so jit never sees an uneven sharding.
  """
  table = {}
  for name, axis in rules_table:
    table.setdefault(name, axis)
  used, out = set(), []
  for i, name in enumerate(tuple(logical)):
    axis = table.get(name) if isinstance(name, str) else None
    if axis is not None and (
      axis in used or (shape is not None and mesh is not None and shape[i] % mesh.shape[axis])
    ):
      axis = None
    if axis is not None:
      used.add(axis)
    out.append(axis)
  while out and out[-1] is None:
    out.pop()
  return P(*out)


def logical_to_sharding(
  logical_specs: Any,
  mesh: Mesh,
  *,
  shapes: Any = None,
  rules_table: Sequence[tuple[str, str | None]] = LOGICAL_AXIS_RULES,
) -> Any:
  """A pytree of NamedSharding from a pytree of logical PartitionSpecs.

  Args:
    logical_specs: PartitionSpecs of logical names (e.g. `model.param_logical_specs()`).
    mesh: the ("data", "model") mesh.
    shapes: optional matching pytree of arrays/ShapeDtypeStructs; dims that do not divide
      evenly by their mesh axis are left replicated.
    rules_table: `rules()` or `rules(fsdp=True)`.
  """
  is_spec = lambda x: isinstance(x, P)
  if shapes is None:
    return jax.tree.map(
      lambda s: NamedSharding(mesh, logical_to_mesh_spec(s, rules_table)),
      logical_specs,
      is_leaf=is_spec,
    )
  return jax.tree.map(
    lambda s, x: NamedSharding(mesh, logical_to_mesh_spec(s, rules_table, x.shape, mesh)),
    logical_specs,
    shapes,
    is_leaf=is_spec,
  )


@contextlib.contextmanager
def activation_rules(mesh: Mesh) -> Iterator[None]:
  """Mesh + rules in scope while tracing, so `nn.with_logical_constraint` takes effect."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(LOGICAL_AXIS_RULES):
    yield


# ---------------------------------------------------------------------------- data across hosts


def data_shard_info(mesh: Mesh) -> tuple[int, int]:
  """(shard_index, num_shards) of this host along "data".

  Hosts whose devices hold the same "data" rows (one model replica split across hosts)
  read the same shard; t5x's DataLayout does the same.
  """
  rows_of = {}
  for row_idx, row in enumerate(mesh.devices.reshape(mesh.shape["data"], -1)):
    for d in row:
      rows_of.setdefault(d.process_index, set()).add(row_idx)
  groups = sorted({tuple(sorted(r)) for r in rows_of.values()})
  return groups.index(tuple(sorted(rows_of[jax.process_index()]))), len(groups)


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
  """Raises a clear ValueError unless the batch splits over "data" and over the hosts."""
  data = mesh.shape["data"]
  _, num_shards = data_shard_info(mesh)
  if global_batch_size % data or global_batch_size % num_shards:
    raise ValueError(
      f"BATCH_SIZE={global_batch_size} is not divisible by the data-parallel "
      f"size {data} (MESH {dict(mesh.shape)}, {num_shards} host shard(s)); "
      f"use a multiple of {math.lcm(data, num_shards)}."
    )


def shard_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Global jax.Arrays, split along "data", from this host's slice of the batch.

  Every host passes its own [global_batch // num_shards, ...] slice (the one its
  `data_shard_info` names); the result is the same global array on all hosts.
  """
  sharding = NamedSharding(mesh, P("data"))
  _, num_shards = data_shard_info(mesh)
  out = {}
  for name, x in local_batch.items():
    x = np.asarray(x)
    global_shape = (x.shape[0] * num_shards,) + x.shape[1:]
    out[name] = jax.make_array_from_process_local_data(sharding, x, global_shape)
  return out


def initialize_distributed(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> None:
  """Joins a multi-process (e.g. multi-node GPU) job when a coordinator is configured.

  TPU pods and single-process runs need nothing: JAX initialises them itself. Several CPU
  processes on one machine (the tests' loopback setup) use "127.0.0.1:<port>" and JAX's
  CPU collectives (gloo, the default of `jax_cpu_collectives_implementation`). Must run
  before anything touches a device.
  """
  if not coordinator_address:
    return
  logging.info(
    "jax.distributed.initialize(%s, num_processes=%s, process_id=%s)",
    coordinator_address,
    num_processes,
    process_id,
  )
  jax.distributed.initialize(
    coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
  )
