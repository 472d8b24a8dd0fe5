"""EarlyStopping: stop when a metric stops improving, and hand back the best epoch's params."""

from __future__ import annotations

import math
from typing import Any, Literal

import jax
import numpy as np

from flaxfit.training.callbacks.base import Callback
from flaxfit.training.history import COLUMNS, History

#: Columns that can be monitored (every History column but the epoch number).
MONITORABLE = tuple(column for column in COLUMNS if column != "epoch")
MODES = ("auto", "min", "max")


class EarlyStopping(Callback):
    """Stop `fit()` after `patience` epochs in a row without improvement in `monitor`.

    An epoch improves when its value beats the best so far by more than
    `min_delta` (lower for mode "min", higher for "max"). The first epoch
    always sets the best. With `restore_best`, fit returns the best epoch's
    params (the step count and optimizer state stay those of the last epoch).

    After fit, `best_epoch`, `best_value` and `stopped_epoch` (None if training
    ran to the end) say what happened.

    Args:
        monitor: a History column, e.g. "test_loss", "test_accuracy", "train_loss".
        patience: how many non-improving epochs in a row stop training (1 or more).
        min_delta: how much better than the best an epoch must be to count (0 or more).
        mode: "min", "max", or "auto": "min" for `*loss`, "max" for `*accuracy`.
        restore_best: return the best epoch's params from fit, not the last epoch's.
        history: a History that fit continues (a resumed run): its earlier
            epochs count towards the best value and the patience.
    """

    def __init__(
        self,
        monitor: str = "test_loss",
        patience: int = 3,
        min_delta: float = 0.0,
        mode: Literal["auto", "min", "max"] = "auto",
        restore_best: bool = True,
        history: History | None = None,
    ):
        if monitor not in MONITORABLE and not monitor.startswith(("train_", "test_")):
            raise ValueError(
                f"EarlyStopping: unknown monitor {monitor!r}; "
                f"monitor one of the History columns {', '.join(MONITORABLE)} (or another "
                "train_*/test_* metric your steps return)"
            )
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(
                f"EarlyStopping: patience must be a whole number of epochs, 1 or more; "
                f"got {patience!r}"
            )
        if not min_delta >= 0:  # also catches NaN
            raise ValueError(
                f"EarlyStopping: min_delta must be 0 or more (it is an amount, whatever "
                f"the mode); got {min_delta!r}"
            )
        self.monitor = monitor
        self.patience = patience
        self.min_delta = float(min_delta)
        self.mode = _resolve_mode(monitor, mode)
        self.restore_best = restore_best
        self.history = history
        self._reset()

    def _reset(self) -> None:
        self.best_epoch: int | None = None
        self.best_value: float | None = None
        self.stopped_epoch: int | None = None
        #: Host (NumPy) copy of the best epoch's params; None without restore_best.
        self.best_params: Any = None
        self.wait = 0  # epochs since the last improvement

    def on_fit_begin(self, state: Any, total_epochs: int) -> None:
        # One instance may serve several fits; each starts from nothing, or from
        # the epochs already in the history it continues.
        self._reset()
        for row in self.history.rows if self.history is not None else ():
            self._record(int(row["epoch"]), float(row[self.monitor]))

    def on_epoch_end(self, epoch: int, state: Any, metrics: dict[str, float]) -> bool:
        value = float(metrics[self.monitor])
        # Without a test split fit reports every test_* column as NaN; with one, test
        # accuracy is always a number (a NaN test loss then means the model diverged).
        if self.monitor.startswith("test_") and all(
            math.isnan(v) for k, v in metrics.items() if k.startswith("test_")
        ):
            raise ValueError(
                f"EarlyStopping: monitor {self.monitor!r} is NaN at epoch {epoch} because "
                f"fit() has no test split; pass a test split to fit() or monitor a train_* "
                f"column (e.g. monitor='train_{self.monitor[len('test_') :]}')"
            )
        if self._record(epoch, value):
            if self.restore_best:
                # The state is donated to the next step once this hook returns, so keep
                # an owned host copy: device_get alone may return views of device memory.
                self.best_params = jax.tree.map(np.array, jax.device_get(state.params))
            return False
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def on_fit_end(self, state: Any, history: History) -> Any | None:
        if not self.restore_best or self.best_params is None:
            return None
        # Put the best params where the current ones live (same devices and sharding).
        params = jax.tree.map(_put_like, self.best_params, state.params)
        return state.replace(params=params)

    def _record(self, epoch: int, value: float) -> bool:
        """Count `epoch` towards the best value or the patience; True if it improved."""
        if self._improves(value):
            self.best_epoch, self.best_value, self.wait = epoch, value, 0
            return True
        self.wait += 1
        return False

    def _improves(self, value: float) -> bool:
        if self.best_value is None:
            # The first epoch sets the best, unless its value is NaN (a diverged loss).
            return not math.isnan(value)
        if self.mode == "min":
            return value < self.best_value - self.min_delta
        return value > self.best_value + self.min_delta

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
            f"min_delta={self.min_delta}, mode={self.mode!r}, restore_best={self.restore_best})"
        )


def _resolve_mode(monitor: str, mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"EarlyStopping: mode must be one of {', '.join(MODES)}; got {mode!r}")
    if mode != "auto":
        return mode
    if monitor.endswith("loss"):
        return "min"
    if monitor.endswith("accuracy"):
        return "max"
    raise ValueError(
        f"EarlyStopping: mode 'auto' cannot tell whether {monitor!r} should go up or down; "
        f"pass mode='min' or mode='max'"
    )


def _put_like(host: np.ndarray, like: Any) -> Any:
    sharding = getattr(like, "sharding", None)
    return jax.device_put(host) if sharding is None else jax.device_put(host, sharding)
