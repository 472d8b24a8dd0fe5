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


#: Where a session's wall time goes, in seconds, in the order it is spent ("imports" and
#: "data" only when the caller of fit() measured them, as `flaxfit train` does).
WALL_PARTS = ("imports", "data", "compile", "training", "evaluation")


@dataclass
class History:
    """Per-epoch metrics of a run; `compile_seconds` is kept apart from epoch times.

    Epoch `seconds` exclude compilation, so `images_per_second` is the steady
    rate. Test columns are NaN when `fit()` had no test split.

    `sessions` has one entry per fit() call that trained the run (a resumed run
    has several): its `WALL_PARTS` in seconds, "programs" (XLA programs compiled
    up front) and "from_cache" (how many of those came from the persistent
    compilation cache instead of the compiler).
    """

    rows: list[dict[str, float]] = field(default_factory=list)
    compile_seconds: float = 0.0
    sessions: list[dict[str, float]] = field(default_factory=list)

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
        """The measured columns, `train_*` and `test_*`."""
        return tuple(c for c in self.columns if c.startswith(("train_", "test_")))

    def start_session(self, session: dict[str, float] | None = None) -> dict[str, float]:
        """Record `session` (what the caller measured already, e.g. {"imports": 2.1}, or a
        new dict) as the latest session, with fit()'s parts at 0; returns it to fill in."""
        session = {} if session is None else session
        for part in WALL_PARTS[2:]:
            session.setdefault(part, 0.0)
        session.setdefault("programs", 0)
        session.setdefault("from_cache", 0)
        self.sessions.append(session)
        return session

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
        return {"compile_seconds": self.compile_seconds, "epochs": rows, "sessions": self.sessions}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        history = cls(
            compile_seconds=float(data.get("compile_seconds", 0.0)),
            sessions=[dict(session) for session in data.get("sessions", [])],  # older runs: none
        )
        for row in data["epochs"]:
            history.append({k: (math.nan if v is None else v) for k, v in row.items()})
        return history


def format_session(session: dict[str, float], total: float | None = None) -> str:
    """One line: where a session's wall time went, and what the compilation cache saved.

    `total` (the process's wall time) adds the rest as "other": model set-up,
    checkpoints, files.

    >>> format_session({"data": 0.5, "compile": 0.3, "training": 3.0, "programs": 4,
    ...                 "from_cache": 4}, total=5.0)
    'wall 5.0 s: data 0.5, compile 0.3 (4/4 from the cache), training 3.0, other 1.2'
    """
    parts = []
    for part in (part for part in WALL_PARTS if part in session):
        parts.append(f"{part} {session[part]:.1f}")
        if part == "compile" and session.get("programs"):
            parts[-1] += f" ({session['from_cache']}/{session['programs']} from the cache)"
    measured = sum(session.get(part, 0.0) for part in WALL_PARTS)
    if total is not None:
        parts.append(f"other {total - measured:.1f}")
    return f"wall {measured if total is None else total:.1f} s: " + ", ".join(parts)


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
