"""Multi-host training with jax.distributed: one process per host, one global device mesh.

Every process runs the same program on the same data; `fit`'s mesh spans the
devices of all processes, each process's devices compute their slice of every
global batch, and gradients are all-reduced across processes by XLA (gloo on
CPU, NCCL on GPU). Files are written by process 0 only; checkpoints go through
Orbax, which coordinates the processes itself.
"""

from __future__ import annotations

import os

import jax


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Join (or start) a multi-process JAX job; call before anything touches a device.

    Each argument falls back to an environment variable: JAX_COORDINATOR_ADDRESS
    ("host:port" of process 0), JAX_NUM_PROCESSES, JAX_PROCESS_ID. Left unset
    on a managed cluster (SLURM, Open MPI, Kubernetes, Cloud TPU), JAX detects
    them itself.
    """
    num = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    pid = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
    jax.distributed.initialize(
        coordinator_address=coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS"),
        num_processes=num,
        process_id=pid,
    )


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def is_main_process() -> bool:
    """True in process 0 (and in a single-process run): the one that writes files."""
    return jax.process_index() == 0
