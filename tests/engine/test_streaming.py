"""Issue 14: chunked, resumable, Dask-parallel deconvolution gives the in-memory results."""

from __future__ import annotations

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest

from blue_core.exceptions import BlueInputError
from blue_core.engine.inference import deconvolve
from blue_core.engine.streaming import deconvolve_chunked, deconvolve_dask
from blue_core.io.chunked import open_bulk


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
    return (pd.read_csv(out / "proportions.csv", index_col=0), pd.read_csv(out / "fit.csv", index_col=0))


def _in_memory_folder(memory, model, folder):
    """What the in-memory path writes for the same samples (verdicts by the same rule, no tissue checks)."""
    from blue_core.analysis.trust import assess

    assess(None, memory, model=model).annotate(memory).write(folder)
    return folder


@pytest.mark.parametrize("name", ["cohort.h5ad", "cohort.h5", "cohort.csv"])
def test_chunked_writes_the_in_memory_files_and_numbers(cohort, tmp_path, name):
    """Issue 24.1: the same files, the same numbers, whichever path runs."""
    from blue_core.engine.result import Deconvolution

    model, folder, memory = cohort
    result = deconvolve_chunked(folder / name, model, out=tmp_path / "out", chunk_size=16, batch_size=8)
    assert result.n_chunks == 3 and result.n_samples == 40
    reference = _in_memory_folder(memory, model, tmp_path / "memory")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in reference.iterdir()) == [
        "expression.h5ad", "fit.csv", "proportions.csv", "provenance.json"]
    for table in ("proportions.csv", "fit.csv"):
        assert (tmp_path / "out" / table).read_bytes() == (reference / table).read_bytes()
    streamed, held = Deconvolution.read(tmp_path / "out"), Deconvolution.read(reference)
    assert np.array_equal(streamed.expression, memory.expression)
    assert np.array_equal(streamed.expression, held.expression) and streamed.genes == held.genes
    assert streamed.input_report["read"]["mode"] == "stream" and streamed.input_report["n_samples"] == 40
    assert streamed.input_report["n_model_genes_matched"] == memory.input_report["n_model_genes_matched"]


@pytest.mark.parametrize("estimator", ["cohort", "joint"])
def test_cohort_estimator_fits_its_profiles_once_on_the_file_and_matches_the_in_memory_run(cohort, tmp_path, estimator):
    """Issue 25 candidates 6 and 7: every chunk is split by the profiles fitted on the whole file, as in memory."""
    from blue_core.engine.gep_estimators import with_estimator
    from blue_core.engine.result import Deconvolution

    model, folder, _ = cohort
    model = with_estimator(model, estimator)
    frame = pd.read_csv(folder / "cohort.csv", index_col=0)
    memory = deconvolve(frame.astype(np.float32).astype(np.float64), model, batch_size=8)
    assert memory.input_report["gep_cohort_profiles"] == "cohort profiles fitted on the 40 samples of this run"
    deconvolve_chunked(folder / "cohort.h5ad", model, out=tmp_path / "out", chunk_size=16, batch_size=8)
    streamed = Deconvolution.read(tmp_path / "out")
    assert streamed.input_report["gep_cohort_profiles"] == memory.input_report["gep_cohort_profiles"]
    np.testing.assert_allclose(streamed.expression, memory.expression, rtol=1e-4, atol=1e-3)
    per_chunk = deconvolve(frame.iloc[:16].astype(np.float64), model, batch_size=8)  # a cohort of 16 is another cohort
    assert not np.allclose(per_chunk.expression, memory.expression[:16], rtol=1e-4, atol=1e-3)


def test_gep_subsets_and_float16(cohort, tmp_path):
    from blue_core.engine.result import LOG_GEP_UNITS, Deconvolution

    model, folder, memory = cohort
    types, genes = model.cell_types[:1], model.output_genes[:5]
    deconvolve_chunked(folder / "cohort.h5ad", model, out=tmp_path / "o", chunk_size=16, batch_size=8,
                       gep_dtype="float16", cell_types=types, genes=genes)
    stored = ad.read_h5ad(tmp_path / "o" / "expression.h5ad")
    layer = stored.layers[types[0]]
    assert layer.shape == (40, 5) and layer.dtype == np.float16 and list(stored.var_names) == genes
    assert stored.uns["units"] == LOG_GEP_UNITS  # float16 cannot hold CPM up to 1e6
    assert np.allclose(layer.astype(float), np.log1p(memory.expression[:, 0, :5]), rtol=2e-3)
    with pytest.raises(BlueInputError, match="GEPs of 1 of the model's"):
        Deconvolution.read(tmp_path / "o")  # a subset of types is named, with the reader that takes it
    deconvolve_chunked(folder / "cohort.h5ad", model, out=tmp_path / "half", chunk_size=16, gep_dtype="float16")
    back = Deconvolution.read(tmp_path / "half")  # all types in float16: read back as CPM
    assert np.allclose(back.expression, memory.expression, rtol=6e-3, atol=1e-2)  # float16 log1p: ~0.4 % in CPM
    deconvolve_chunked(folder / "cohort.h5ad", model, out=tmp_path / "nogep", chunk_size=16, gep=False)
    assert sorted(p.name for p in (tmp_path / "nogep").iterdir()) == ["fit.csv", "proportions.csv", "provenance.json"]


def test_interrupted_run_resumes_and_never_leaves_half_an_output(cohort, tmp_path):
    model, folder, memory = cohort
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        deconvolve_chunked(folder / "cohort.h5ad", model, out=out, chunk_size=16, batch_size=8, fail_after_chunks=2)
    assert not out.exists()  # nothing half-written where the result goes
    assert (tmp_path / "out.partial").is_dir()
    resumed = deconvolve_chunked(folder / "cohort.h5ad", model, out=out, chunk_size=16, batch_size=8)
    assert resumed.n_resumed == 2 and not (tmp_path / "out.partial").exists()
    reference = _in_memory_folder(memory, model, tmp_path / "memory")
    assert (out / "proportions.csv").read_bytes() == (reference / "proportions.csv").read_bytes()
    # a failing run leaves a previous result untouched
    before = (out / "proportions.csv").read_bytes()
    with pytest.raises(KeyboardInterrupt):
        deconvolve_chunked(folder / "cohort.h5ad", model, out=out, chunk_size=8, overwrite=True, fail_after_chunks=1)
    assert (out / "proportions.csv").read_bytes() == before


def test_dask_writes_the_local_paths_files_gep_included(cohort, tmp_path):
    """Issue 24.3: every chunk a task that writes its own region; the files equal the local run's."""
    from distributed import LocalCluster

    model, folder, memory = cohort
    local = deconvolve_chunked(folder / "cohort.h5ad", model, out=tmp_path / "local", chunk_size=16, batch_size=8)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        remote = deconvolve_dask(folder / "cohort.h5ad", model, out=tmp_path / "dask", chunk_size=16, batch_size=8,
                                 scheduler=cluster.scheduler_address)
    assert remote.files == local.files and remote.n_chunks == 3
    for table in ("proportions.csv", "fit.csv"):
        assert (tmp_path / "dask" / table).read_bytes() == (tmp_path / "local" / table).read_bytes()
    from blue_core.engine.result import Deconvolution

    assert np.array_equal(Deconvolution.read(tmp_path / "dask").expression, memory.expression)


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
    from blue_core.engine.result import Deconvolution
    from blue_core.engine.model import save_model

    model, folder, memory = cohort
    model_dir = save_model(model, tmp_path / "tiny")
    assert main(["deconvolve", str(folder / "cohort.h5"), "--model", str(model_dir), "--out", str(tmp_path / "a"),
                 "--chunk-size", "16", "--batch-size", "8", "--gep-dtype", "float16"]) == 0
    captured = capsys.readouterr()
    assert "in 3 chunks" in captured.out and "read: in sample chunks" in captured.err
    props = _tables(tmp_path / "a")[0]
    assert np.allclose(props.to_numpy(), memory.proportions_table().to_numpy(), rtol=0, atol=1e-6)
    from distributed import LocalCluster

    # an in-process cluster (worker processes start slowly on a loaded CI machine; bench/scale.py runs 'local')
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        assert main(["deconvolve", str(folder / "cohort.h5ad"), "--model", str(model_dir), "--out",
                     str(tmp_path / "b"), "--chunk-size", "16", "--batch-size", "8", "--scheduler",
                     cluster.scheduler_address, "--log-base", "auto"]) == 0
    assert f"on Dask ({cluster.scheduler_address})" in capsys.readouterr().out
    assert np.allclose(Deconvolution.read(tmp_path / "b").expression, memory.expression, rtol=1e-5, atol=1e-3)
    assert main(["deconvolve", str(folder / "cohort.h5ad"), "--model", str(model_dir), "--out", str(tmp_path / "a"),
                 "--chunk-size", "16"]) == 2  # a finished result is not overwritten without --overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_csv_reads_any_row_range_in_one_pass_when_sequential(cohort):
    _, folder, _ = cohort
    frame = pd.read_csv(folder / "cohort.csv", index_col=0)
    source = open_bulk(folder / "cohort.csv")
    for start, stop in ((16, 32), (0, 8), (8, 40), (3, 5)):
        assert np.array_equal(source.read(start, stop), frame.iloc[start:stop].to_numpy(dtype=np.float64))


@pytest.fixture(scope="module")
def wide_file(cohort, tmp_path_factory):
    """The cohort with 2,000 genes the model does not read: a file whose reading costs more than its GEPs."""
    model, folder, _ = cohort
    frame = pd.read_csv(folder / "cohort.csv", index_col=0)
    filler = pd.DataFrame(np.random.default_rng(0).poisson(5, (len(frame), 2000)).astype(np.float64),
                          index=frame.index, columns=[f"FILLER{i}" for i in range(2000)])
    path = tmp_path_factory.mktemp("wide") / "wide.h5ad"
    ad.AnnData(pd.concat([frame, filler], axis=1).astype(np.float32)).write_h5ad(path)
    return model, path


def _budget_between_gep_and_file(model, path):
    from blue_core.engine.run_plan import gep_bytes

    need = 2 * gep_bytes(40, model)
    assert need < path.stat().st_size / 2  # the test needs a file larger than the chunked run's GEPs
    return str((need + path.stat().st_size / 2) / 2 / 1e6)


def test_a_file_over_the_memory_budget_streams_without_a_flag_and_equals_the_in_memory_result(
        wide_file, tmp_path, monkeypatch, capsys):
    """Issue 24, must show: under a small BLUE_MEMORY_BUDGET_MB the same call streams, on its own, to the same
    numbers and the same files (Python and CLI); the CLI says which path it took."""
    from blue_core.cli import main
    from blue_core.engine.model import save_model
    from blue_core.engine.result import Deconvolution
    from blue_core.engine.run_plan import plan_run

    model, path = wide_file
    model_dir = save_model(model, tmp_path / "tiny")
    held = deconvolve(path, model, batch_size=8)
    assert "read" not in held.input_report and not plan_run(path, model).streams
    assert main(["deconvolve", str(path), "--model", str(model_dir), "--out", str(tmp_path / "memory")]) == 0
    assert "read: in memory" in capsys.readouterr().err

    monkeypatch.setenv("BLUE_MEMORY_BUDGET_MB", _budget_between_gep_and_file(model, path))
    plan = plan_run(path, model)
    assert plan.streams and "memory budget" in plan.reason
    streamed = deconvolve(path, model, batch_size=8)
    assert streamed.input_report["read"]["mode"] == "stream"
    assert np.array_equal(streamed.proportions.to_numpy(), held.proportions.to_numpy())
    assert np.array_equal(streamed.expression, held.expression)
    assert np.array_equal(streamed.fit["fit_r"].to_numpy(), held.fit["fit_r"].to_numpy())
    assert main(["deconvolve", str(path), "--model", str(model_dir), "--out", str(tmp_path / "stream")]) == 0
    assert "read: in sample chunks (wide.h5ad: " in capsys.readouterr().err
    names = sorted(p.name for p in (tmp_path / "stream").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "memory").iterdir())
    assert (tmp_path / "stream" / "proportions.csv").read_bytes() == (tmp_path / "memory" / "proportions.csv").read_bytes()
    on_disk = [Deconvolution.read(tmp_path / kind) for kind in ("memory", "stream")]
    assert np.array_equal(on_disk[0].expression, on_disk[1].expression)
    assert np.array_equal(on_disk[0].fit["fit_r"].to_numpy(), on_disk[1].fit["fit_r"].to_numpy())


def test_gep_over_the_budget_in_python_is_refused_with_the_command_that_writes_them(wide_file, monkeypatch):
    from blue_core.engine.run_plan import gep_bytes

    model, path = wide_file
    monkeypatch.setenv("BLUE_MEMORY_BUDGET_MB", str(gep_bytes(40, model) / 1e6))  # GEPs and their copy: twice that
    with pytest.raises(BlueInputError, match=r"GEPs of its 40 samples would still need .* blue deconvolve wide.h5ad "
                                             r"--model tiny --out DIR"):
        deconvolve(path, model)
