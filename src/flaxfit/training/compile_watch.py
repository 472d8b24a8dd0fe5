"""Count XLA compilations and the seconds they take, from jax.monitoring events."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import jax

# Tracing, lowering to MLIR and the backend compile together are the cost of a
# new shape or function; each is reported once per compiled program.
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_BACKEND_COMPILE = _COMPILE_EVENTS[-1]


@dataclass
class CompileStats:
    """What was compiled while a `watch_compiles()` block ran."""

    compiles: int = 0
    seconds: float = 0.0


@contextmanager
def watch_compiles() -> Iterator[CompileStats]:
    """Count backend compilations (and trace+lower+compile seconds) inside the block.

    >>> with watch_compiles() as stats:
    ...     jax.jit(lambda x: x + 1)(1.0)
    >>> stats.compiles
    1
    """
    stats = CompileStats()

    def listener(event: str, duration: float, **_: object) -> None:
        if event in _COMPILE_EVENTS:
            stats.seconds += duration
            stats.compiles += event == _BACKEND_COMPILE

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield stats
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
