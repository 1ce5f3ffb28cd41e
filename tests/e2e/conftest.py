"""Fixtures of the browser end-to-end tests: a `streamlit run app.py` server and Debian's Chromium.

The tests are skipped, with the reason, only when Chromium is absent (CI installs it with apt).
Screenshots go to the git-ignored ``tests/screenshots/``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "tests" / "screenshots"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_path() -> str | None:
    """Debian's Chromium, if installed."""
    for candidate in ("/usr/bin/chromium", shutil.which("chromium") or "", shutil.which("chromium-browser") or ""):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it for these tests")
    return path


@contextlib.contextmanager
def serve_app(*, env: dict[str, str] | None = None, log_name: str = "streamlit.log") -> Iterator[str]:
    """`streamlit run app.py` on a free localhost port (extra environment ``env``), stopped on exit."""
    port = _free_port()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    log = open(SCREENSHOTS / log_name, "w")  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
         "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"streamlit did not start; see {SCREENSHOTS / log_name}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="session")
def app_url(chromium: str) -> Iterator[str]:
    """Start `streamlit run app.py` on a free localhost port; stop it after the session."""
    with serve_app() as url:
        yield url


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@contextlib.contextmanager
def open_tab(browser: Any, url: str) -> Iterator[Any]:
    """A fresh browser context (its own Streamlit session) on the first page of the app at ``url``."""
    context = browser.new_context(viewport={"width": 1400, "height": 1800}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(150_000)  # a loaded 2-core machine (the whole suite at once) needs more than 60 s for an upload's recommendation + first torch import
    page.goto(url)
    page.get_by_role("heading", name="Data & model").wait_for()
    yield page
    context.close()


@pytest.fixture
def page(browser: Any, app_url: str) -> Iterator[Any]:
    """A fresh browser context (its own Streamlit session) on the app's first page."""
    with open_tab(browser, app_url) as tab:
        yield tab


def upload_bulk(page: Any, name: str, data: bytes, *, log_name: str = "streamlit.log") -> None:
    """Put ``data`` into the Data & model page's bulk uploader and wait until its input report is drawn.

    The report's own heading is awaited (not the page caption that mentions it). On a loaded machine a file set
    while the page is still rerunning can be dropped by the re-drawn widget, so it is set once more if no report
    came; a second miss fails with the end of the server's log, so a CI failure says what the server did.
    """
    heading = page.get_by_role("heading", name="3 · Input report")
    for attempt in range(2):
        page.get_by_role("tab", name="Upload your data").click()
        page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(
            files=[{"name": name, "mimeType": "text/csv", "buffer": data}])
        try:
            heading.wait_for(timeout=75_000)
            return
        except Exception:  # playwright's TimeoutError; the second miss fails below
            if attempt == 1:
                log = SCREENSHOTS / log_name
                tail = log.read_text(errors="replace")[-3000:] if log.is_file() else "(no server log)"
                raise AssertionError(f"no input report for the upload {name!r} after two tries; the server's log "
                                     f"ends with:\n{tail}") from None


@pytest.fixture
def shot() -> Any:
    """``shot(page, name, element=None)`` saves a screenshot (of the page or one element) to tests/screenshots/<name>.png."""

    def take(page: Any, name: str, element: Any = None) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.wait_for_timeout(1000)  # let plotly finish drawing
        if element is not None:  # the page scrolls inside Streamlit's container: shoot the element itself
            element.scroll_into_view_if_needed()
            element.screenshot(path=str(path))
        else:
            page.screenshot(path=str(path), full_page=True)
        return path

    return take
