"""Hooks `fit()` calls as it goes: progress output, early stopping, TensorBoard, history files.

A callback is any object with some of these methods (all optional):

    on_fit_begin(state, total_epochs)
    on_steps(epoch, steps_done, steps_total)        # within an epoch, per dispatch
    on_epoch_end(epoch, state, metrics) -> bool | None   # True asks fit to stop
    on_fit_end(state, history) -> state | None          # a state returned replaces fit's result
    on_interrupt(state, progress, history)              # fit stopped early and raises next

`epoch` counts from 1. `metrics` is the epoch's History row. The state given
to `on_epoch_end` is donated to the next compiled step as soon as the hook
returns: a callback that keeps any of it must copy it to the host first.
An interrupted fit (`should_stop`) calls `on_interrupt` and raises, so
`on_fit_end` does not run.
"""

from flaxfit.training.callbacks.base import Callback as Callback
from flaxfit.training.callbacks.base import call_hooks as call_hooks
from flaxfit.training.callbacks.early_stopping import EarlyStopping as EarlyStopping
from flaxfit.training.callbacks.history_files import HISTORY_FILE as HISTORY_FILE
from flaxfit.training.callbacks.history_files import METRICS_FILE as METRICS_FILE
from flaxfit.training.callbacks.history_files import HistoryFiles as HistoryFiles
from flaxfit.training.callbacks.history_files import write_history as write_history
from flaxfit.training.callbacks.progress import ProgressBar as ProgressBar
from flaxfit.training.callbacks.progress import format_epoch as format_epoch
from flaxfit.training.callbacks.tensorboard import TensorBoard as TensorBoard

__all__ = [
    "HISTORY_FILE",
    "METRICS_FILE",
    "Callback",
    "EarlyStopping",
    "HistoryFiles",
    "ProgressBar",
    "TensorBoard",
    "call_hooks",
    "format_epoch",
    "write_history",
]
