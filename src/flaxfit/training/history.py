"""History: what `fit()` measured, one row per epoch, as plain JSON-able data."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: A classifier's per-epoch columns, in the order of metrics.csv. Other tasks
#: have their own metrics: every row holds "epoch", its "train_*" and "test_*"
#: metrics, then "seconds" and "images_per_second".
COLUMNS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "seconds",
    "images_per_second",
)


@dataclass
class History:
    """Per-epoch metrics of a run; `compile_seconds` is kept apart from epoch times.

    Epoch `seconds` exclude compilation, so `images_per_second` is the steady
    rate. Test columns are NaN when `fit()` had no test split.
    """

    rows: list[dict[str, float]] = field(default_factory=list)
    compile_seconds: float = 0.0

    def append(self, row: dict[str, float]) -> None:
        """Add one epoch's row; its columns must be the ones earlier rows have."""
        columns = row_columns(row)
        if self.rows and columns != self.columns:
            raise ValueError(f"history row has columns {columns}, earlier rows {self.columns}")
        self.rows.append({name: row[name] for name in columns})

    @property
    def columns(self) -> tuple[str, ...]:
        """The rows' columns; a classifier's `COLUMNS` before the first epoch."""
        return tuple(self.rows[0]) if self.rows else COLUMNS

    @property
    def metrics(self) -> tuple[str, ...]:
        """The measured columns: "train_*" and "test_*"."""
        return tuple(c for c in self.columns if c.startswith(("train_", "test_")))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, column: str) -> list[float]:
        """`history["test_accuracy"]` -> one value per epoch."""
        if column not in self.columns:
            raise KeyError(f"no column {column!r}; columns are {', '.join(self.columns)}")
        return [row[column] for row in self.rows]

    @property
    def last(self) -> dict[str, float]:
        if not self.rows:
            raise IndexError("history is empty: no epoch has finished")
        return self.rows[-1]

    def to_dict(self) -> dict[str, Any]:
        # JSON has no NaN: absent test metrics are written as null.
        rows = [{k: (None if _is_nan(v) else v) for k, v in row.items()} for row in self.rows]
        return {"compile_seconds": self.compile_seconds, "epochs": rows}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        history = cls(compile_seconds=float(data.get("compile_seconds", 0.0)))
        for row in data["epochs"]:
            history.append({k: (math.nan if v is None else v) for k, v in row.items()})
        return history


def row_columns(row: dict[str, Any]) -> tuple[str, ...]:
    """A row's columns in History's order; ValueError if a required one is missing."""
    missing = sorted({"epoch", "seconds", "images_per_second"} - set(row))
    train = [c for c in row if c.startswith("train_")]
    if missing or not train:
        raise ValueError(f"history row lacks {missing or ['a train_* metric']}")
    test = [c for c in row if c.startswith("test_")]
    if set(train + test) >= set(COLUMNS[1:5]):  # a classifier's row keeps the familiar order
        rest = [c for c in train + test if c not in COLUMNS]
        return COLUMNS[:5] + tuple(rest) + COLUMNS[5:]
    return ("epoch", *train, *test, "seconds", "images_per_second")


def _is_nan(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)
