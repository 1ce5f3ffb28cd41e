"""Issue 14: chunked, resumable, Dask-parallel deconvolution gives the in-memory results."""

from __future__ import annotations

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest

from blue_core.exceptions import BlueInputError
from blue_core.engine.inference import deconvolve
from blue_core.engine.streaming import deconvolve_chunked, deconvolve_dask, open_bulk


@pytest.fixture(scope="module")
def cohort(tiny_trained, tmp_path_factory):
    model, bulk = tiny_trained(n_bulk=40, bulk_seed=3)
    folder = tmp_path_factory.mktemp("stream")
    frame = bulk.astype(np.float64)
    ad.AnnData(frame.astype(np.float32)).write_h5ad(folder / "cohort.h5ad")
    with h5py.File(folder / "cohort.h5", "w") as f:  # ARCHS4 layout: genes x samples
        f["data/expression"] = frame.to_numpy(dtype=np.float32).T
        f["meta/genes/symbol"] = np.asarray(frame.columns, dtype="S")
        f["meta/samples/geo_accession"] = np.asarray(frame.index, dtype="S")
    frame.rename_axis("sample").to_csv(folder / "cohort.csv")
    memory = deconvolve(frame.astype(np.float32).astype(np.float64), model, batch_size=8)
    return model, folder, memory


def _tables(out):
    return pd.read_parquet(out / "proportions.parquet"), pd.read_parquet(out / "fit.parquet")


@pytest.mark.parametrize("name", ["cohort.h5ad", "cohort.h5", "cohort.csv"])
def test_chunked_equals_in_memory(cohort, tmp_path, name):
    import zarr

    model, folder, memory = cohort
    result = deconvolve_chunked(folder / name, model, out=tmp_path / "out", chunk_size=16, batch_size=8)
    assert result.n_chunks == 3 and result.n_samples == 40
    props, fit = _tables(tmp_path / "out")
    assert np.array_equal(props.to_numpy(), memory.proportions_table().to_numpy())
    assert list(props.index) == list(memory.proportions.index)
    assert np.array_equal(fit["fit_r"].to_numpy(), memory.fit["fit_r"].to_numpy())
    gep = zarr.open_group(str(tmp_path / "out" / "expression.zarr"), mode="r")["expression"][:]
    assert np.array_equal(gep, memory.expression)
    assert pd.read_csv(tmp_path / "out" / "proportions.csv", index_col=0).shape == props.shape


def test_gep_subsets_and_float16(cohort, tmp_path):
    import zarr

    model, folder, memory = cohort
    types, genes = model.cell_types[:1], model.output_genes[:5]
    deconvolve_chunked(folder / "cohort.h5ad", model, out=tmp_path / "o", chunk_size=16, batch_size=8,
                       gep_dtype="float16", cell_types=types, genes=genes)
    group = zarr.open_group(str(tmp_path / "o" / "expression.zarr"), mode="r")
    assert group["expression"].shape == (40, 1, 5) and group["expression"].dtype == np.float16
    assert "log1p" in group.attrs["units"]  # float16 cannot hold CPM up to 1e6
    assert np.allclose(group["expression"][:].astype(float), np.log1p(memory.expression[:, :1, :5]), rtol=2e-3)
    assert list(group["genes"][:]) == genes
    deconvolve_chunked(folder / "cohort.h5ad", model, out=tmp_path / "nogep", chunk_size=16, gep=False)
    assert not (tmp_path / "nogep" / "expression.zarr").exists()


def test_interrupted_run_resumes_and_never_leaves_half_an_output(cohort, tmp_path):
    model, folder, memory = cohort
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        deconvolve_chunked(folder / "cohort.h5ad", model, out=out, chunk_size=16, batch_size=8, fail_after_chunks=2)
    assert not out.exists()  # nothing half-written where the result goes
    assert (tmp_path / "out.partial").is_dir()
    resumed = deconvolve_chunked(folder / "cohort.h5ad", model, out=out, chunk_size=16, batch_size=8)
    assert resumed.n_resumed == 2 and not (tmp_path / "out.partial").exists()
    assert np.array_equal(_tables(out)[0].to_numpy(), memory.proportions_table().to_numpy())
    # a failing run leaves a previous result untouched
    before = (out / "proportions.csv").read_bytes()
    with pytest.raises(KeyboardInterrupt):
        deconvolve_chunked(folder / "cohort.h5ad", model, out=out, chunk_size=8, overwrite=True, fail_after_chunks=1)
    assert (out / "proportions.csv").read_bytes() == before


def test_dask_local_and_cluster_equal_the_local_path(cohort, tmp_path):
    from distributed import LocalCluster

    model, folder, memory = cohort
    local = deconvolve_dask(folder / "cohort.h5ad", model, chunk_size=16, batch_size=8)
    expected = memory.proportions_table().join(memory.fit)
    assert np.array_equal(local[expected.columns].to_numpy(dtype=float), expected.to_numpy(dtype=float))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        remote = deconvolve_dask(folder / "cohort.h5ad", model, chunk_size=16, batch_size=8, scheduler=cluster.scheduler_address)
    assert np.array_equal(remote[expected.columns].to_numpy(dtype=float), expected.to_numpy(dtype=float))


def test_streaming_input_errors_name_the_fix(cohort, tmp_path):
    model, folder, _ = cohort
    frame = pd.read_csv(folder / "cohort.csv", index_col=0)
    real = pd.DataFrame(1.0, index=["CD3E", "CD14", "LYZ", "MS4A1", "NKG7", "GNLY"], columns=["S1", "S2", "S3"])
    real.rename_axis("gene").to_csv(tmp_path / "genes_in_rows.csv")
    with pytest.raises(BlueInputError, match="genes in rows"):
        open_bulk(tmp_path / "genes_in_rows.csv")
    np.log2(frame + 1).rename_axis("sample").to_csv(tmp_path / "log.csv")
    with pytest.raises(BlueInputError, match="log-scale"):
        deconvolve_chunked(tmp_path / "log.csv", model, out=tmp_path / "o")
    with pytest.raises(BlueInputError, match="supported HDF5 layout"):
        with h5py.File(tmp_path / "other.h5", "w") as f:
            f["x"] = np.zeros(3)
        open_bulk(tmp_path / "other.h5")


def test_cli_streams_and_runs_on_dask(cohort, tmp_path, capsys):
    from blue_core.cli import main
    from blue_core.engine.model import save_model

    model, folder, memory = cohort
    model_dir = save_model(model, tmp_path / "tiny")
    assert main(["deconvolve", str(folder / "cohort.h5"), "--model", str(model_dir), "--out", str(tmp_path / "a"),
                 "--chunk-size", "16", "--batch-size", "8", "--gep-dtype", "float16"]) == 0
    assert "in 3 chunks" in capsys.readouterr().out
    props = pd.read_parquet(tmp_path / "a" / "proportions.parquet")
    assert np.array_equal(props.to_numpy(), memory.proportions_table().to_numpy())
    assert main(["deconvolve", str(folder / "cohort.h5ad"), "--model", str(model_dir), "--out", str(tmp_path / "b"),
                 "--chunk-size", "16", "--batch-size", "8", "--scheduler", "local"]) == 0
    table = pd.read_parquet(tmp_path / "b" / "results.parquet")
    assert np.array_equal(table[list(memory.proportions.columns)].to_numpy(), memory.proportions.to_numpy())
    assert main(["deconvolve", str(folder / "cohort.h5ad"), "--model", str(model_dir), "--out", str(tmp_path / "a"),
                 "--chunk-size", "16"]) == 2  # a finished result is not overwritten without --overwrite
    capsys.readouterr()
    assert main(["deconvolve", str(folder / "cohort.h5ad"), "--model", str(model_dir), "--out", str(tmp_path / "c"),
                 "--scheduler", "local", "--log-base", "2"]) == 2  # Dask reads linear values only: refused, with the fix
    err = capsys.readouterr().err
    assert "--log-base is not available with --scheduler" in err and "--chunk-size instead" in err
    assert not (tmp_path / "c").exists()


def test_csv_reads_any_row_range_in_one_pass_when_sequential(cohort):
    _, folder, _ = cohort
    frame = pd.read_csv(folder / "cohort.csv", index_col=0)
    source = open_bulk(folder / "cohort.csv")
    for start, stop in ((16, 32), (0, 8), (8, 40), (3, 5)):
        assert np.array_equal(source.read(start, stop), frame.iloc[start:stop].to_numpy(dtype=np.float64))
