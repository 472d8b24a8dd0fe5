"""CIFAR-10 from its canonical binary archive (or the extracted .bin files), without pickle.

The archive cifar-10-binary.tar.gz holds cifar-10-batches-bin/ with data_batch_1..5.bin
(training) and test_batch.bin, each 10 000 records of 1 label byte and 3 072 pixel bytes
(1 024 red, then 1 024 green, then 1 024 blue, rows top to bottom), and batches.meta.txt with
the ten class names, one per line. Members are read straight out of the gzip stream, one pass,
nothing extracted to disk, and nothing but those seven members is read. Tests replace the
module constants (URL, size, sha256, records per batch) to use a small synthetic archive.
"""

import hashlib
import os
import tarfile
import zlib
from pathlib import Path

import numpy as np

from .dataset import DataError, Split, check_labels

ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
ARCHIVE_NAME = "cifar-10-binary.tar.gz"
ARCHIVE_SIZE = 170_052_171
ARCHIVE_SHA256 = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
ARCHIVE_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # the one the dataset's page publishes

MEMBER_DIR = "cifar-10-batches-bin"
TRAIN_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_BATCHES = ("test_batch.bin",)
META_FILE = "batches.meta.txt"
RECORDS_PER_BATCH = 10_000
RECORD_BYTES = 1 + 3 * 32 * 32
NUM_CLASSES = 10
_MAX_META_BYTES = 4096  # the real one is 61 bytes; anything large is not that file


def _batch_files() -> tuple[str, ...]:
    return TRAIN_BATCHES + TEST_BATCHES


def parse_batch(data: bytes, name: str) -> Split:
    """Records of one .bin batch -> a Split of uint8 images (N, 32, 32, 3) and labels (N,).

    Args:
        data: the whole file: RECORDS_PER_BATCH records of 3 073 bytes.
        name: the file, for error messages.
    """
    expected = RECORDS_PER_BATCH * RECORD_BYTES
    if len(data) != expected:
        why = "truncated?" if len(data) < expected else "trailing bytes?"
        raise DataError(
            f"{name}: {len(data)} bytes, expected {expected} ({RECORDS_PER_BATCH} records of "
            f"{RECORD_BYTES} bytes; {why})"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(RECORDS_PER_BATCH, RECORD_BYTES)
    labels = records[:, 0].copy()
    check_labels(labels, NUM_CLASSES, name)
    # Channel-major (N, 3, 32, 32) on disk; channel-last (N, 32, 32, 3) is what image code
    # (and flax's Conv) takes. The copy makes it contiguous: 150 MB once, not per batch.
    images = np.ascontiguousarray(records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return Split(images, labels, NUM_CLASSES)


def parse_class_names(data: bytes, name: str) -> tuple[str, ...]:
    """The ten class names of batches.meta.txt, one per line (blank lines ignored)."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise DataError(f"{name}: not a text file of class names") from None
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != NUM_CLASSES or len(set(names)) != NUM_CLASSES:
        raise DataError(f"{name}: expected {NUM_CLASSES} distinct class names, found {names}")
    return names


def _assemble(contents: dict[str, bytes], where: str) -> tuple[Split, Split, tuple[str, ...]]:
    missing = [n for n in (*_batch_files(), META_FILE) if n not in contents]
    if missing:
        raise DataError(f"{where}: lacks {', '.join(missing)}")
    class_names = parse_class_names(contents[META_FILE], f"{where}/{META_FILE}")
    # pop: each file's bytes go as soon as they are parsed (180 MB in all).
    train = [parse_batch(contents.pop(n), f"{where}/{n}") for n in TRAIN_BATCHES]
    test = [parse_batch(contents.pop(n), f"{where}/{n}") for n in TEST_BATCHES]

    def join(parts: list[Split]) -> Split:
        if len(parts) == 1:
            return parts[0]
        images = np.concatenate([p.images for p in parts])
        return Split(images, np.concatenate([p.labels for p in parts]), NUM_CLASSES)

    return join(train), join(test), class_names


def read_archive(path: str | os.PathLike) -> tuple[Split, Split, tuple[str, ...]]:
    """Read the six batches and the class names straight out of cifar-10-binary.tar.gz.

    The archive is not checked here (see `check_archive`); only its seven members under
    cifar-10-batches-bin/ are read, each must be a regular file, none may appear twice.

    Returns:
        (train, test, class_names): 50 000 and 10 000 examples, images uint8 (N, 32, 32, 3),
        labels uint8 (N,), in file order (data_batch_1 first).
    """
    path = Path(path)
    wanted = {f"{MEMBER_DIR}/{n}": n for n in (*_batch_files(), META_FILE)}
    contents: dict[str, bytes] = {}
    try:
        # "r|gz": one forward pass over the stream; a member is read as it goes by.
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                if name is None:
                    continue  # tarfile skips its bytes; nothing else of the archive is read
                if name in contents:
                    raise DataError(f"{path}: {member.name} appears twice in the archive")
                if not member.isreg():
                    raise DataError(f"{path}: {member.name} is not a regular file")
                limit = _MAX_META_BYTES if name == META_FILE else RECORDS_PER_BATCH * RECORD_BYTES
                if member.size > limit:
                    raise DataError(f"{path}: {member.name} has {member.size} bytes, more than "
                                    f"the {limit} it should have")  # fmt: skip
                file = tar.extractfile(member)
                assert file is not None  # a regular file always has one
                contents[name] = file.read()
    except DataError:
        raise
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e})") from e
    except (tarfile.TarError, EOFError, zlib.error) as e:
        # gzip's BadGzipFile is an OSError; a cut stream is an EOFError or a ReadError.
        raise DataError(f"{path}: not a valid .tar.gz archive ({type(e).__name__}: {e})") from e
    return _assemble(contents, f"{path}:{MEMBER_DIR}")


def check_archive(path: str | os.PathLike) -> str:
    """Check that `path` is the canonical archive: ARCHIVE_SIZE bytes with ARCHIVE_SHA256.

    Returns:
        Its sha256.

    Raises:
        DataError: the size or the digest differ; the message says what to do.
    """
    path = Path(path)
    size = path.stat().st_size
    if size != ARCHIVE_SIZE:
        raise DataError(
            f"{path}: {size} bytes, expected {ARCHIVE_SIZE} (an incomplete or different "
            f"file); download {ARCHIVE_URL} again"
        )
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != ARCHIVE_SHA256:
        raise DataError(
            f"{path}: sha256 {digest.hexdigest()} does not match the expected {ARCHIVE_SHA256} "
            f"(corrupted or altered file); download {ARCHIVE_URL} again"
        )
    return digest.hexdigest()


def find_local_copy(directory: str | os.PathLike) -> Path:
    """Where in `directory` CIFAR-10 is: the archive, or a folder of the extracted .bin files.

    Looks for DIR/cifar-10-binary.tar.gz, then the .bin files in DIR/cifar-10-batches-bin/,
    then in DIR itself.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory; pass the directory that holds "
                        f"{ARCHIVE_NAME} or the extracted {MEMBER_DIR}/*.bin files")  # fmt: skip
    archive = directory / ARCHIVE_NAME
    if archive.is_file():
        return archive
    for folder in (directory / MEMBER_DIR, directory):
        if any((folder / n).is_file() for n in _batch_files()):
            return folder
    present = sorted(p.name for p in directory.iterdir())[:20]
    raise DataError(
        f"{directory}: has neither {ARCHIVE_NAME} nor the extracted .bin files "
        f"({', '.join(_batch_files())}, {META_FILE}, in {MEMBER_DIR}/ or here); found: "
        f"{', '.join(present) or 'nothing'}"
    )


def read_extracted(directory: str | os.PathLike) -> tuple[Split, Split, tuple[str, ...], dict]:
    """Read the six extracted .bin files and batches.meta.txt of `directory`.

    Their sizes are checked (no published digests exist for the single files); their sha256s
    are returned for the run's manifest.

    Returns:
        (train, test, class_names, sha256 by file name).
    """
    directory = Path(directory)
    contents, sha256 = {}, {}
    for name in (*_batch_files(), META_FILE):
        path = directory / name
        try:
            contents[name] = path.read_bytes()
        except FileNotFoundError:
            continue  # _assemble lists every missing file at once
        except OSError as e:
            raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
        sha256[name] = hashlib.sha256(contents[name]).hexdigest()
    train, test, class_names = _assemble(contents, str(directory))
    return train, test, class_names, sha256
