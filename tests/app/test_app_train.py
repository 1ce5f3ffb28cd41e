"""AppTest of the Train page: an h5ad reference in the session, label columns, counts, train, use."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest

from _app_helpers import assert_clean, page, reference_bytes, table_with

PAGE = "6_Train_a_model.py"




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
    at.session_state["ref_bytes"] = reference_bytes()
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
    from blue_core.engine.model import load_model

    archive = zipfile.ZipFile(io.BytesIO(cache.model_zip_bytes(model)))
    assert sorted(archive.namelist()) == ["tiny/adaptation.safetensors", "tiny/model.json", "tiny/model.safetensors"]
    with tempfile.TemporaryDirectory() as tmp:
        archive.extractall(tmp)
        again = load_model(Path(tmp) / "tiny")
    assert again.cell_types == model.cell_types and again.output_genes == model.output_genes
    assert again.adaptation_bank is not None  # the trained model can adapt to a cohort after the round trip


def test_anndata_download_bytes_round_trip() -> None:
    import anndata as ad

    from blue_studio import cache

    adata = ad.AnnData(np.arange(6, dtype=np.float32).reshape(2, 3))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.h5ad"
        path.write_bytes(cache.anndata_bytes(adata))
        assert np.array_equal(ad.read_h5ad(path).X, adata.X)
