"""One trainer per run directory: an OS file lock held for the trainer's whole life.

The lock is `fcntl.flock` on `<run>/.lock`. The kernel drops it when the
process ends, however it ends, so a SIGKILLed trainer never leaves a stale
lock behind. The file also says who holds it (pid, start time, host), for the
message the second trainer prints. Readers (evaluate, predict, plot, ...) take
no lock: every file they read is replaced atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from datetime import datetime
from pathlib import Path

LOCK_FILE = ".lock"


class RunLockedError(ValueError):
    """Another process is training into this run directory."""


class RunLock:
    """An exclusive, non-blocking lock on a run directory (the directory is created).

    Use as a context manager, or `acquire()` / `release()`. On release, a
    directory that this lock created and that holds nothing but the lock file
    is removed again, so a run that failed its checks leaves no trace.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self._fd: int | None = None
        self._created = False

    def acquire(self) -> RunLock:
        if self.directory.exists() and not self.directory.is_dir():
            raise RunLockedError(f"{self.directory}: exists and is not a directory")
        self._created = not self.directory.exists()
        self.directory.mkdir(parents=True, exist_ok=True)
        # A holder that removed the file between our open and our flock would leave us
        # holding a lock on a deleted file, so check that the path still is our file.
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunLockedError(self._busy_message()) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise RunLockedError(f"{self.path}: keeps changing; is another trainer starting?")
        self._fd = fd
        return self

    def announce(self) -> None:
        """Write who holds the lock into it, for the message a second trainer prints.

        Separate from `acquire` so that a command that only finds the run finished
        changes nothing in the directory, not even this file; a trainer calls it as
        soon as it knows it will train.
        """
        if self._fd is None:
            raise RuntimeError("announce() before acquire()")
        holder = {
            "pid": os.getpid(),
            "started": datetime.now().astimezone().isoformat(timespec="seconds"),
            "host": socket.gethostname(),
        }
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, (json.dumps(holder) + "\n").encode(), 0)

    def _busy_message(self) -> str:
        try:
            holder = json.loads(self.path.read_text())
            started = datetime.fromisoformat(holder["started"]).strftime("%H:%M:%S")
            who = f"process {holder['pid']} (started {started})"
            if holder.get("host") and holder["host"] != socket.gethostname():
                who += f" on {holder['host']}"
            else:
                os.kill(int(holder["pid"]), 0)  # a holder from before that has not announced
        except (OSError, ValueError, KeyError, TypeError):  # yet: the name is not its own
            who = "another process"
        return f"{self.directory} is being trained by {who}; wait for it or use another --out"

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if self._created and [p.name for p in self.directory.iterdir()] == [LOCK_FILE]:
                self.path.unlink()  # a trainer starting now locks a new file instead
                with contextlib.suppress(OSError):  # ... and keeps the directory too
                    self.directory.rmdir()
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
