"""The built documentation site, checked as a reader uses it: `make test` runs this after
`docs/build.py`. Every local link resolves; in headless Chromium the index loads with no
error and nothing fetched from outside, the language switch moves between the English
and Japanese versions of a page, search finds `fit`, and the notebooks show the outputs
of their executed run."""

from __future__ import annotations

import functools
import html.parser
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

SITE = Path(__file__).resolve().parent / "_build" / "html"
CHROMIUM = Path(os.environ.get("FLAXFIT_CHROMIUM", "/usr/bin/chromium"))
# Debian's chromium, headless and quiet (no sync, updates or pings): CI has no network
# for Playwright's own browser download.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


@pytest.fixture(scope="module")
def site() -> Path:
    if not (SITE / "en" / "index.html").is_file():
        pytest.fail(f"{SITE} has no built site: run `python docs/build.py` (make docs) first",
                    pytrace=False)  # fmt: skip
    return SITE


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and ((tag == "a" and name == "href") or name == "src"):
                self.links.append(value)


def test_every_local_link_resolves(site):
    # The theme's _static/ holds Jinja macro files named .html: templates, not pages.
    pages = sorted(p for p in site.rglob("*.html") if "_static" not in p.parts)
    assert len(pages) > 20
    broken = []
    for page in pages:
        parser = _Links()
        parser.feed(page.read_text(encoding="utf-8"))
        for link in parser.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or not parts.path:  # external, or #anchor
                continue
            if not (page.parent / unquote(parts.path)).resolve().exists():
                broken.append(f"{page.relative_to(site)} -> {link}")
    assert not broken, "\n".join(broken[:20])


@pytest.fixture(scope="module")
def server(site):
    """The site on 127.0.0.1 at a free port, as `python -m http.server` serves it."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (argparse's name)
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found, so the site cannot be checked in a browser: "
                    "`make test` installs Debian's chromium when run as root (apt-get install "
                    "chromium); otherwise point FLAXFIT_CHROMIUM at a Chromium binary")  # fmt: skip
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"), executable_path=str(CHROMIUM),
            headless=True, args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 800},
        )  # fmt: skip
        try:
            yield context
        finally:
            context.close()


def open_tab(browser, url: str):
    """A tab on `url` that records the URLs it asks for and every JS error."""
    page = browser.new_page()
    page.requested, page.errors = [], []
    page.on("request", lambda request: page.requested.append(request.url))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto(url)
    return page


def test_index_loads_with_nothing_from_outside(browser, server):
    page = open_tab(browser, f"{server}/")  # the root page leads to the English site
    page.wait_for_url(f"{server}/en/index.html")
    assert page.locator("h1").first.inner_text().startswith("flaxfit")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("link", name="The train step and fit()").first.is_visible()
    assert not page.errors
    outside = [url for url in page.requested if not url.startswith(server)]
    assert not outside, outside


def test_language_switch_goes_to_the_same_page_and_back(browser, server):
    page = open_tab(browser, f"{server}/en/guides/training.html")
    switch = page.locator("a.flaxfit-language-switch")
    assert switch.inner_text() == "日本語"
    switch.click()
    page.wait_for_url(f"{server}/ja/guides/training.html")
    assert page.locator("html").get_attribute("lang") == "ja"
    assert "学習ステップ" in page.locator("h1").first.inner_text()
    page.locator("a.flaxfit-language-switch").click()
    page.wait_for_url(f"{server}/en/guides/training.html")
    assert page.locator("h1").first.inner_text().startswith("The train step")
    assert not page.errors


@pytest.mark.parametrize("language", ["en", "ja"])
def test_search_finds_fit(browser, server, language):
    page = open_tab(browser, f"{server}/{language}/search.html?q=fit")
    results = page.locator("#search-results li a")
    results.first.wait_for(timeout=30_000)  # the index loads and the results are listed
    hrefs = [results.nth(i).get_attribute("href") for i in range(results.count())]
    assert any("reference/api.html#flaxfit.fit" in href for href in hrefs), hrefs
    assert not page.errors


def test_notebooks_show_their_outputs(browser, server):
    page = open_tab(browser, f"{server}/en/notebooks/3_MNIST_Single_Layer_CNN.html")
    outputs = page.locator(".cell_output")
    assert outputs.count() > 0
    assert "test accuracy:" in page.locator("article").inner_text()
    assert page.locator(".cell_output img").count() > 0  # its figures, drawn when it ran
    assert not page.errors
