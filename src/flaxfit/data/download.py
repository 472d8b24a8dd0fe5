"""Large downloads: resumable, with a progress line, verified before anything uses them.

`download` fetches a URL into DEST.part beside DEST; after an interruption (a cut connection,
Ctrl-C, a crash) the next call asks the server for the rest (an HTTP Range request) and
starts over if the server does not resume. Only a file whose size and sha256 match is renamed
to DEST; a mismatch deletes the .part, so a bad transfer is never resumed or used. A lock
file keeps two processes (e.g. the processes of one distributed job) off one .part.
"""

import hashlib
import os
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.client import HTTPException
from pathlib import Path
from typing import TextIO
from urllib.error import HTTPError

from .dataset import DataError, format_bytes

try:
    import fcntl
except ImportError:  # Windows: no lock, one process at a time is up to the user
    fcntl = None

TIMEOUT_S = 15.0  # seconds to connect and for each read to make progress
ATTEMPTS = 3  # connections per call; one that brought nothing is not tried again
RETRY_WAIT_S = 1.0  # times the failure count: 1 s, then 2 s
_CHUNK = 1 << 16


class Progress:
    """Download progress on a stream: a bar redrawn in place on a terminal, else plain lines.

    On a terminal the line is redrawn at most 10 times a second; in a log file (not a
    terminal) one line is written per 10% done, so a log stays short and readable.
    """

    def __init__(self, prefix: str, total: int, stream: TextIO | None = None) -> None:
        self.prefix, self.total = prefix, total
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start_done, self.start_time = 0, time.monotonic()
        self.last_draw, self.last_decile, self.drawn = 0.0, -1, False

    def begin(self, done: int) -> None:
        """A (re)connection starts with `done` bytes already there; the rate counts from here."""
        self.start_done, self.start_time = done, time.monotonic()
        self.last_decile = done * 10 // self.total

    def line(self, done: int) -> str:
        """e.g. "[#######.............]  58.2/170.1 MB  34%  6.1 MB/s"."""
        fraction = min(done / self.total, 1.0)
        seconds = time.monotonic() - self.start_time
        rate = (done - self.start_done) / seconds if seconds > 0 else 0.0
        bar = "#" * int(20 * fraction)
        return (
            f"[{bar:.<20}] {done / 1e6:6.1f}/{self.total / 1e6:.1f} MB {100 * fraction:3.0f}%  "
            f"{format_bytes(int(rate))}/s"
        )

    def update(self, done: int) -> None:
        """`done` bytes of `total` are there."""
        now = time.monotonic()
        if self.tty:
            if now - self.last_draw >= 0.1 or done >= self.total:
                self.stream.write(f"\r{self.prefix}{self.line(done)}\x1b[K")
                self.stream.flush()
                self.last_draw, self.drawn = now, True
        elif (decile := done * 10 // self.total) > self.last_decile:
            self.stream.write(f"{self.prefix}{self.line(done)}\n")
            self.stream.flush()
            self.last_decile = decile

    def close(self) -> None:
        """End the redrawn line, so whatever is printed next starts on a line of its own."""
        if self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def file_sha256(path: Path) -> str:
    """sha256 of a file's content, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # waits while another process downloads
        yield  # the lock goes with the file's closing, also if the process dies


def _verify(path: Path, size: int, sha256: str) -> str | None:
    """None if `path` has `size` bytes and this sha256, else what is wrong."""
    found = path.stat().st_size
    if found != size:
        return f"{found} bytes, expected {size}"
    digest = file_sha256(path)
    if digest != sha256:
        return f"sha256 {digest} does not match the expected {sha256} (corrupted or altered)"
    return None


class _Incomplete(ConnectionError):
    """The server closed the connection before the whole file came."""


def _transfer(
    url: str, part: Path, size: int, timeout: float, progress: Progress | None, say: Callable
) -> None:
    """One connection: append to `part` from its current size (or restart at 0) until done."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "flaxfit"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        content_range = response.headers.get("Content-Range", "")
        if have and not (response.status == 206 and content_range.startswith(f"bytes {have}-")):
            say(f"the server does not resume at byte {have}; downloading from the start")
            have = 0
        elif have:
            say(f"resuming after the {format_bytes(have)} already in {part}")
        if progress is not None:
            progress.begin(have)
        with open(part, "ab" if have else "wb") as f:
            # Read one byte past `size` at most: it reveals a larger file without reading it.
            while have <= size and (chunk := response.read(min(_CHUNK, size + 1 - have))):
                f.write(chunk)
                have += len(chunk)
                if progress is not None:
                    progress.update(have)
    if have > size:
        raise DataError(f"{url}: larger than the expected {size} bytes (a different file)")
    if have < size:
        raise _Incomplete(f"connection closed after {have} of {size} bytes")


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    size: int,
    sha256: str,
    say: Callable[[str], None] = lambda message: None,
    progress: Progress | None = None,
    timeout: float | None = None,
    attempts: int | None = None,
) -> Path:
    """Download `url` to `dest`, resuming an earlier partial download, and verify it.

    Args:
        url: what to fetch (http, https or file).
        dest: the file to create; its directory is created if missing. An existing `dest`
            that checks out is returned at once; one that does not is deleted first.
        size, sha256: what the file must be, exactly.
        say: called with one line per event a person should see (a retry, a restart).
        progress: shows the transfer; None shows nothing.
        timeout: seconds to connect and for each read; default TIMEOUT_S.
        attempts: connections to try in this call (the next is tried only after one that
            was cut mid-transfer); default ATTEMPTS.

    Returns:
        `dest`, verified.

    Raises:
        DataError: the download failed (the .part is kept for the next call, which resumes),
            or the file is not the expected one (the .part is deleted).
        KeyboardInterrupt: the .part is kept for the next call.
    """
    # The module's constants are read now, not at import, so that tests can replace them.
    timeout = TIMEOUT_S if timeout is None else timeout
    attempts = ATTEMPTS if attempts is None else attempts
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest.with_name(dest.name + ".lock")):
        if dest.exists():
            if _verify(dest, size, sha256) is None:
                return dest
            dest.unlink()
        failures = 0
        try:
            while not (part.exists() and part.stat().st_size == size):
                if part.exists() and part.stat().st_size > size:
                    part.unlink()
                before = part.stat().st_size if part.exists() else 0
                try:
                    _transfer(url, part, size, timeout, progress, say)
                except DataError:
                    part.unlink(missing_ok=True)
                    raise
                except (OSError, HTTPException, ValueError) as e:
                    # URLError and timeouts are OSErrors, a cut connection an HTTPException,
                    # a malformed URL a ValueError.
                    if progress is not None:
                        progress.close()
                    if isinstance(e, HTTPError) and e.code == 416:  # nothing left to resume
                        part.unlink(missing_ok=True)
                    reason = e if isinstance(e, HTTPError) else getattr(e, "reason", None) or e
                    failures += 1
                    kept = part.stat().st_size if part.exists() else 0
                    # Try again only after a transfer that was cut: a name that does not
                    # resolve or a refused connection fails the same way a second later.
                    retry = kept != before  # (a deleted .part after a 416 counts as a change)
                    if not retry or failures >= attempts:
                        resume = (
                            f"; {format_bytes(kept)} of {format_bytes(size)} kept in {part}, "
                            "run again to resume"
                            if kept
                            else ""
                        )
                        raise DataError(f"{url}: {type(e).__name__}: {reason}{resume}") from e
                    say(f"{type(e).__name__}: {reason}; trying again from byte {kept}")
                    time.sleep(RETRY_WAIT_S * failures)
        except KeyboardInterrupt:
            if progress is not None:
                progress.close()
            kept = part.stat().st_size if part.exists() else 0
            say(f"interrupted; {format_bytes(kept)} kept in {part}: run again to resume")
            raise
        if progress is not None:
            progress.close()
        problem = _verify(part, size, sha256)
        if problem is not None:
            part.unlink()
            raise DataError(f"{url}: {problem}; the download was deleted, run again to retry")
        os.replace(part, dest)
    return dest
