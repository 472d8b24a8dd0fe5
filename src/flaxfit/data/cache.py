"""The local cache: one uncompressed .npz per dataset, written atomically, read without pickle.

Layout of <cache_dir>/<name>.npz: uint8 arrays train_images (N, H, W) or (N, H, W, C),
train_labels (N,) (unsigned), test_images (M, ...), test_labels (M,), and `meta`, the UTF-8
bytes of a JSON object with the source, the sha256 of the source files, the class names, the
sha256 of the arrays (to catch bit rot) and, for an image folder, the key of the files it was
decoded from (`key`, so a changed file is noticed). MNIST's caches from before class names
were recorded stay valid: their names are known.
"""

import json
import os
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..files import atomic_writer
from .dataset import KNOWN_CLASSES, DataError, Dataset, Split, arrays_sha256

CACHE_FORMAT = 1
_ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")


def default_cache_dir() -> Path:
    """The cache directory: $FLAXFIT_CACHE, else $XDG_CACHE_HOME/flaxfit, else ~/.cache/flaxfit."""
    if os.environ.get("FLAXFIT_CACHE"):
        return Path(os.environ["FLAXFIT_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):  # the XDG spec says to ignore relative paths
        return Path(xdg) / "flaxfit"
    return Path.home() / ".cache" / "flaxfit"


def cache_path(cache_dir: str | os.PathLike, name: str) -> Path:
    """The cache file of dataset `name` inside `cache_dir`."""
    return Path(cache_dir) / f"{name}.npz"


def _write_npz(file: BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    # A separate function so tests can simulate a crash in the middle of a write.
    np.savez(file, **arrays)


def save_cache(
    path: str | os.PathLike, dataset: Dataset, *, key: str | None = None, extra: object = None
) -> Path:
    """Write `dataset` to `path` atomically: a temp file in the same directory, then rename.

    Readers see the old file or the new one, never a partial one, and a failed write leaves
    no temp file behind. The directory is created if missing.

    Args:
        path: the .npz file.
        dataset: what to store.
        key: what the data was made from (e.g. a digest of the source files); `load_cache`
            with another key refuses the file.
        extra: any JSON value stored beside it, returned by `read_cache_meta`.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": CACHE_FORMAT,
        "name": dataset.name,
        "source": dataset.source,
        "sha256": dataset.sha256,
        "arrays_sha256": dataset.content_sha256(),
        "class_names": list(dataset.class_names),
    }
    if key is not None:
        meta["key"] = key
    if extra is not None:
        meta["extra"] = extra
    arrays = {
        "train_images": dataset.train.images,
        "train_labels": dataset.train.labels,
        "test_images": dataset.test.images,
        "test_labels": dataset.test.labels,
        "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
    }
    with atomic_writer(path) as f:
        _write_npz(f, arrays)
    return path


def read_cache_meta(path: str | os.PathLike) -> dict:
    """The JSON metadata of a cache file, without reading its arrays.

    Raises:
        FileNotFoundError: no cache file.
        DataError: the file or its metadata is unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "meta" not in npz.files:
                raise DataError(f"{path}: cache file lacks meta")
            meta = json.loads(npz["meta"].tobytes().decode())
    except DataError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable cache file ({type(e).__name__}: {e})") from e
    if not isinstance(meta, dict):
        raise DataError(f"{path}: unknown cache format; it will be rebuilt")
    return meta


def load_cache(path: str | os.PathLike, name: str, *, key: str | None = None) -> Dataset:
    """Read and fully validate a cache file written by `save_cache`.

    Args:
        path: the .npz file.
        name: the dataset it must hold.
        key: when given, the key it must have been saved with.

    Returns:
        The dataset, with `source` saying it came from this cache.

    Raises:
        FileNotFoundError: no cache file.
        DataError: the file is unreadable, incomplete, stale (another key), or its content
            does not check out.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in (*_ARRAYS, "meta") if k not in npz.files]
            if missing:
                raise DataError(f"{path}: cache file lacks {', '.join(missing)}")
            arrays = {k: npz[k] for k in _ARRAYS}
            meta = json.loads(npz["meta"].tobytes().decode())
    except DataError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        # np.load raises any of these for a truncated or garbled file; json's errors are
        # ValueErrors.
        raise DataError(f"{path}: unreadable cache file ({type(e).__name__}: {e})") from e
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        raise DataError(f"{path}: unknown cache format; it will be rebuilt")
    if meta.get("name") != name:
        raise DataError(f"{path}: holds {meta.get('name')!r}, not {name!r}")
    if key is not None and meta.get("key") != key:
        raise DataError(f"{path}: made from other files than the ones there now (stale)")
    class_names = meta.get("class_names", KNOWN_CLASSES.get(name))
    if not isinstance(class_names, list | tuple) or not class_names:
        raise DataError(f"{path}: metadata lacks the class names")
    for k in ("train_images", "test_images"):
        if arrays[k].dtype != np.uint8:
            raise DataError(f"{path}: {k} has dtype {arrays[k].dtype}, expected uint8")
    for k in ("train_labels", "test_labels"):
        if arrays[k].dtype.kind != "u":
            raise DataError(f"{path}: {k} has dtype {arrays[k].dtype}, expected uint8 (unsigned)")
    splits = []
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        try:
            splits.append(Split(images, labels, len(class_names)))
        except DataError as e:
            raise DataError(f"{path}[{split}_images, {split}_labels]: {e}") from None
        if len(labels) == 0:
            raise DataError(f"{path}: the {split} split is empty")
    train, test = splits
    if arrays_sha256(train, test) != meta.get("arrays_sha256"):
        raise DataError(f"{path}: array contents do not match their recorded sha256 (file damaged)")
    sha256 = meta.get("sha256")
    if not isinstance(sha256, dict) or not all(isinstance(v, str) for v in sha256.values()):
        raise DataError(f"{path}: metadata lacks the source sha256s")
    try:
        return Dataset(
            name=name,
            train=train,
            test=test,
            source=f"cache {path} (from {meta.get('source')})",
            sha256=dict(sha256),
            class_names=tuple(class_names),
        )
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
