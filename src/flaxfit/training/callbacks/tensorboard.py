"""TensorBoard: each epoch's History row as scalars in an event file (tensorboardX, no TensorFlow).

View with `tensorboard --logdir <logdir>` (the viewer is a separate install).
"""

from __future__ import annotations

import itertools
import math
import os
import time
from typing import Any

from flaxfit.training.callbacks.base import Callback
from flaxfit.training.history import History

#: Scalar tag -> History column. Loss and accuracy tags share a prefix so that
#: TensorBoard draws train and test on one chart each.
TAGS = {
    "loss/train": "train_loss",
    "loss/test": "test_loss",
    "accuracy/train": "train_accuracy",
    "accuracy/test": "test_accuracy",
    "speed/images_per_second": "images_per_second",
    "speed/seconds": "seconds",
}



def tags(metrics: dict[str, float]) -> dict[str, str]:
    """Tags for a row's columns: `TAGS`' names, "<metric>/train" and "<metric>/test" for others."""
    out = {tag: column for tag, column in TAGS.items() if column in metrics}
    for column in metrics:
        if column.startswith(("train_", "test_")) and column not in out.values():
            split, name = column.split("_", 1)
            out[f"{name}/{split}"] = column
    return out


# tensorboardX names event files by the second and the host only, and truncates a
# file of the same name: two fits into one logdir within a second would lose the
# first. The pid and a per-process counter make every name unique.
_writers_opened = itertools.count(1)


class TensorBoard(Callback):
    """Write every epoch's loss, accuracy and speed to a TensorBoard event file in `logdir`.

    The global step is the epoch number. Test scalars are left out when fit has
    no test split (they are NaN). Each epoch is on disk (flushed and fsynced)
    when its hook returns, so a running TensorBoard sees it at once and a killed
    run loses nothing; the file is closed when fit ends. Each fit writes a new
    event file; `logdir` is created when the first one opens.

    Args:
        logdir: the directory for the event files (one per run, typically).
    """

    def __init__(self, logdir: str | os.PathLike):
        try:
            # Imported here, not at the top, so `import flaxfit` stays light.
            import tensorboardX  # noqa: F401
        except ImportError:
            raise ImportError(
                "TensorBoard needs the tensorboardX package: pip install 'tensorboardX>=2.6'"
            ) from None
        self.logdir = os.fspath(logdir)
        self._writer: Any = None

    def on_fit_begin(self, state: Any, total_epochs: int) -> None:
        # tensorboardX's SummaryWriter hands events to a background thread, and its
        # flush() does not wait for that thread: an epoch could reach the disk only
        # at the next one. Its synchronous EventsWriter (which SummaryWriter writes
        # through) makes "flushed at the end of every epoch" true.
        from tensorboardX.event_file_writer import EventsWriter

        # Opened here rather than in __init__: building the callback creates no files.
        self.close()
        os.makedirs(self.logdir, exist_ok=True)
        suffix = f".{os.getpid()}.{next(_writers_opened)}"
        self._writer = EventsWriter(os.path.join(self.logdir, "events"), suffix)

    def on_epoch_end(self, epoch: int, state: Any, metrics: dict[str, float]) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary

        if self._writer is None:  # hooks driven by hand, without on_fit_begin
            self.on_fit_begin(state, 0)
        values = [
            Summary.Value(tag=tag, simple_value=float(metrics[column]))
            for tag, column in tags(metrics).items()
            # No test split: no point rather than a NaN point.
            if not (column.startswith("test_") and math.isnan(metrics[column]))
        ]
        summary = Summary(value=values)
        self._writer.write_event(Event(wall_time=time.time(), step=epoch, summary=summary))
        self._writer.flush()

    def on_fit_end(self, state: Any, history: History) -> None:
        self.close()

    def on_interrupt(self, state: Any, progress: Any, history: History) -> None:
        # An interrupted fit raises instead of reaching on_fit_end; every finished
        # epoch is already on disk, so closing is all that is left to do.
        self.close()

    def close(self) -> None:
        """Flush and close the event file (fit does this at its end)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
