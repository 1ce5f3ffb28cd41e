"""deconvolve: shapes, invariants, gene matching, fit score, export and read-back."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from blue_core.exceptions import BlueInputError, GeneOverlapWarning
from blue_core.engine.result import Deconvolution
from blue_core.engine.inference import deconvolve, fit_scores


@pytest.fixture(scope="module")
def setup(tiny_trained):
    return tiny_trained(n_genes=80, seed=4, n_markers=20, bulk_seed=8, n_bulk=10)


def test_shapes_invariants_and_determinism(setup):
    model, bulk = setup
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = deconvolve(bulk, model, batch_size=3)
        again = deconvolve(bulk, model, batch_size=3)
        other_batches = deconvolve(bulk, model)
    n, k, g = len(bulk), len(model.cell_types), len(model.output_genes)
    assert res.proportions.shape == (n, k) and res.expression.shape == (n, k, g)
    assert np.allclose(res.proportions.sum(1), 1, atol=1e-5) and (res.proportions.to_numpy() >= 0).all()
    assert (res.expression >= 0).all()
    assert np.array_equal(res.proportions.to_numpy(), again.proportions.to_numpy())
    assert np.array_equal(res.expression, again.expression)
    assert np.allclose(res.proportions.to_numpy(), other_batches.proportions.to_numpy(), atol=1e-6)
    assert res.gep("type1").shape == (n, g)
    assert list(res.fit.columns) == ["fit_r", "poorly_explained"] and res.fit["fit_r"].between(-1, 1).all()
    assert res.input_report["n_model_genes_matched"] == len(model.input_genes)


def test_scale_free_input(setup):
    model, bulk = setup
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counts = deconvolve(bulk, model)
        cpm = deconvolve(bulk.div(bulk.sum(1), axis=0) * 1e6, model)
    assert np.allclose(counts.proportions, cpm.proportions, atol=1e-5)


def test_gene_overlap_warning_and_errors(setup):
    model, bulk = setup
    drop = model.input_genes[: int(0.2 * len(model.input_genes))]
    with pytest.warns(GeneOverlapWarning, match="model input genes"):
        deconvolve(bulk.drop(columns=drop), model)
    renamed = bulk.rename(columns=lambda g: f"ENSG{int(g[4:]):011d}")
    with pytest.raises(BlueInputError, match="look like Ensembl IDs"):
        deconvolve(renamed, model)
    half = model.input_genes[: int(0.6 * len(model.input_genes))]
    with pytest.raises(BlueInputError, match="model input genes matched"):
        deconvolve(bulk.drop(columns=half), model)
    bad = bulk.copy()
    bad.iloc[0, 0] = -1
    with pytest.raises(BlueInputError, match="negative"):
        deconvolve(bad, model)
    with pytest.raises(BlueInputError, match="must be an AnnData"):
        deconvolve([[1, 2]], model)


def test_fit_score_perfect_reconstruction():
    rng = np.random.default_rng(0)
    geps = rng.gamma(1.0, 100.0, size=(4, 3, 50))
    props = rng.dirichlet(np.ones(3), size=4)
    bulk = np.einsum("nk,nkg->ng", props, geps) * 7.0
    assert np.allclose(fit_scores(props, geps, bulk=bulk), 1.0)
    assert (fit_scores(props, geps, bulk=rng.gamma(1.0, 100.0, size=(4, 50))) < 0.9).all()


def test_write_and_read_back(setup, tmp_path):
    model, bulk = setup
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = deconvolve(ad.AnnData(bulk), model)
    res.write(tmp_path)
    table = pd.read_csv(tmp_path / "proportions.csv")
    assert table.columns[0] == "sample" and list(table.columns[1:]) == model.cell_types
    assert set(pd.read_csv(tmp_path / "fit.csv").columns) == {"sample", "fit_r", "poorly_explained"}
    back = Deconvolution.read(tmp_path)
    assert back.cell_types == res.cell_types and back.genes == res.genes
    assert np.allclose(back.proportions.to_numpy(), res.proportions.to_numpy())
    assert np.array_equal(back.expression, res.expression)
    assert back.fit["poorly_explained"].tolist() == res.fit["poorly_explained"].tolist()
    adata = res.to_anndata()
    assert set(model.cell_types) <= set(adata.layers) and "proportions" in adata.obsm
    with pytest.raises(BlueInputError, match="expression.h5ad"):
        Deconvolution.read(tmp_path / "nothing")


def test_cell_types_with_slashes_round_trip(tmp_path):
    import warnings as _w

    from blue_core.engine.result import Deconvolution, _cell_type_of_key, _layer_key

    for name in ("HSC/Progenitor", "T/NK", "100%/x", "plain"):
        assert _cell_type_of_key(_layer_key(name)) == name and "/" not in _layer_key(name)
    types = ["HSC/Progenitor", "T/NK", "B"]
    props = pd.DataFrame([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]], index=["s1", "s2"], columns=types)
    expr = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    fit = pd.DataFrame({"fit_r": [0.9, 0.8], "poorly_explained": [False, False]}, index=props.index)
    result = Deconvolution(props, expr, types, ["G1", "G2", "G3", "G4"], fit, "aml")
    with _w.catch_warnings():
        _w.simplefilter("error", FutureWarning)  # anndata: '/' in keys will be refused
        result.write(tmp_path / "out")
    again = Deconvolution.read(tmp_path / "out")
    assert again.cell_types == types and np.array_equal(again.expression, expr)
