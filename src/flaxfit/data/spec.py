"""One way to name a dataset, on the command line, in a config and in Python.

mnist | fashion_mnist | cifar10    a named dataset (a local copy: data_dir / --data-dir)
folder:DIR                         DIR/train/<class>/* and DIR/test/<class>/* pictures
npz:FILE                           a .npz of x_train, y_train, x_test, y_test
"""

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

from .dataset import DataError

DATASETS = ("mnist", "fashion_mnist", "cifar10")
PATH_KINDS = ("folder", "npz")
SPEC_HELP = "mnist, fashion_mnist, cifar10, folder:DIR or npz:FILE"


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed dataset name.

    Attributes:
        kind: one of DATASETS, or "folder" or "npz".
        path: for "folder" and "npz", the absolute path (as given, symlinks not resolved),
            so a config that records the spec still finds the data from another directory.
    """

    kind: str
    path: Path | None = None

    def __str__(self) -> str:
        """The canonical spec string: "cifar10", "folder:/abs/dir", "npz:/abs/file.npz"."""
        return self.kind if self.path is None else f"{self.kind}:{self.path}"

    @property
    def is_named(self) -> bool:
        """True for mnist, fashion_mnist and cifar10, which `data_dir` can point at."""
        return self.path is None


def parse_dataset_spec(spec: "str | DatasetSpec") -> DatasetSpec:
    """Parse "mnist", "cifar10", "folder:DIR", "npz:FILE", ... (the syntax only).

    Nothing is read: a path that does not exist is reported when the data is loaded, so a
    recorded run whose data moved can still be opened.

    Args:
        spec: the string, or an already parsed DatasetSpec (returned as it is).

    Returns:
        The DatasetSpec, its path made absolute (relative to the current directory, "~"
        expanded).

    Raises:
        DataError: an unknown name or a prefix without a path; the message says the choices.
    """
    if isinstance(spec, DatasetSpec):
        return spec
    if not isinstance(spec, str):
        raise DataError(f"a dataset is named by a string ({SPEC_HELP}), not {type(spec).__name__}")
    text = spec.strip()
    kind, sep, rest = text.partition(":")
    if sep and kind in PATH_KINDS:
        if not rest.strip():
            what = "directory" if kind == "folder" else ".npz file"
            raise DataError(f"dataset {spec!r} names no {what}; write e.g. {kind}:path/to/it")
        return DatasetSpec(kind, Path(os.path.abspath(os.path.expanduser(rest.strip()))))
    if sep and kind in DATASETS:
        raise DataError(
            f"dataset {spec!r}: {kind} takes no path; name a local copy of it with data_dir "
            "(CLI: --data-dir DIR)"
        )
    if text in DATASETS:
        return DatasetSpec(text)
    hint = ""
    close = difflib.get_close_matches(text.lower().replace("-", ""), DATASETS, n=1, cutoff=0.6)
    if close:
        hint = f"; did you mean {close[0]}?"
    elif text and Path(text).expanduser().is_dir():
        hint = f"; for the image folder {text}, write folder:{text}"
    elif text.endswith(".npz"):
        hint = f"; for the arrays file {text}, write npz:{text}"
    raise DataError(f"dataset {spec!r} is unknown{hint} (choose {SPEC_HELP})")
