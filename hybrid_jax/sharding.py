"""Device mesh, axis names and batch shardings: the only module that names mesh axes.

The mesh is 2-D, `(data, fsdp)`. The batch is split over both axes together (every device holds
`global_batch_size / num_devices` rows), so the fsdp axis changes how parameters are stored, not
how the batch is laid out. With `fsdp=1` the mesh is pure data parallel and every parameter is
replicated; with `fsdp>1` large parameters and their optimizer moments are split over the fsdp
axis (`param_shardings`, `state_shardings`) and replicated over the data axis, and the LoRA
factors of a kernel are placed as the kernel (`lora_specs`). Axes are `AxisType.Auto`:
`jax.make_mesh` defaults to Explicit axes, under which a global-view `query @ passage.T` over a
sharded batch raises a ShardingTypeError.

Multi-host: every process builds the same mesh over all devices of all hosts, loads its own
contiguous slice of the global batch (`process_batch_slice`) as numpy, and `host_local_to_global`
assembles the global `jax.Array`s.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import AbstractMesh, AxisType, Mesh, NamedSharding, PartitionSpec as P

from hybrid_jax.errors import ConfigError
from hybrid_jax.models.lora import PARAM_NAMES as LORA_NAMES

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
# The batch dimension is split over both axes, data-major.
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)
BATCH_SPEC = P(BATCH_AXES)
# Parameters with fewer elements than this stay replicated under FSDP (biases, LayerNorm, small
# matrices): splitting them saves little memory and costs a collective each.
FSDP_MIN_PARAM_SIZE = 2**14


def make_mesh(num_devices: int | None = None, *, fsdp: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A `(data, fsdp)` mesh with Auto axes.

  Args:
    num_devices: use the first `num_devices` of `devices` (default: all of them).
    fsdp: size of the fsdp axis; the data axis gets `num_devices // fsdp`.
    devices: devices to use (default: `jax.devices()`, every device of every host).

  Returns:
    Mesh with axes `(DATA_AXIS, FSDP_AXIS)` of shape `(num_devices // fsdp, fsdp)`.
  """
  devices = list(jax.devices() if devices is None else devices)
  if num_devices is None:
    num_devices = len(devices)
  if not 1 <= num_devices <= len(devices):
    raise ValueError(f"make_mesh: num_devices={num_devices} must be in [1, {len(devices)}] "
                     f"(the number of available devices)")
  if fsdp < 1 or num_devices % fsdp:
    raise ValueError(f"make_mesh: fsdp={fsdp} must be a positive divisor of "
                     f"num_devices={num_devices}")
  return jax.make_mesh((num_devices // fsdp, fsdp), BATCH_AXES,
                       axis_types=(AxisType.Auto, AxisType.Auto), devices=devices[:num_devices])


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of `[batch, ...]` arrays: rows split over every device of `mesh`."""
  return NamedSharding(mesh, BATCH_SPEC)


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding of arrays held whole on every device (parameters when fsdp=1, scalars)."""
  return NamedSharding(mesh, P())


def param_spec(shape: Sequence[int], fsdp_size: int) -> P:
  """Where one parameter (or optimizer moment) of `shape` lives on a mesh with `fsdp_size`.

  The FSDP rule (as in MaxText / big_vision): split the largest dimension that `fsdp_size`
  divides over the fsdp axis (the first such dimension on ties); replicate 0-D and 1-D arrays,
  arrays with fewer than `FSDP_MIN_PARAM_SIZE` elements, and arrays with no divisible dimension.

  Args:
    shape: the global shape.
    fsdp_size: size of the mesh's fsdp axis.

  Returns:
    `P()` (replicated) or a PartitionSpec naming `FSDP_AXIS` at the split dimension.
  """
  if fsdp_size == 1 or len(shape) < 2 or np.prod(shape) < FSDP_MIN_PARAM_SIZE:
    return P()
  divisible = [dim for dim, size in enumerate(shape) if size % fsdp_size == 0]
  if not divisible:
    return P()
  split = max(divisible, key=lambda dim: (shape[dim], -dim))
  return P(*(FSDP_AXIS if dim == split else None for dim in range(len(shape))))


def lora_specs(kernel_spec: P) -> tuple[P, P]:
  """Where the LoRA factors of a kernel W [in, out] placed as `kernel_spec` live.

  A [sets, in, rank] is split on its input dimension as W is, B [sets, rank, out] on its output
  dimension as W is; the adapter sets and the rank are never split, so a replicated W has
  replicated factors. (`hybrid_jax.models.lora`: sets = 1 shared + one per language.)

  Args:
    kernel_spec: W's PartitionSpec (`param_spec((in, out), fsdp_size)`).

  Returns:
    (A's PartitionSpec, B's PartitionSpec).
  """
  split_in, split_out = (tuple(kernel_spec) + (None, None))[:2]
  return P(None, split_in, None), P(None, None, split_out)


def param_shardings(mesh: Mesh | AbstractMesh, params: Any) -> Any:
  """The FSDP sharding of every leaf of `params`: `param_spec` of its shape, except LoRA factors.

  A leaf named `lora_a` [sets, in, rank] or `lora_b` [sets, rank, out] (`models.lora.PARAM_NAMES`,
  always siblings in one dict: in the parameters and in AdamW's moments alike) is placed as its
  kernel W [in, out] is (`lora_specs` of `param_spec((in, out))`), whatever its own size.

  Args:
    mesh: the device mesh (an `AbstractMesh` is enough to compute shard shapes).
    params: pytree of arrays or `jax.ShapeDtypeStruct`s (anything with `.shape`).

  Returns:
    The same pytree of `NamedSharding`s; all replicated when the fsdp axis has size 1.

  Raises:
    ValueError: a `lora_a` without its sibling `lora_b`, or the reverse.
  """
  fsdp_size = mesh.shape[FSDP_AXIS]
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  shapes = {path: leaf.shape for path, leaf in leaves}

  def spec(path, shape) -> P:
    name = getattr(path[-1], "key", None) if path else None
    if name not in LORA_NAMES:
      return param_spec(shape, fsdp_size)
    a, b = (shapes.get(path[:-1] + (jax.tree_util.DictKey(n),)) for n in LORA_NAMES)
    if a is None or b is None:
      raise ValueError(f"param_shardings: {jax.tree_util.keystr(path)} is a LoRA factor, placed "
                       f"by its kernel's shape: its dict must hold both {LORA_NAMES}")
    a_spec, b_spec = lora_specs(param_spec((a[1], b[2]), fsdp_size))
    return a_spec if name == LORA_NAMES[0] else b_spec

  return jax.tree_util.tree_unflatten(
      treedef, [NamedSharding(mesh, spec(path, leaf.shape)) for path, leaf in leaves])


def state_shardings(mesh: Mesh | AbstractMesh, state: Any) -> Any:
  """Shardings of a whole train state: parameters, optimizer state, step, rng, counters.

  The rule depends only on shapes and, for LoRA factors, on their sibling's shape, so AdamW's
  `mu` / `nu` (shaped and named like the parameters) are split exactly like their parameters,
  and step counters, the rng key and other scalars are replicated.

  Args:
    mesh: the device mesh.
    state: pytree of arrays or `jax.ShapeDtypeStruct`s (e.g. `train.TrainState`).

  Returns:
    The same pytree of `NamedSharding`s.
  """
  return param_shardings(mesh, state)


def num_batch_shards(mesh: Mesh) -> int:
  """Number of slices the batch dimension is split into."""
  return int(np.prod([mesh.shape[axis] for axis in BATCH_AXES]))


def check_global_batch(global_batch_size: int, mesh: Mesh,
                       field: str = "config.train.global_batch_size") -> int:
  """Checks that a global batch (or any block of its rows) splits evenly over the devices of `mesh`.

  Args:
    global_batch_size: number of rows in one global batch (all hosts), or in a block of it that
      is spread over all devices (a gradient-cache chunk).
    mesh: the device mesh.
    field: the config key of `global_batch_size`, for the message.

  Returns:
    The per-device number of rows.

  Raises:
    ConfigError: if `global_batch_size` is not a positive multiple of the number of devices.
  """
  num_shards = num_batch_shards(mesh)
  if global_batch_size < 1 or global_batch_size % num_shards:
    raise ConfigError(
        f"{field}={global_batch_size} must be a positive multiple of the number of devices "
        f"({num_shards} = mesh {dict(mesh.shape)}); e.g. use "
        f"{max(1, global_batch_size // num_shards) * num_shards}")
  return global_batch_size // num_shards


def process_batch_slice(global_batch_size: int, mesh: Mesh) -> slice:
  """Rows of the global batch that this process feeds (to its local devices).

  Args:
    global_batch_size: number of examples in one global batch (all hosts).
    mesh: the device mesh.

  Returns:
    A contiguous `slice(start, stop)` of `[0, global_batch_size)`.

  Raises:
    ValueError: if the batch does not divide over the devices, or if this process's devices do
      not hold one contiguous block of rows (a mesh whose device order interleaves hosts).
  """
  check_global_batch(global_batch_size, mesh)
  index_map = batch_sharding(mesh).addressable_devices_indices_map((global_batch_size,))
  rows = sorted({(idx[0].start, idx[0].stop) for idx in index_map.values()})
  for (_, stop), (start, _) in zip(rows[:-1], rows[1:]):
    if stop != start:
      raise ValueError(f"process {jax.process_index()} holds non-contiguous batch rows {rows}: "
                       f"the mesh must order devices host by host")
  return slice(rows[0][0], rows[-1][1])


def host_local_to_global(mesh: Mesh, tree: Any) -> Any:
  """Assembles global batch-sharded arrays from each process's slice of the batch.

  Every process calls this with the same tree structure; its leaves are that process's rows
  `process_batch_slice(global_batch_size, mesh)` of the global batch.

  Args:
    mesh: the device mesh.
    tree: pytree of numpy arrays `[local_batch, ...]`, all with the same `local_batch`.

  Returns:
    The same pytree of `jax.Array`s `[local_batch * process_count, ...]` with `batch_sharding`.
  """
  leaves = jax.tree.leaves(tree)
  local_sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves}
  if len(local_sizes) != 1 or None in local_sizes:
    raise ValueError(f"host_local_to_global: every leaf must be [local_batch, ...] with one "
                     f"local_batch, got leading sizes {sorted(local_sizes, key=str)}")
  check_global_batch(local_sizes.pop() * jax.process_count(), mesh)
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), tree)
