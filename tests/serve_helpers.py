"""Shared by the digit pad's tests: a run that reads handwriting, a live server, PNG bytes."""

from __future__ import annotations

import contextlib
import io
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from helpers import shared_directory


def png_bytes(array: np.ndarray) -> bytes:
    """A uint8 (H, W) or (H, W, C) array as PNG file bytes."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny, valid-looking PNG whose header declares width x height pixels.

    This is what a decompression bomb looks like before decoding: a few dozen
    bytes that would need gigabytes once decoded.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    pixels = zlib.compress(b"\0" * 1024)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
            + chunk(b"IEND", b""))  # fmt: skip


def shared_digit_run(tmp_path_factory) -> Path:
    """A cnn1 run trained on `stroke_digits`: it reads digits drawn with a pen or a mouse.

    Trained once per test session (about 10 s on 2 cores) and shared by the
    pytest-xdist workers (see `helpers.shared_directory`).
    """
    from flaxfit.data import Dataset, Split
    from flaxfit.runs.config import TrainConfig
    from flaxfit.runs.directory import train_run
    from stroke_digits import stroke_digits

    def make(run: Path) -> None:
        train, test = stroke_digits(1500, seed=0), stroke_digits(300, seed=1)
        data = Dataset("mnist", Split(*train), Split(*test), source="tests/stroke_digits.py")
        config = TrainConfig(model="cnn1", epochs=1, batch_size=50)
        train_run(config, run, dataset=data, verbose=False, log=lambda message: None)

    return shared_directory(tmp_path_factory, "stroke-digits-cnn1", make)


@contextlib.contextmanager
def live_server(app, timeout: float = 30.0) -> Iterator[str]:
    """Run `app` with uvicorn on 127.0.0.1 (a free port) in a thread; yields its base URL.

    Ready means /healthz answers: polled with a deadline rather than slept on.
    """
    import uvicorn

    from flaxfit.tools.serve.server import bind

    sock = bind("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    # log_config=None: uvicorn leaves logging alone (its own setup would hold on to
    # the stream pytest captures this test's output with).
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until_healthy(url, timeout, alive=thread.is_alive)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def wait_until_healthy(url: str, timeout: float, alive=lambda: True) -> None:
    """Poll GET url/healthz until it answers 200; AssertionError after `timeout` seconds."""
    import httpx2 as httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert alive(), f"the server at {url} stopped before it answered"
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.05)  # poll interval, not synchronisation: the loop checks the answer
    raise AssertionError(f"{url}/healthz did not answer within {timeout} s")
