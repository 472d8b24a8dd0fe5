"""History: what `fit()` measured, one row per epoch, as plain JSON-able data."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: Per-epoch columns, in the order of metrics.csv.
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
        missing = set(COLUMNS) - set(row)
        if missing:
            raise ValueError(f"history row lacks {sorted(missing)}")
        self.rows.append({name: row[name] for name in COLUMNS})

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, column: str) -> list[float]:
        """`history["test_accuracy"]` -> one value per epoch."""
        if column not in COLUMNS:
            raise KeyError(f"no column {column!r}; columns are {', '.join(COLUMNS)}")
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


def _is_nan(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)
