"""Issue 23.1: one gene-overlap rule (``BlueModel.check_genes``) for deconvolve, streaming and the CLI, panels included."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import blue_core as bc
from blue_core.exceptions import BlueInputError, GeneOverlapWarning
from blue_core.io import read_bulk
from blue_core.engine.streaming import deconvolve_chunked

TCGA = "sample_data/tcga_laml/bulk.csv.gz"


@pytest.fixture(scope="module")
def aml():
    return bc.load_model("aml")


def test_a_multi_panel_model_reads_a_cohort_file_by_its_panel(aml):
    """``deconvolve(path, aml)`` was refused (570 of 3,022 genes): the file was read against all four panels."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = bc.deconvolve(TCGA, aml)
    report = result.input_report
    assert report["input_panel"] and report["n_model_genes_matched"] == report["n_model_genes"] == 570
    assert result.proportions.shape == (173, len(aml.cell_types))


def test_streaming_a_multi_panel_model_equals_the_in_memory_run(aml, tmp_path):
    """``blue deconvolve ... --model aml --chunk-size 50`` ended in a TypeError (``read_genes`` is None for a
    multi-panel model); streamed proportions now equal the in-memory ones."""
    bulk = read_bulk(TCGA)
    path = tmp_path / "tcga.h5ad"
    bulk.write_h5ad(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deconvolve_chunked(path, aml, out=tmp_path / "out", chunk_size=50, adapt=False)
        memory = bc.deconvolve(bulk, aml, adapt=False)
    streamed = pd.read_csv(tmp_path / "out" / "proportions.csv", index_col=0)[aml.cell_types]
    assert np.allclose(streamed.to_numpy(), memory.proportions.loc[streamed.index.astype(str)].to_numpy(), atol=1e-5)


def test_check_genes_refuses_and_warns_with_one_rule():
    model = bc.load_model("pbmc")
    genes = list(model.input_genes)
    assert model.check_genes(genes).fraction == 1.0
    with pytest.warns(GeneOverlapWarning, match="model input genes"):
        model.check_genes(genes[: int(0.7 * len(genes))])
    with pytest.raises(BlueInputError, match=r"need >= 50%.*HGNC symbols"):
        model.check_genes(genes[:10] + [f"X{i}" for i in range(100)], source="mine.csv")
    with pytest.raises(BlueInputError, match="Ensembl IDs"):
        model.check_genes([f"ENSG{i:011d}" for i in range(500)])


def test_a_streamed_run_carries_the_input_report_and_the_same_verdict_rule(tmp_path):
    """Issue 23.6: streaming is no thinner than deconvolve: an input report, a per-sample verdict by the in-memory
    flag rule (tissue checks are not run, and it says so), a declared log base honoured, one final swap."""
    import json

    from blue_core.engine.chunk_core import NO_TISSUE_CHECKS

    model = bc.load_model("pbmc")
    bulk = bc.load_sample("monaco_pbmc").bulk
    path = tmp_path / "monaco.h5ad"
    bulk.write_h5ad(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = deconvolve_chunked(path, model, out=tmp_path / "out", chunk_size=5, gep=False, adapt=False)
        memory = bc.deconvolve(bulk, model, adapt=False)
    fit = pd.read_csv(tmp_path / "out" / "fit.csv", index_col=0)
    flagged = memory.fit["poorly_explained"] | memory.fit["members_disagree"]
    assert (fit["verdict"] == np.where(flagged, "caution", "ok")).all()
    assert run.verdicts["ok"] + run.verdicts["caution"] == 12
    report = json.loads((tmp_path / "out" / "provenance.json").read_text())["input_report"]
    assert report["n_model_genes_matched"] == report["n_model_genes"] and report["tissue_checks"] == NO_TISSUE_CHECKS
    assert run.verdicts["caution"] == int(flagged.sum()) and not report["adaptation"]["ran"]
    logged = bulk.copy()
    logged.X = np.log2(np.asarray(logged.X) + 1.0)
    log_path = tmp_path / "monaco_log2.h5ad"
    logged.write_h5ad(log_path)
    with pytest.raises(BlueInputError, match="--log-base 2"):
        deconvolve_chunked(log_path, model, out=tmp_path / "refused", gep=False, adapt=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deconvolve_chunked(log_path, model, out=tmp_path / "log", gep=False, log_base="2", adapt=False)
    linear = pd.read_csv(tmp_path / "out" / "proportions.csv", index_col=0)[model.cell_types]
    back = pd.read_csv(tmp_path / "log" / "proportions.csv", index_col=0)[model.cell_types]
    assert np.allclose(linear.to_numpy(), back.to_numpy(), atol=1e-4)
