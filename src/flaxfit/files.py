"""Atomic file writes: a reader never sees a half-written file, a crash never corrupts one.

Standard library only, so every stage (the data cache included) can use it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces `path` only when the block finishes without error.

    The data goes to a temp file in the same directory, is fsynced, and is
    renamed over `path`; on any error the temp file is removed and `path`
    keeps its old content.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())  # the rename must not land before the data does
        os.chmod(tmp, 0o644)  # mkstemp makes it private; these files are meant to be shared
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None:  # say which file it was
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write `data` (str as UTF-8) to `path` atomically; returns the path."""
    with atomic_writer(path) as file:
        file.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


# --- a directory's SHA256SUMS --------------------------------------------------
# The files of a run (config, history, manifest, params) are listed with their
# sha256 in SHA256SUMS beside them, in `sha256sum` format, so `sha256sum -c
# SHA256SUMS` checks a run too. A reader compares what it read with that list,
# so a byte flipped on disk is noticed instead of silently trusted.

SUMS_FILE = "SHA256SUMS"


class IntegrityError(ValueError):
    """A file is missing, unreadable, or not what was written; the message names it."""


def sha256_hex(data: bytes) -> str:
    """The sha256 of `data` as 64 hex digits."""
    return hashlib.sha256(data).hexdigest()


def read_sums(directory: str | os.PathLike) -> dict[str, set[str]]:
    """{file name: accepted sha256s} from `directory`/SHA256SUMS ({} if there is none).

    A name may be listed twice while it is being replaced (see `write_recorded`).
    """
    path = Path(directory) / SUMS_FILE
    try:
        text = path.read_bytes().decode("ascii")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError:
        raise IntegrityError(f"{path}: damaged (not a sha256sum list)") from None
    except OSError as error:
        raise IntegrityError(f"{path}: cannot read it ({error.strerror})") from None
    sums: dict[str, set[str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise IntegrityError(f"{path}: damaged (line {number} is not 'SHA256  NAME')")
        sums.setdefault(name, set()).add(digest)
    if not text.endswith("\n"):  # every write ends in a newline: a shorter file was cut
        raise IntegrityError(f"{path}: damaged (truncated)")
    return sums


def write_sums(directory: str | os.PathLike, sums: dict[str, set[str]]) -> None:
    """Write `sums` ({file name: sha256s}) as `directory`/SHA256SUMS, atomically."""
    lines = [f"{digest}  {name}\n" for name in sorted(sums) for digest in sorted(sums[name])]
    write_atomic(Path(directory) / SUMS_FILE, "".join(lines))


def write_recorded(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write `data` to `path` atomically and record its sha256 in SHA256SUMS beside it.

    Lock-free for readers: SHA256SUMS first lists both the old and the new
    digest, then the file is replaced, then only the new digest stays, so a
    reader that reads either version of the file finds it listed. Only one
    process may write a directory (a run's lock sees to that).
    """
    path = Path(path)
    data = data.encode() if isinstance(data, str) else data
    new = sha256_hex(data)
    sums = read_sums(path.parent)
    old = sums.get(path.name, set())
    if old != {new}:
        write_sums(path.parent, {**sums, path.name: old | {new}})
    write_atomic(path, data)
    if old - {new}:
        write_sums(path.parent, {**sums, path.name: {new}})
    return path


def read_recorded(path: str | os.PathLike, *, missing: str = "no such file") -> bytes:
    """The bytes of `path`, checked against its sha256 in SHA256SUMS beside it.

    Raises:
        IntegrityError: the file is missing (the message ends with `missing`),
            unreadable, not listed, or its bytes differ from what was recorded.
    """
    path = Path(path)
    sums_path = path.parent / SUMS_FILE
    # The list is read before and after the file: whichever version of the file
    # was read, one of the two lists names it (see write_recorded's order).
    before = read_sums(path.parent)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IntegrityError(f"{path}: {missing}") from None
    except OSError as error:
        raise IntegrityError(f"{path}: cannot read it ({error.strerror})") from None
    if not sums_path.exists():
        raise IntegrityError(f"{sums_path}: missing, so {path.name} cannot be verified")
    recorded = before.get(path.name, set()) | read_sums(path.parent).get(path.name, set())
    if not recorded:
        raise IntegrityError(f"{path}: not listed in {sums_path}, so it cannot be verified")
    if sha256_hex(data) not in recorded:
        raise IntegrityError(
            f"{path}: damaged or changed since flaxfit wrote it (its sha256 differs from "
            f"the one in {SUMS_FILE})"
        )
    return data
