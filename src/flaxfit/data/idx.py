"""Strict reader and writer for IDX files, the format MNIST and Fashion-MNIST ship in.

An IDX file is: two zero bytes, a dtype code, the number of dimensions, each dimension as a
big-endian uint32, then exactly prod(dimensions) items. Files may be gzip-compressed (".gz").
"""

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from .dataset import IMAGE_SHAPE, NUM_CLASSES, DataError, Split

# The four files of the standard layout, by role.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_DTYPE_NAMES = {
    0x08: "uint8",
    0x09: "int8",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}


def decompress(data: bytes, name: str) -> bytes:
    """Gunzip `data`, turning every way a gzip stream can be broken into a DataError."""
    if data[:2] != b"\x1f\x8b":  # gzip.decompress(b"") would quietly return b""
        hint = (
            "; it looks like an uncompressed IDX file: drop the .gz" if data[:2] == b"\0\0" else ""
        )
        raise DataError(f"{name}: not a valid gzip file (no gzip header){hint}")
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise DataError(f"{name}: not a valid gzip file ({e}); download it again") from e


def parse_idx(data: bytes, name: str) -> np.ndarray:
    """Parse the bytes of an uncompressed IDX file.

    Args:
        data: the whole file content.
        name: the file name, used in error messages.

    Returns:
        A writable uint8 array with the shape given in the header.
    """
    if len(data) < 4:
        raise DataError(f"{name}: file has {len(data)} bytes, too short for an IDX header")
    if data[0] != 0 or data[1] != 0:
        hint = " (it looks gzip-compressed: name it *.gz)" if data[:2] == b"\x1f\x8b" else ""
        raise DataError(f"{name}: bad magic number {data[:4].hex()}, not an IDX file{hint}")
    code, ndim = data[2], data[3]
    if code != 0x08:
        what = (
            f"{_DTYPE_NAMES[code]} (code 0x{code:02x}) is unsupported"
            if code in _DTYPE_NAMES
            else f"unknown dtype code 0x{code:02x}"
        )
        raise DataError(f"{name}: {what}; only uint8 (0x08) IDX files are supported")
    if ndim == 0:
        raise DataError(f"{name}: header says 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{name}: header needs {header} bytes for {ndim} dimensions, "
            f"file has {len(data)} (file truncated?)"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected, found = math.prod(dims), len(data) - header
    if found != expected:
        why = "file truncated?" if found < expected else "trailing bytes after the data"
        raise DataError(
            f"{name}: expected {expected} bytes of payload for shape {dims}, found {found} ({why})"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file, raw or gzip-compressed (by the ".gz" suffix).

    Args:
        path: the file.

    Returns:
        A uint8 array with the shape in the file's header, e.g. (N, 28, 28) or (N,).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
    return parse_idx_file(data, str(path))


def parse_idx_file(data: bytes, name: str) -> np.ndarray:
    """Parse the bytes of an IDX file, gunzipping first when `name` ends in ".gz"."""
    if name.endswith(".gz"):
        data = decompress(data, name)
    return parse_idx(data, name)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a uint8 array as an IDX file, gzip-compressed when the name ends in ".gz".

    Args:
        path: the file to create or overwrite.
        array: uint8 array with 1 to 255 dimensions, e.g. images (N, 28, 28) or labels (N,).

    Returns:
        The path written.
    """
    path, array = Path(path), np.asarray(array)
    if array.dtype != np.uint8 or not 1 <= array.ndim <= 255:
        raise DataError(
            f"{path}: write_idx needs a uint8 array with 1..255 dimensions, got "
            f"{array.dtype} {array.shape}; convert with array.astype(np.uint8)"
        )
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + np.ascontiguousarray(array).tobytes()
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)  # mtime=0: same array, same bytes
    path.write_bytes(data)
    return path


def find_idx_files(directory: str | os.PathLike) -> dict[str, Path]:
    """Locate the four standard IDX files in a directory, each raw or with ".gz".

    Returns:
        The path of each file by role ("train_images", "train_labels", ...); the raw file
        wins when both forms exist.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(
            f"{directory}: not a directory; pass the directory that holds the four "
            f"IDX files ({', '.join(IDX_FILES.values())}), raw or .gz"
        )
    found, missing = {}, []
    for role, stem in IDX_FILES.items():
        candidates = [directory / stem, directory / f"{stem}.gz"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            missing.append(stem)
        else:
            found[role] = path
    if missing:
        present = sorted(p.name for p in directory.iterdir())
        shown = ", ".join(present[:20]) + (
            f", ... ({len(present)} in all)" if len(present) > 20 else ""
        )
        raise DataError(
            f"{directory}: missing {', '.join(missing)} (raw or .gz); expected the "
            f"four files {', '.join(IDX_FILES.values())}; found: {shown or 'nothing'}"
        )
    return found


def splits_from_arrays(arrays: dict[str, np.ndarray], names: dict[str, str]) -> tuple[Split, Split]:
    """Check the four arrays of the standard layout and pair them into (train, test) splits.

    Args:
        arrays: arrays by role ("train_images", "train_labels", "test_images", "test_labels").
        names: the file each array came from, by role, for error messages.

    Returns:
        (train, test).
    """
    for role, array in arrays.items():
        name = names[role]
        if role.endswith("images") and (array.ndim != 3 or array.shape[1:] != IMAGE_SHAPE):
            raise DataError(f"{name}: expected images of shape (N, 28, 28), found {array.shape}")
        if role.endswith("labels"):
            if array.ndim != 1:
                raise DataError(f"{name}: expected labels of shape (N,), found {array.shape}")
            if len(array) and int(array.max()) >= NUM_CLASSES:
                bad = int(np.argmax(array >= NUM_CLASSES))
                raise DataError(
                    f"{name}: label {array[bad]} at index {bad} is outside 0..{NUM_CLASSES - 1}"
                )
    splits = []
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise DataError(
                f"{names[split + '_images']} has {len(images)} images but "
                f"{names[split + '_labels']} has {len(labels)} labels"
            )
        if len(images) == 0:
            raise DataError(f"{names[split + '_images']}: contains no images")
        splits.append(Split(images, labels))
    return splits[0], splits[1]


def read_idx_dir(directory: str | os.PathLike) -> tuple[Split, Split]:
    """Read the four standard IDX files of a directory (raw or .gz), strictly.

    Args:
        directory: holds train-images-idx3-ubyte, train-labels-idx1-ubyte,
            t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each optionally ending in .gz.

    Returns:
        (train, test) splits: images uint8 (N, 28, 28), labels uint8 (N,), in file order.
    """
    paths = find_idx_files(directory)
    arrays = {role: read_idx(path) for role, path in paths.items()}
    return splits_from_arrays(arrays, {role: str(p) for role, p in paths.items()})
