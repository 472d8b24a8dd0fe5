"""The ejected file's data section: where the run's arrays come from and their sha256.

The functions below are copied into the ejected file as they are (by
`inspect.getsource`), and the ejector itself computes the recorded sha256 with
`data_sha256`, so the file checks its data with the very code that recorded it.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np

from flaxfit.data import Dataset, parse_dataset_spec
from flaxfit.data.cache import cache_path, default_cache_dir
from flaxfit.data.idx import find_idx_files
from flaxfit.data.load import folder_cache_path
from flaxfit.runs.config import TrainConfig
from flaxfit.tools.eject.source import EjectError

#: The four arrays, in the order every loader returns them.
ROLES = ("train_images", "train_labels", "test_images", "test_labels")


def data_sha256(arrays: tuple[np.ndarray, ...]) -> str:
    """sha256 of the arrays' shapes, dtypes and bytes, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(f"{array.shape} {array.dtype.str};".encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def read_idx(path: str) -> np.ndarray:
    """One IDX file (raw or .gz): 0, 0, dtype 0x08 (uint8), ndim, big-endian sizes, bytes."""
    data = Path(path).read_bytes()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    ndim = data[3]
    shape = np.frombuffer(data, ">u4", ndim, offset=4).astype(int)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_cache(path: str) -> tuple[np.ndarray, ...]:
    """The four uint8 arrays of flaxfit's cache file (an .npz, read without pickle)."""
    with np.load(path, allow_pickle=False) as npz:
        return tuple(npz[role] for role in ROLES)


def read_npz(path: str, label_dtype: str) -> tuple[np.ndarray, ...]:
    """Your arrays file (read without pickle), its labels in the dtype flaxfit stored them."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = [npz[key] for key in ("x_train", "y_train", "x_test", "y_test")]
    x_train, y_train, x_test, y_test = arrays
    return x_train, y_train.astype(label_dtype), x_test, y_test.astype(label_dtype)


LOAD_DATA = '''
def load_data() -> tuple[np.ndarray, ...]:
    """Train images, labels, test images, labels: the arrays the run trained on."""
    arrays = {reader}
    # The same arrays as the run's, or the numbers below would not be the run's.
    if data_sha256(arrays) != DATA_SHA256:
        raise SystemExit(f"{{DATA}}: not the data the run trained on (sha256 differs)")
    return arrays
'''


def data_section(config: TrainConfig, dataset: Dataset) -> tuple[list[object], str, str]:
    """(library functions to copy, constants, `load_data`) for the run's data source.

    Raises:
        EjectError: a source the ejector does not read (CIFAR-10's own files), or a cache
            file that is missing: train once so the data is in flaxfit's cache.
    """
    arrays = (dataset.train.images, dataset.train.labels, dataset.test.images, dataset.test.labels)
    digest = data_sha256(arrays)
    if config.dataset in ("mnist", "fashion_mnist") and config.data_dir:
        files = find_idx_files(config.data_dir)
        listed = ",\n".join(f'    "{role}": "{files[role]}"' for role in ROLES)
        constants = f'DATA = {{\n{listed},\n}}\nDATA_SHA256 = "{digest}"\n'
        return [read_idx], constants, "tuple(read_idx(DATA[role]) for role in ROLES)"
    spec = parse_dataset_spec(config.dataset)
    if spec.kind == "npz":
        constants = f'DATA = "{spec.path}"  # your arrays file\nDATA_SHA256 = "{digest}"\n'
        return [read_npz], constants, f'read_npz(DATA, "{dataset.train.labels.dtype}")'
    if spec.kind == "folder" or (spec.is_named and not config.data_dir):
        # A folder is read from the arrays flaxfit decoded its pictures into, once.
        if spec.kind == "folder":
            path = folder_cache_path(spec, config.image_size, default_cache_dir())
        else:
            path = cache_path(default_cache_dir(), config.dataset)
        if not path.is_file():
            raise EjectError(
                f"{path}: no flaxfit cache of {config.dataset}; run flaxfit train once (or "
                f"flaxfit.load_data({config.dataset!r})) to make it, then eject again"
            )
        constants = f'DATA = "{path}"  # flaxfit\'s cache\nDATA_SHA256 = "{digest}"\n'
        return [load_cache], constants, "load_cache(DATA)"
    raise EjectError(
        f"dataset {config.dataset} with --data-dir: eject reads MNIST's IDX files there, or "
        "flaxfit's cache of the dataset; train once without --data-dir to fill the cache"
    )


def load_data_source(reader: str) -> str:
    """`load_data()` reading the arrays with `reader` and checking them against DATA_SHA256."""
    return LOAD_DATA.format(reader=reader).strip()


__all__ = ["ROLES", "data_section", "data_sha256", "load_data_source"]
