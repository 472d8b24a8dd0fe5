"""Data parallelism with JAX's own machinery: a 1-D device mesh and sharding constraints.

The dataset and the TrainState are replicated on every device; inside the
compiled step each batch is constrained to be split along the mesh's "data"
axis, and XLA's SPMD partitioner does the rest (per-device forward and
backward, an all-reduce of the gradients). No hand-written collectives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named "data" over `devices` (default: every device of every process)."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(devices, (DATA_AXIS,))


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "batch_size") -> None:
    """Raise ValueError, suggesting the nearest valid sizes, if the batch does not split evenly."""
    devices = mesh.size
    if batch_size % devices:
        lower = batch_size // devices * devices
        options = [n for n in (lower, lower + devices) if n > 0]
        raise ValueError(
            f"{what} {batch_size} does not divide across {devices} devices; "
            f"use {' or '.join(map(str, options))}"
        )


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place a pytree of arrays in full on every device of `mesh`."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def split_batch(x: jax.Array, mesh: Mesh | None) -> jax.Array:
    """Inside jit: ask for `x` (B, ...) to be split along B over the mesh's data axis."""
    if mesh is None or mesh.size == 1:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec(DATA_AXIS)))
