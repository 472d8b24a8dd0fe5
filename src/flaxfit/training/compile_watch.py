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
# A program read from the persistent compilation cache still counts as a backend
# compile (its duration is then the read), and also raises this event.
_CACHE_HIT = "/jax/compilation_cache/cache_hits"


@dataclass
class CompileStats:
    """What was compiled while a `watch_compiles()` block ran."""

    compiles: int = 0
    seconds: float = 0.0
    cache_hits: int = 0  # of `compiles`, read from the persistent compilation cache


@contextmanager
def watch_compiles() -> Iterator[CompileStats]:
    """Count backend compilations (and trace+lower+compile seconds) inside the block,
    and how many of them the persistent compilation cache answered.

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

    def hit_listener(event: str, **_: object) -> None:
        stats.cache_hits += event == _CACHE_HIT

    jax.monitoring.register_event_duration_secs_listener(listener)
    jax.monitoring.register_event_listener(hit_listener)
    try:
        yield stats
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
        jax.monitoring.unregister_event_listener(hit_listener)
