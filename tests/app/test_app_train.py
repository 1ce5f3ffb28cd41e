"""AppTest of the Train page: an h5ad reference in the session, label columns, counts, train, use."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _app_helpers import assert_clean, page, table_with

PAGE = "6_Train_a_model.py"


def _reference_bytes() -> bytes:
    """A small labelled single-cell reference (3 cell types with distinct marker genes), as h5ad bytes."""
    import anndata as ad
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


def test_guard_without_reference() -> None:
    at = page(PAGE).run()
    assert not at.exception
    assert "Upload a single-cell reference" in at.info[0].value


def test_bad_reference_shows_message() -> None:
    at = page(PAGE)
    at.session_state["ref_bytes"] = b"not an h5ad file at all"
    at.session_state["ref_filename"] = "cells.h5ad"
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "h5ad" in at.error[0].value


@pytest.mark.slow
def test_columns_counts_train_and_use() -> None:
    at = page(PAGE)
    at.session_state["ref_bytes"] = _reference_bytes()
    at.session_state["ref_filename"] = "tiny_blood.h5ad"
    at.run()
    assert_clean(at)
    assert at.selectbox(key="train_ct_key").value == "celltype"  # guessed from the column names
    assert at.selectbox(key="train_donor_key").value == "patient"
    counts = table_with(at, "cells")
    assert counts["cells"].to_dict() == {"T": 60, "Mono": 60, "B": 60}
    assert {m.label: m.value for m in at.metric}["Cell types"] == "3"
    at.slider(key="train_n_samples").set_value(200)
    at.slider(key="train_epochs").set_value(1)
    at.text_input(key="train_name").input("tiny")
    at.button[0].click().run()  # the form's Train button
    assert_clean(at)
    model = at.session_state["trained_models"]["tiny"]
    assert sorted(model.cell_types) == ["B", "Mono", "T"]
    assert "Model **tiny** is ready" in at.success[0].value
    assert any(b.label.startswith("Download the model") for b in at.get("download_button"))
    at.button(key="train_use").click().run()
    assert at.session_state["model_name"] == "trained:tiny"
    # the download: a zip of safetensors + json that load_model reads back
    import zipfile

    from blue_studio import cache
    from blue_core.model import load_model

    archive = zipfile.ZipFile(io.BytesIO(cache.model_zip_bytes(model)))
    assert sorted(archive.namelist()) == ["tiny/model.json", "tiny/model.safetensors"]
    with tempfile.TemporaryDirectory() as tmp:
        archive.extractall(tmp)
        again = load_model(Path(tmp) / "tiny")
    assert again.cell_types == model.cell_types and again.output_genes == model.output_genes


def test_anndata_download_bytes_round_trip() -> None:
    import anndata as ad

    from blue_studio import cache

    adata = ad.AnnData(np.arange(6, dtype=np.float32).reshape(2, 3))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.h5ad"
        path.write_bytes(cache.anndata_bytes(adata))
        assert np.array_equal(ad.read_h5ad(path).X, adata.X)
