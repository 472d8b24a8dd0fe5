"""Turn SIGINT / SIGTERM into a polite request to stop at the next safe point."""

from __future__ import annotations

import signal
from types import FrameType

#: Exit codes the shell uses for death by these signals (128 + signal number).
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopRequest:
    """Context manager: while active, SIGINT/SIGTERM set `signum` instead of killing.

    Pass the instance as `should_stop` to `fit`/`train_run`: training then
    saves a checkpoint at the next chunk boundary and stops. A second SIGINT
    while waiting raises KeyboardInterrupt, for when the safe point is too far.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __call__(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopRequest:
        for signum in EXIT_CODES:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
