"""The digit pad on a real uvicorn server on 127.0.0.1: a burst of concurrent requests,
and a chunked upload that never says how long it is."""

import asyncio
import base64
import socket
import time

import httpx2 as httpx
import numpy as np
import pytest

from flaxfit.runs.directory import load_run
from flaxfit.tools.serve import create_app
from serve_helpers import live_server, png_bytes, shared_digit_run
from stroke_digits import draw_digit, stroke_digits

LIMIT = 64 * 1024
CONCURRENT = 300


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    app = create_app(load_run(shared_digit_run(tmp_path_factory)), max_body=LIMIT)
    with live_server(app) as url:
        yield url


def request_bodies():
    """30 different requests: arrays and PNGs, with and without feature maps."""
    images, _ = stroke_digits(20, seed=11)
    bodies = [
        {"image": image.tolist(), "feature_maps": i % 2 == 0} for i, image in enumerate(images)
    ]
    rng = np.random.default_rng(12)
    for label in range(10):
        png = png_bytes(255 - draw_digit(label, rng))  # dark on white, 96x96
        bodies.append({"png": base64.b64encode(png).decode(), "feature_maps": label % 3 == 0})
    return bodies


def test_hundreds_of_concurrent_requests_all_succeed_with_the_sequential_answers(url, capsys):
    bodies = request_bodies()
    with httpx.Client(base_url=url, timeout=30) as client:
        sequential = [client.post("/api/predict", json=body).json() for body in bodies]

    async def burst():
        limits = httpx.Limits(max_connections=CONCURRENT)  # one connection per request
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
            calls = [client.post("/api/predict", json=bodies[i % len(bodies)])
                     for i in range(CONCURRENT)]  # fmt: skip
            return await asyncio.gather(*calls)

    start = time.perf_counter()
    responses = asyncio.run(burst())
    seconds = time.perf_counter() - start
    assert [r.status_code for r in responses] == [200] * CONCURRENT
    for i, response in enumerate(responses):
        assert response.json() == sequential[i % len(bodies)], f"request {i}"
    with capsys.disabled():
        print(f"\n{CONCURRENT} concurrent requests: all 200 and equal to the sequential answers, "
              f"in {seconds:.2f} s ({CONCURRENT / seconds:.0f} requests/s)")  # fmt: skip


def test_a_chunked_body_is_cut_off_at_the_limit_with_413(url):
    host, port = url.removeprefix("http://").split(":")
    chunk = b" " * 4096
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /api/predict HTTP/1.1\r\nHost: pad\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        # Just past the limit, then stop without ending the body: the server has to
        # answer from what it counted, with no Content-Length to go by.
        for _ in range(LIMIT // len(chunk) + 1):
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            assert data, f"connection closed after {answer!r}"
            answer += data
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert b"content-type: application/json" in answer.lower()


def test_the_server_still_answers_after_the_abuse(url):
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
