"""The callback protocol: a no-op base class and the helper `fit()` calls hooks with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flaxfit.training.history import History


class Callback:
    """Base class with no-op hooks; subclass and override what you need."""

    def on_fit_begin(self, state: Any, total_epochs: int) -> None: ...

    def on_steps(self, epoch: int, steps_done: int, steps_total: int) -> None: ...

    def on_epoch_end(self, epoch: int, state: Any, metrics: dict[str, float]) -> bool | None: ...

    def on_fit_end(self, state: Any, history: History) -> Any | None: ...

    def on_interrupt(self, state: Any, progress: Any, history: History) -> None: ...


def call_hooks(callbacks: Sequence[object], hook: str, *args: Any) -> bool:
    """Call `hook` on every callback that has it; True if any asked to stop."""
    stop = False
    for callback in callbacks:
        method = getattr(callback, hook, None)
        if method is not None:
            stop = bool(method(*args)) or stop
    return stop
