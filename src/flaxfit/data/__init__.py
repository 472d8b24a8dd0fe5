"""Data stage: MNIST and Fashion-MNIST as uint8 numpy arrays, from verified sources.

    train, test = read_idx_dir("path/to/idx")  # the four standard IDX files, raw or .gz
    train.images                                # uint8 (60000, 28, 28)
    train.labels                                # uint8 (60000,)

Pure numpy and the standard library; nothing happens at import.
"""

from .dataset import NUM_CLASSES, DataError, Dataset, Split
from .idx import read_idx, read_idx_dir, write_idx

__all__ = [
    "NUM_CLASSES",
    "DataError",
    "Dataset",
    "Split",
    "read_idx",
    "read_idx_dir",
    "write_idx",
]
