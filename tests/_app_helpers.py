"""Shared helpers of the app tests (AppTest per page, driven with the bundled demo cohorts).

Model-dependent tests use the installed pretrained models (``pretrained/<name>/``, or the
directories in ``BLUE_MODELS_DIR``) and are skipped with a clear reason while a model is missing.
"""

from __future__ import annotations

import functools
import json
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "pages"
TIMEOUT = 180


def installed_models() -> list[str]:
    from blue_core.engine.store import list_models

    table = list_models()
    return [str(n) for n in table["name"]] if len(table) else []


def require_model(name: str) -> None:
    """Skip the calling test when the pretrained model ``name`` is not installed."""
    if name not in installed_models():
        pytest.skip(f"pretrained model {name!r} is not installed (pretrained/{name}/ missing): "
                    "the app tests that need it run once it is built")


def page(filename: str) -> Any:
    """An AppTest of one page file (each page runs on its own, without st.navigation)."""
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(PAGES / filename), default_timeout=TIMEOUT)


@functools.lru_cache(maxsize=8)
def demo_result(name: str) -> tuple[Any, Any, Any, str]:
    """(cohort, model, Deconvolution, model name) for a demo cohort with its recommended model."""
    from blue_core.io.datasets import load_sample, sample_root
    from blue_core.engine.inference import deconvolve
    from blue_core.io import read_bulk
    from blue_core.engine.model import load_model

    cohort = load_sample(name)
    require_model(cohort.recommended_model)
    model = load_model(cohort.recommended_model)

    bulk = read_bulk(sample_root() / name / "bulk.csv.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PoorFitWarning etc.: the app shows them; not under test here
        result = deconvolve(bulk, model)
    return cohort, model, result, cohort.recommended_model


def seed(at: Any, demo: str) -> Any:
    """Put a deconvolved demo cohort into the AppTest's session state, as the Data page leaves it."""
    from blue_studio import cache

    cohort, model, result, model_name = demo_result(demo)
    at.session_state["model_name"] = model_name
    at.session_state["bulk_source"] = "demo"
    at.session_state["demo_name"] = demo
    at.session_state["bulk_label"] = f"demo: {cohort.title}"
    at.session_state["clinical"] = cohort.clinical
    at.session_state["clinical_label"] = f"demo: {demo}" if cohort.clinical is not None else None
    at.session_state["truth"] = cohort.truth
    at.session_state["cohort_info"] = cohort.info
    at.session_state["result"] = result
    at.session_state["result_key"] = (f"demo:{demo}", cache.model_key(model))
    return at


def figures(at: Any) -> list[dict]:
    """The plotly figures an AppTest run drew, as dicts (``data``, ``layout``)."""
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def plain(markdown: str) -> str:
    """Markdown source with backslash escapes removed (the text a reader sees): ``0\\.43`` -> ``0.43``."""
    return re.sub(r"\\(.)", r"\1", str(markdown))


def texts(at: Any) -> str:
    """All markdown, captions, titles and headers of a run as the reader sees them, joined."""
    parts = []
    for kind in ("markdown", "caption", "title", "header", "subheader", "info", "success", "warning", "error"):
        parts += [plain(el.value) for el in getattr(at, kind)]
    return "\n".join(parts)


def assert_clean(at: Any) -> None:
    """No exception and no error message in the run."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def array(value: Any) -> Any:
    """A plotly trace array as numpy (plotly >= 6 writes numbers as base64 ``{"dtype", "bdata"}``)."""
    import base64

    import numpy as np

    if isinstance(value, dict) and "bdata" in value:
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        return data.reshape(value["shape"]) if "shape" in value and isinstance(value["shape"], list) else data
    return np.asarray(value)


def table_with(at: Any, column: str) -> Any:
    """The first dataframe of the run that has ``column`` (AppTest does not expose dataframe keys)."""
    for element in at.dataframe:
        if column in element.value.columns:
            return element.value
    raise AssertionError(f"no table with a {column!r} column; tables: {[list(e.value.columns) for e in at.dataframe]}")


def reference_bytes() -> bytes:
    """A small labelled single-cell reference (3 cell types with distinct marker genes), as h5ad bytes."""
    import tempfile

    import anndata as ad
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    n_per, n_genes = 60, 120
    genes = [f"GENE{i}" for i in range(n_genes)]
    genes[:9] = ["CD3E", "CD3D", "IL7R", "CD14", "LYZ", "S100A8", "MS4A1", "CD79A", "CD19"]
    blocks, labels = [], []
    for k, name in enumerate(["T", "Mono", "B"]):
        mean = np.full(n_genes, 1.0)
        mean[3 * k : 3 * k + 3] = 30.0
        blocks.append(rng.poisson(mean, size=(n_per, n_genes)))
        labels += [name] * n_per
    adata = ad.AnnData(sp.csr_matrix(np.vstack(blocks).astype(np.float32)),
                       obs=pd.DataFrame({"celltype": labels, "patient": np.tile(["d1", "d2", "d3"], 3 * n_per // 3)},
                                        index=[f"c{i}" for i in range(3 * n_per)]),
                       var=pd.DataFrame(index=genes))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ref.h5ad"
        adata.write_h5ad(path)
        return path.read_bytes()
