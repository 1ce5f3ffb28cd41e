"""Issue 26 in a real browser: card fields never fetch from outside, a planted h5ad upload shows the refusal.

A local logging HTTP server stands for the outside host: a model whose card fields are Markdown images
pointing at it is installed (``BLUE_MODELS_DIR``) and uploaded as a model zip; every page is opened; the
server must receive no request. Then an h5ad whose sample names live in an outside file is uploaded: the
page shows the error and never a line of that file.
"""

from __future__ import annotations

import copy
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from conftest import SCREENSHOTS, open_tab, serve_app, upload_bulk  # tests/e2e/conftest.py (rootdir-relative import)

pytestmark = pytest.mark.e2e


class _Log(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


SERVER_LOG = "streamlit_security.log"


@pytest.fixture(scope="module")
def outside() -> Iterator[tuple[str, list[str]]]:
    """(base URL, list of request paths) of a logging server on 127.0.0.1."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Log)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Log.hits = []
    yield f"http://127.0.0.1:{server.server_address[1]}", _Log.hits
    server.shutdown()


@pytest.fixture(scope="module")
def poisoned(outside: tuple[str, list[str]], tiny_trained: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny model named 'poisoned' whose card fields are Markdown images on the logging server."""
    from blue_core.engine.model import save_model
    from blue_studio.cache import model_zip_bytes

    url, _ = outside
    model = copy.copy(tiny_trained()[0])  # the shared tiny model, renamed, with its own card
    model.name, model.card = "poisoned", copy.deepcopy(model.card)
    for key in ("tissue", "description", "limitations"):
        model.card[key] = f"![x]({url}/{key}.png) [link]({url}/{key}-link) <img src='{url}/{key}-html.png'>"
    model.card.setdefault("provenance", {})["note"] = f"![x]({url}/provenance.png)"
    folder = tmp_path_factory.mktemp("models")
    save_model(model, folder / "poisoned")
    genes = list(model.input_genes)
    frame = pd.DataFrame(np.random.default_rng(0).poisson(20, size=(len(genes), 4)), index=genes,
                         columns=[f"S{j}" for j in range(4)])
    return {"dir": folder, "zip": model_zip_bytes(model), "csv": frame.rename_axis("gene").to_csv().encode()}


@pytest.fixture(scope="module")
def server(chromium: str, poisoned: dict[str, Any]) -> Iterator[str]:
    with serve_app(env={"BLUE_MODELS_DIR": str(poisoned["dir"])}, log_name=SERVER_LOG) as url:
        yield url


@pytest.fixture
def tab(browser: Any, server: str) -> Iterator[Any]:
    with open_tab(browser, server) as page:
        yield page


def _nav(page: Any, label: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(label, exact=True).click()
    page.wait_for_timeout(2500)


def test_card_fields_never_fetch_from_outside(tab: Any, poisoned: dict[str, Any], outside: tuple[str, list[str]]) -> None:
    _, hits = outside
    tab.get_by_test_id("stSelectbox").first.click()  # the picker lists the installed model with its tissue
    tab.get_by_role("option", name="poisoned", exact=False).first.click()
    tab.wait_for_timeout(2500)
    _nav(tab, "Train a model")
    tab.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(
        files=[{"name": "poisoned.zip", "mimeType": "application/zip", "buffer": poisoned["zip"]}])
    tab.get_by_role("button", name="Use this model now").click()
    tab.wait_for_timeout(2500)
    _nav(tab, "Data & model")
    upload_bulk(tab, "cohort.csv", poisoned["csv"], log_name=SERVER_LOG)
    tab.get_by_role("button", name="Run deconvolution").click()
    tab.get_by_text("Deconvolved 4 samples").wait_for(timeout=120_000)
    tab.get_by_text("Model card", exact=False).first.click()
    tab.wait_for_timeout(2000)
    tab.screenshot(path=str(SCREENSHOTS / "security_card_text.png"), full_page=True)
    assert tab.get_by_text("![x]", exact=False).count() >= 1  # shown as typed
    for label in ("Proportions", "Cell-type expression", "Subtypes & survival", "Enrichment", "About"):
        _nav(tab, label)
    tab.wait_for_timeout(2000)
    assert hits == [], f"the browser fetched from the outside host: {hits}"
    _nav(tab, "Data & model")
    assert tab.locator(f"a[href^='{outside[0]}']").count() == 0, "a card field became a link"


def test_planted_h5ad_upload_shows_the_refusal(tab: Any, tmp_path: Path) -> None:
    import _hdf5_plants as plants

    secret = tmp_path / "server_secret.txt"
    secret.write_bytes(plants.SECRET * 8)
    planted = plants.plant_external_storage(tmp_path / "cohort.h5ad", secret)
    tab.get_by_role("tab", name="Upload your data").click()
    tab.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(
        files=[{"name": "cohort.h5ad", "mimeType": "application/octet-stream", "buffer": planted.read_bytes()}])
    alert = tab.get_by_test_id("stAlertContentError").first
    alert.wait_for()
    assert "outside file" in alert.inner_text() and "refused" in alert.inner_text()
    tab.screenshot(path=str(SCREENSHOTS / "security_planted_h5ad.png"), full_page=True)
    assert "SECRET-LINE" not in tab.content() and "root:x:0:0" not in tab.content()
