"""Issue 26.3: tables written as CSV cannot run formulas in a spreadsheet; h5ad keeps names as given."""

from __future__ import annotations

import io
import zipfile

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from blue_core.io.files import FORMULA_STARTS, neutralise_formulas, restore_formulas
from blue_core.engine.result import Deconvolution
from blue_core.engine.inference import deconvolve

EVIL = '=HYPERLINK("http://evil.example/x","clickme")'


def _hacked(tiny_trained) -> tuple:
    model, bulk = tiny_trained(n_bulk=4, bulk_seed=2)
    names = [EVIL, "+SUM(A1)", "-2+3", "@cmd"]
    frame = bulk.astype(np.float64)
    frame.index = names
    return model, deconvolve(frame, model), names


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_every_formula_start_gets_an_apostrophe_and_comes_back(start):
    frame = pd.DataFrame({f"{start}col": [f"{start}x", "plain"], "n": [-1.5, 2.0]}, index=[f"{start}r", "r2"])
    safe = neutralise_formulas(frame)
    assert safe.columns[0] == f"'{start}col" and safe.index[0] == f"'{start}r" and safe.iloc[0, 0] == f"'{start}x"
    assert safe.iloc[1, 0] == "plain" and safe["n"].tolist() == [-1.5, 2.0]  # numbers untouched
    assert restore_formulas(safe).equals(frame)


def test_result_csvs_are_neutralised_and_h5ad_keeps_names(tiny_trained, tmp_path):
    _, result, names = _hacked(tiny_trained)
    result.write(tmp_path / "res")
    for file in ("proportions.csv", "fit.csv"):
        text = (tmp_path / "res" / file).read_text()
        for line in text.splitlines():
            for cell in line.split(","):
                assert not cell.strip('"').startswith(("=", "+", "-", "@")), (file, cell)
        table = pd.read_csv(tmp_path / "res" / file, index_col=0)
        assert list(table.index) == ["'" + n for n in names]
    assert list(ad.read_h5ad(tmp_path / "res" / "expression.h5ad").obs_names) == names
    assert list(Deconvolution.read(tmp_path / "res").proportions.index) == names


def test_bundle_csvs_are_neutralised_and_reopen_with_the_names(tiny_trained):
    from blue_core.io.bundle import read_bundle, write_bundle

    model, result, names = _hacked(tiny_trained)
    labels = pd.Series(["=1+1", "b", "=1+1", "b"], index=names)
    data = write_bundle(result, model=model, subtypes=labels)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        subtypes = pd.read_csv(io.BytesIO(archive.read("blue_analysis/subtypes.csv")), index_col=0)
    assert list(subtypes.index) == ["'" + n for n in names] and subtypes.iloc[0, 0] == "'=1+1"
    bundle = read_bundle(data)
    assert list(bundle.subtypes.index) == names and bundle.subtypes.iloc[0] == "=1+1"


def test_streaming_csv_is_neutralised_and_h5ad_is_not(tiny_trained, tmp_path):
    from blue_core.engine.streaming import deconvolve_chunked

    model, result, names = _hacked(tiny_trained)
    frame = pd.DataFrame(np.random.default_rng(0).poisson(20, (4, len(model.input_genes))).astype(np.float32),
                         index=names, columns=list(model.input_genes))
    ad.AnnData(frame).write_h5ad(tmp_path / "c.h5ad")
    deconvolve_chunked(tmp_path / "c.h5ad", model, out=tmp_path / "out", chunk_size=2)
    assert list(pd.read_csv(tmp_path / "out" / "proportions.csv", index_col=0).index) == ["'" + n for n in names]
    assert list(ad.read_h5ad(tmp_path / "out" / "expression.h5ad").obs_names) == names


def test_app_csv_download_is_neutralised(tiny_trained, monkeypatch):
    from blue_studio import views

    captured = {}
    monkeypatch.setattr(views.st, "download_button", lambda label, data, **kw: captured.setdefault("data", data))
    _, result, names = _hacked(tiny_trained)
    views.csv_download(result.proportions_table(), "proportions.csv")
    table = pd.read_csv(io.BytesIO(captured["data"]), index_col=0)
    assert list(table.index) == ["'" + n for n in names]
