"""An arrays file as a dataset: a .npz of x_train, y_train, x_test, y_test (and class_names).

    np.savez("mine.npz", x_train=x, y_train=y, x_test=xt, y_test=yt,
             class_names=np.array(["cat", "dog"]))       # optional
    flaxfit.load_data("npz:mine.npz")

Images are uint8 (N, H, W) or (N, H, W, C) with C = 1 or 3; labels integers (N,) from 0.
Read with allow_pickle=False: an object array (which only pickle could rebuild) is refused.
"""

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np

from .dataset import DataError, Split, check_labels, label_dtype

REQUIRED = ("x_train", "y_train", "x_test", "y_test")
OPTIONAL = ("class_names",)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        npz = np.load(path, allow_pickle=False)
    except ValueError as e:  # what numpy says for a pickle file (e.g. from np.save(obj))
        raise DataError(f"{path}: not a .npz of plain arrays ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(
            f"{path}: not a readable .npz file ({type(e).__name__}: {e}); is it complete, and "
            "written by np.savez?"
        ) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: a single .npy array, not a .npz; save with np.savez(path, "
                        "x_train=..., y_train=..., x_test=..., y_test=...)")  # fmt: skip
    with npz:
        missing = [k for k in REQUIRED if k not in npz.files]
        unknown = sorted(set(npz.files) - set(REQUIRED) - set(OPTIONAL))
        if missing or unknown:
            problems = [f"lacks {', '.join(missing)}"] if missing else []
            problems += [f"has unexpected {', '.join(unknown)}"] if unknown else []
            raise DataError(
                f"{path}: {' and '.join(problems)}; expected exactly {', '.join(REQUIRED)} "
                f"(and optionally {', '.join(OPTIONAL)})"
            )
        arrays = {}
        for key in npz.files:
            try:
                arrays[key] = npz[key]
            except ValueError as e:
                if "allow_pickle" in str(e):
                    raise DataError(
                        f"{path}: {key} is an object array, which needs pickle to load (refused); "
                        "save it as a numeric (or, for class_names, a string) array"
                    ) from None
                raise DataError(f"{path}: {key} is unreadable ({e})") from None
            except (OSError, EOFError, zipfile.BadZipFile) as e:
                raise DataError(
                    f"{path}: {key} is unreadable ({type(e).__name__}: {e}; file truncated?)"
                ) from None
    return arrays


def _check_images(x: np.ndarray, where: str) -> None:
    shape_ok = x.ndim == 3 or (x.ndim == 4 and x.shape[3] in (1, 3))
    if not shape_ok or 0 in x.shape[1:]:
        raise DataError(
            f"{where}: shape {x.shape}; images must be (N, H, W) or (N, H, W, C) with C = 1 or 3"
        )
    if x.dtype != np.uint8:
        floats = x.dtype.kind == "f"
        hint = " (floats in [0, 1]: (x * 255).round().astype(np.uint8))" if floats else ""
        raise DataError(f"{where}: dtype {x.dtype}; images must be uint8 0..255{hint}")


def _check_labels(y: np.ndarray, x: np.ndarray, where: str) -> None:
    if y.dtype.kind not in "iu" or y.ndim != 1:
        raise DataError(f"{where}: {y.dtype} {y.shape}; labels must be integers of shape (N,)")
    if len(y) != len(x):
        raise DataError(f"{where}: {len(y)} labels for {len(x)} images")
    if len(y) == 0:
        raise DataError(f"{where}: no examples")
    if y.min() < 0:
        bad = int(np.argmax(y < 0))
        raise DataError(f"{where}: label {y[bad]} at index {bad} is negative; labels count from 0")


def _class_names(names: np.ndarray, where: str) -> tuple[str, ...]:
    if names.dtype.kind not in "US" or names.ndim != 1 or len(names) == 0:
        raise DataError(f"{where}: {names.dtype} {names.shape}; class names must be a 1-D "
                        'string array, e.g. np.array(["cat", "dog"])')  # fmt: skip
    try:
        result = tuple(str(n) if names.dtype.kind == "U" else n.decode() for n in names)
    except UnicodeDecodeError:
        raise DataError(f"{where}: class names are not UTF-8") from None
    if not all(result) or len(set(result)) != len(result):
        raise DataError(f"{where}: class names must be distinct and non-empty, got {result}")
    return result


def read_npz(path: str | os.PathLike) -> tuple[Split, Split, tuple[str, ...] | None, str]:
    """Read and validate an arrays file.

    Args:
        path: the .npz (compressed or not).

    Returns:
        (train, test, class_names or None, the file's sha256). Labels become uint8 (wider
        past 256 classes). Without class_names the classes are 0..max train label, and a
        test label past them is an error.

    Raises:
        DataError: the file is missing, unreadable, holds object arrays, or its arrays have
            the wrong keys, dtypes, shapes, counts or labels; the message names the array.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (npz:FILE names a .npz of arrays)")
    try:
        sha256 = _sha256(path)
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e})") from e
    arrays = _read_arrays(path)
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        _check_images(x, f"{path}[x_{split}]")
        _check_labels(y, x, f"{path}[y_{split}]")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(f"{path}: x_train images are {arrays['x_train'].shape[1:]}, x_test "
                        f"images {arrays['x_test'].shape[1:]}; both need one shape")  # fmt: skip
    class_names = None
    if "class_names" in arrays:
        class_names = _class_names(arrays["class_names"], f"{path}[class_names]")
        num_classes = len(class_names)
    else:
        num_classes = int(arrays["y_train"].max()) + 1
    splits = []
    for split in ("train", "test"):
        y = arrays[f"y_{split}"]
        where = f"{path}[y_{split}]"
        if class_names is None and split == "test" and int(y.max()) >= num_classes:
            bad = int(np.argmax(y >= num_classes))
            raise DataError(
                f"{where}: label {y[bad]} at index {bad}, but the train labels only go up to "
                f"{num_classes - 1}; add class_names to name every class"
            )
        check_labels(y, num_classes, f"{where} (class_names has {num_classes})")
        splits.append(Split(arrays[f"x_{split}"], y.astype(label_dtype(num_classes)), num_classes))
    return splits[0], splits[1], class_names, sha256
