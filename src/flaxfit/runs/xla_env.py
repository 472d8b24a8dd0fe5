"""XLA settings that `flaxfit train` applies before JAX starts a backend.

XLA:GPU picks kernels by timing them (autotuning) and sums some reductions
with atomics, so two processes running the same program can round
differently. Resume is bit-exact only if the process that continues computes
exactly what the unbroken one would have, so the command asks XLA for
deterministic GPU kernels. CPU ignores the flag. A user who prefers speed
over exact resume says so in XLA_FLAGS, which always wins.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

DETERMINISTIC_GPU_FLAG = "--xla_gpu_deterministic_ops=true"


def request_deterministic_gpu(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Add `DETERMINISTIC_GPU_FLAG` to XLA_FLAGS unless XLA_FLAGS already sets it either way.

    Takes effect only if no JAX computation has run yet in this process (XLA
    reads XLA_FLAGS once, when it starts a backend); child processes inherit
    it. Returns True when the flag was added.
    """
    flags = environ.get("XLA_FLAGS", "")
    if "xla_gpu_deterministic_ops" in flags:
        return False
    environ["XLA_FLAGS"] = f"{flags} {DETERMINISTIC_GPU_FLAG}".strip()
    return True
