"""HistoryFiles: history.json and metrics.csv, rewritten atomically after every epoch.

A run killed at any moment leaves both files complete, holding every epoch
that finished before it.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from flaxfit.files import write_recorded
from flaxfit.training.callbacks.base import Callback
from flaxfit.training.history import History

HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.csv"


def write_history(directory: str | os.PathLike, history: History) -> None:
    """Write history.json (all of it) and metrics.csv (one row per epoch), each atomically.

    Both are listed with their sha256 in the directory's SHA256SUMS.

    Args:
        directory: where the two files go; created if missing.
        history: `History.to_dict()` becomes history.json; its rows, under a
            header of `history.columns`, become metrics.csv.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_recorded(directory / HISTORY_FILE, json.dumps(history.to_dict(), indent=2) + "\n")
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=history.columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history.rows)
    write_recorded(directory / METRICS_FILE, table.getvalue())


class HistoryFiles(Callback):
    """Rewrite history.json and metrics.csv in `directory` after every epoch.

    `fit()` hands callbacks one epoch's row, not the History, so this keeps the
    History that fit fills: pass the same object to `fit(history=...)`.

    Args:
        directory: where the files go; created at the first write if missing.
        history: the History given to `fit(history=history)`.
    """

    def __init__(self, directory: str | os.PathLike, history: History):
        if not isinstance(history, History):
            raise TypeError(
                f"HistoryFiles: history must be the flaxfit History passed to "
                f"fit(history=...), got {type(history).__name__}"
            )
        self.directory = Path(directory)
        self.history = history

    def on_epoch_end(self, epoch: int, state: Any, metrics: dict[str, float]) -> None:
        # A History that fit is not filling would write stale files without a word.
        if not self.history.rows or self.history.last["epoch"] != metrics["epoch"]:
            raise ValueError(
                f"HistoryFiles: epoch {epoch} is not in its history; pass the same History "
                f"to HistoryFiles and to fit(history=...)"
            )
        write_history(self.directory, self.history)
