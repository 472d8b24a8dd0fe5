"""The digit pad in a real browser: Debian's chromium, driven by Playwright.

Draws a "1" with the mouse (and a "7" with touch) and waits for the page to
read it, then saves a screenshot. The model is the stroke-digit cnn1 of
`serve_helpers.shared_digit_run`, which has learnt to read pen strokes; nothing
here tells the page what the answer is. A colour run's upload page is given a
picture through its file input and shows what the API says of that file.

To refresh the screenshot in the README and the docs with a model trained on MNIST:

    FLAXFIT_SERVE_RUN=runs/default FLAXFIT_SERVE_SCREENSHOT=docs/images/serve.png \\
        .venv/bin/python -m pytest tests/test_serve_browser.py
"""

import os
import shutil
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest
from PIL import Image

from flaxfit.runs.directory import load_run
from flaxfit.tools.serve import MAX_BODY_BYTES, create_app
from helpers import CLASSES, colour_dataset, shared_colour_run
from serve_helpers import live_server, shared_digit_run

CHROMIUM = Path(os.environ.get("FLAXFIT_CHROMIUM", "/usr/bin/chromium"))
# Playwright's own browser download needs a network CI does not have; Debian's
# chromium is launched instead, headless and quiet (no sync, updates or pings).
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
# A "1" as people draw it: a short up-stroke, then down (fractions of the canvas).
ONE = [(0.40, 0.26), (0.53, 0.12), (0.52, 0.50), (0.51, 0.88)]
SEVEN = [(0.25, 0.15), (0.75, 0.15), (0.42, 0.88)]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    run_dir = os.environ.get("FLAXFIT_SERVE_RUN") or shared_digit_run(tmp_path_factory)
    with live_server(create_app(load_run(run_dir))) as url:
        yield url


@pytest.fixture(scope="module")
def colour_url(tmp_path_factory):
    run = load_run(shared_colour_run(tmp_path_factory, "cnn1") / "run")
    with live_server(create_app(run)) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless chromium for the module, with a fresh profile (user data dir)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():  # checked before any server starts for the browser
        pytest.skip(
            f"{CHROMIUM} not found, so the browser test cannot run: `make test` installs "
            "Debian's chromium when run as root (apt-get install chromium); otherwise install "
            "it yourself or point FLAXFIT_CHROMIUM at a Chromium binary"
        )
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"), executable_path=str(CHROMIUM),
            headless=True, args=CHROMIUM_ARGS, viewport={"width": 1000, "height": 700},
            has_touch=True,
        )  # fmt: skip
        try:
            yield context
        finally:
            context.close()


def open_tab(browser, url):
    """A new tab on `url` that records every URL it asks for and every JS error."""
    page = browser.new_page()
    page.requested, page.errors = [], []
    page.on("request", lambda request: page.requested.append(request.url))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.goto(url)
    return page


@pytest.fixture
def page(browser, url):
    """A new tab on the digit pad."""
    page = open_tab(browser, url)
    yield page
    page.close()


def canvas_points(page, stroke):
    box = page.locator("#pad").bounding_box()
    return [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in stroke]


def draw_with_mouse(page, stroke, release=True):
    points = canvas_points(page, stroke)
    page.mouse.move(*points[0])
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*point, steps=8)
    if release:
        page.mouse.up()


def draw_with_touch(page, stroke):
    """A finger drawing: raw touch events through the DevTools protocol (pointerType touch)."""
    cdp = page.context.new_cdp_session(page)
    points = canvas_points(page, stroke)
    path = [points[0]]
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        path += [(x0 + (x1 - x0) * t / 8, y0 + (y1 - y0) * t / 8) for t in range(1, 9)]
    start = {"x": path[0][0], "y": path[0][1]}
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [start]})
    for x, y in path[1:]:
        cdp.send(
            "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]}
        )
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def test_a_one_drawn_with_the_mouse_is_read_as_1(page, url, tmp_path):
    from playwright.sync_api import expect

    expect(page.locator("#model")).to_contain_text("params")
    expect(page.locator("#prediction")).to_have_text("–")
    draw_with_mouse(page, ONE, release=False)
    # Live: the answer comes while the button is still down, once the pen pauses.
    expect(page.locator("#prediction")).to_have_text("1", timeout=15_000)
    page.mouse.up()
    expect(page.locator(".column.top .digit")).to_have_text("1")
    expect(page.locator(".column")).to_have_count(10)
    expect(page.locator("#maps canvas")).to_have_count(16)  # cnn1's first conv: 16 channels
    inked = "c => c.getContext('2d').getImageData(0, 0, 28, 28).data.some((v, i) => i % 4 < 3 && v)"
    assert page.locator("#input").evaluate(inked)  # "what the model sees" is drawn
    shot = tmp_path / "serve.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("FLAXFIT_SERVE_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["FLAXFIT_SERVE_SCREENSHOT"])
    assert all(request.startswith(url) for request in page.requested), page.requested
    assert page.errors == []


def test_clear_then_a_seven_drawn_by_touch_is_read_as_7(page):
    from playwright.sync_api import expect

    draw_with_mouse(page, ONE)
    expect(page.locator("#prediction")).to_have_text("1", timeout=15_000)
    page.click("#clear")
    expect(page.locator("#prediction")).to_have_text("–")
    expect(page.locator(".column.top")).to_have_count(0)
    draw_with_touch(page, SEVEN)
    expect(page.locator("#prediction")).to_have_text("7", timeout=15_000)
    assert page.errors == []


def test_a_picture_chosen_on_the_upload_page_is_read_as_the_api_reads_it(
    browser, colour_url, tmp_path
):
    from playwright.sync_api import expect

    picture = tmp_path / "picture.jpg"
    Image.fromarray(colour_dataset(1, 20).test.images[5]).resize((64, 64)).save(picture)
    files = {"file": (picture.name, picture.read_bytes())}
    said = httpx.post(f"{colour_url}/api/predict", files=files).json()
    page = open_tab(browser, colour_url)
    try:
        expect(page.locator("#model")).to_contain_text("cnn1")
        page.set_input_files("#file", picture)
        expect(page.locator("#prediction")).to_have_text(said["class"], timeout=15_000)
        expect(page.locator(".rank")).to_have_count(len(CLASSES))
        expect(page.locator(".rank.top .name")).to_have_text(said["class"])
        expect(page.locator("#original")).to_be_visible()
        seen = page.locator("#input").evaluate(
            "c => [c.width, c.height, [...c.getContext('2d').getImageData(0, 0, 16, 16).data]]"
        )
        pixels = np.asarray(seen[2]).reshape(16, 16, 4)[..., :3]
        assert seen[:2] == [16, 16]
        np.testing.assert_array_equal(pixels, said["input"])  # what the model saw, as it saw it
        assert all(request.startswith(colour_url) for request in page.requested), page.requested
        asked = len(page.requested)
        big = tmp_path / "big.png"
        big.write_bytes(bytes(MAX_BODY_BYTES + 1))
        page.set_input_files("#file", big)
        expect(page.locator("#status")).to_contain_text("big.png is 2.0 MB; the server takes")
        expect(page.locator("#prediction")).to_have_text("–")
        assert len(page.requested) == asked  # not sent: it could only be refused
        assert page.errors == []
    finally:
        page.close()
