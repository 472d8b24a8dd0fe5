"""Progress output: a tqdm bar within each epoch on a terminal, one plain line per epoch."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from flaxfit.training.callbacks.base import Callback


def format_epoch(metrics: dict[str, float], total_epochs: int) -> str:
    """One line per epoch, e.g. 'epoch 2/3  train loss 0.0412 acc 98.71% | test ...'.

    Every train_* and test_* metric of the row is shown: accuracies as percentages.
    """
    width = len(str(total_epochs))
    line = f"epoch {int(metrics['epoch']):>{width}}/{total_epochs} "
    for split, sep in (("train", " "), ("test", " | ")):
        shown = [
            _format_metric(column[len(split) + 1 :], value)
            for column, value in metrics.items()
            if column.startswith(split + "_") and value == value  # NaN: no test split given
        ]
        if shown:
            line += f"{sep}{split} " + " ".join(shown)
    return line + f" | {metrics['seconds']:.1f} s, {metrics['images_per_second']:,.0f} img/s"


def _format_metric(name: str, value: float) -> str:
    if name == "accuracy":
        return f"acc {100 * value:6.2f}%"
    return f"{name} {value:.4f}"


class ProgressBar(Callback):
    """A tqdm bar per epoch on a terminal, and one plain line per epoch always.

    The bar advances once per dispatched chunk of steps, so it costs no
    per-step host sync. When `stream` is not a terminal (a log file, CI),
    only the epoch lines are written.
    """

    def __init__(self, stream: TextIO | None = None, bar: bool | None = None):
        self.stream = stream if stream is not None else sys.stdout
        self.bar = self.stream.isatty() if bar is None else bar
        self._tqdm: Any = None
        self._total_epochs = 0

    def on_fit_begin(self, state: Any, total_epochs: int) -> None:
        self._total_epochs = total_epochs

    def on_steps(self, epoch: int, steps_done: int, steps_total: int) -> None:
        if not self.bar:
            return
        if self._tqdm is None:
            from tqdm.auto import tqdm

            self._tqdm = tqdm(
                total=steps_total,
                desc=f"epoch {epoch}/{self._total_epochs}",
                unit="step",
                leave=False,
                file=self.stream,
                dynamic_ncols=True,
            )
        self._tqdm.update(steps_done - self._tqdm.n)

    def on_epoch_end(self, epoch: int, state: Any, metrics: dict[str, float]) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None
        print(format_epoch(metrics, self._total_epochs), file=self.stream, flush=True)
