"""Issue 9: one test (or more) per fault of the security and data-safety audit.

Each test reproduces the audit's case and fails on the code before the fix (see
bench/results/security.md for the before/after outcomes measured by bench/security.py).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _engine_data import synthetic_reference

from blue_studio import cache, views
from blue_core.exceptions import BlueInputError, BlueModelError
from blue_core.io.files import atomic_directory, check_model_name
from blue_core.engine.result import Deconvolution
from blue_core.engine.inference import deconvolve
from blue_core.io import InputLimits, read_bulk, read_reference, read_reference_obs
from blue_core.engine.model import load_model, save_model
from blue_core.engine.training import train_model

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(n_samples=64, n_validation_samples=32, cells_per_sample=30, epochs=2, proportion_epochs=2, batch_size=16,
            network=dict(hidden=16, signal_length=16, base_channels=2, depth=2, dropout=0.3), n_markers=10,
            n_output_genes=40)


@pytest.fixture(scope="module")
def tiny_model():
    return train_model(synthetic_reference(n_cells=150, n_genes=60, seed=1), name="tiny", **TINY)


def _weights_digest(model) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(model.network.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()


def _bulk_csv(n_genes: int = 60, n_samples: int = 4, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.poisson(20, size=(n_genes, n_samples)), index=[f"GENE{i}" for i in range(n_genes)],
                         columns=[f"S{j}" for j in range(n_samples)])
    return frame.rename_axis("gene").to_csv().encode()


# ----------------------------------------------------------------------- 1. names never become paths
@pytest.mark.parametrize("name", ["../../etc/x", "/srv/pretrained/planted", "a/b", "..", "", " pbmc", "x" * 65,
                                  "pbmc\\..\\y", "name\n"])
def test_model_names_that_are_paths_are_refused(name):
    with pytest.raises(BlueInputError, match="not allowed: a model name is"):
        check_model_name(name)


def test_safe_names_pass():
    for name in ("pbmc", "my-model_2", "v1.2", "A"):
        assert check_model_name(name) == name


def test_train_refuses_a_path_name_before_any_work(monkeypatch):
    import blue_core.engine.training_sets as training_sets

    monkeypatch.setattr(training_sets, "simulate", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(BlueInputError, match="not allowed"):
        train_model(synthetic_reference(), name=str(ROOT / "pretrained" / "planted"))


def test_model_zip_never_writes_outside_a_temporary_folder(tiny_model, tmp_path, monkeypatch):
    before = sorted(p.name for p in (ROOT / "pretrained").iterdir())
    archive = zipfile.ZipFile(io.BytesIO(cache.model_zip_bytes(tiny_model)))
    assert sorted(archive.namelist()) == ["tiny/adaptation.safetensors", "tiny/model.json", "tiny/model.safetensors"]
    planted = tmp_path / "planted"
    tiny_model.name = str(planted)  # a name forced past the constructor's check
    try:
        with pytest.raises(BlueInputError, match="not allowed"):
            cache.model_zip_bytes(tiny_model)
        with pytest.raises(BlueInputError, match="not allowed"):
            save_model(tiny_model, tmp_path / "elsewhere")
    finally:
        tiny_model.name = "tiny"
    assert not planted.exists() and not (tmp_path / "elsewhere").exists()
    assert sorted(p.name for p in (ROOT / "pretrained").iterdir()) == before


def test_train_page_refuses_a_path_name():
    from _app_helpers import page
    from _app_helpers import reference_bytes as _reference_bytes

    before = sorted(p.name for p in (ROOT / "pretrained").iterdir())
    at = page("6_Train_a_model.py")
    at.session_state["ref_bytes"] = _reference_bytes()
    at.session_state["ref_filename"] = "tiny_blood.h5ad"
    at.run()
    at.text_input(key="train_name").input(str(ROOT / "pretrained" / "planted"))
    at.button[0].click().run()
    assert not at.exception
    assert any("not allowed" in e.value for e in at.error)
    assert not at.session_state["trained_models"]
    assert sorted(p.name for p in (ROOT / "pretrained").iterdir()) == before


# ----------------------------------------------------------------------- 2. bounded decompression
def test_gzip_bomb_stops_at_the_ceiling():
    bomb = gzip.compress(b"gene,S1\n" + b"0" * (8 << 20), compresslevel=9)  # 8 MB of text in ~8 kB
    limits = InputLimits(max_decompressed_bytes=1 << 20)
    with pytest.raises(BlueInputError, match="decompresses to more than 1 MB"):
        read_bulk(bomb, filename="bomb.csv.gz", limits=limits)


def test_ceiling_from_the_environment(monkeypatch):
    monkeypatch.setenv("BLUE_MAX_DECOMPRESSED_MB", "0.001")
    with pytest.raises(BlueInputError, match="BLUE_MAX_DECOMPRESSED_MB"):
        read_bulk(gzip.compress(_bulk_csv()), filename="x.csv.gz")
    monkeypatch.setenv("BLUE_MAX_DECOMPRESSED_MB", "lots")
    with pytest.raises(BlueInputError, match="not a number of megabytes"):
        read_bulk(_bulk_csv(), filename="x.csv")


def test_memory_budget_refuses_before_parsing(monkeypatch):
    import blue_core.io.bulk as bio

    monkeypatch.setattr(bio, "_parse_text", lambda *a: pytest.fail("parsed despite the budget"))
    with pytest.raises(BlueInputError, match="more than this server's budget"):
        read_bulk(_bulk_csv(), filename="x.csv", limits=InputLimits(memory_budget_bytes=10_000))


def test_h5ad_with_a_huge_declared_matrix_is_refused_before_reading(tmp_path, monkeypatch):
    import h5py

    path = tmp_path / "bomb.h5ad"
    with h5py.File(path, "w") as handle:  # 200,000 x 100,000 float64 declared, nothing written: a few kB
        handle.create_dataset("X", shape=(200_000, 100_000), dtype="f8", chunks=(1000, 1000), compression="gzip")
        handle.create_group("obs")
        handle.create_group("var")
    assert path.stat().st_size < 100_000
    import blue_core.io.hdf5 as hdf5

    monkeypatch.setattr(hdf5, "read_h5ad", lambda *a, **k: pytest.fail("read despite the declared size"))
    with pytest.raises(BlueInputError, match="MB once decompressed|budget"):
        read_bulk(path)
    with pytest.raises(BlueInputError, match="MB once decompressed|budget"):
        read_reference(path)


def test_xlsx_zip_bomb_is_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", b" " * (4 << 20))
    with pytest.raises(BlueInputError, match="workbook decompresses to"):
        read_bulk(buffer.getvalue(), filename="bomb.xlsx", limits=InputLimits(max_decompressed_bytes=1 << 20))


# ----------------------------------------------------------------------- 3. atomic, explicit overwrite
def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``blue ARGS`` in this process (as the CLI tests do); stdout/stderr captured."""
    import contextlib

    from blue_core.cli import main

    out, err = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    try:
        os.chdir(cwd or previous)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


@pytest.fixture()
def cohort(tmp_path, tiny_model):
    save_model(tiny_model, tmp_path / "model")
    bulk = tmp_path / "bulk.csv"
    bulk.write_bytes(_bulk_csv())
    return tmp_path


def test_deconvolve_refuses_to_overwrite_without_flag(cohort):
    out = cohort / "out"
    first = _cli("deconvolve", str(cohort / "bulk.csv"), "--model", str(cohort / "model"), "--out", str(out))
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = _cli("deconvolve", str(cohort / "bulk.csv"), "--model", str(cohort / "model"), "--out", str(out))
    assert again.returncode == 2 and "already exists and is not empty" in again.stderr and "--overwrite" in again.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    (out / "stale.txt").write_text("from an older run")
    forced = _cli("deconvolve", str(cohort / "bulk.csv"), "--model", str(cohort / "model"), "--out", str(out),
                  "--overwrite")
    assert forced.returncode == 0, forced.stderr
    assert sorted(p.name for p in out.iterdir()) == ["expression.h5ad", "fit.csv", "proportions.csv", "provenance.json"]
    assert not [p for p in cohort.iterdir() if p.name.startswith(".out.")]  # no temporary folder left


def test_deconvolve_out_is_a_file(cohort):
    (cohort / "taken").write_text("x")
    run = _cli("deconvolve", str(cohort / "bulk.csv"), "--model", str(cohort / "model"), "--out", str(cohort / "taken"))
    assert run.returncode == 2 and "is a file, not a folder" in run.stderr and "Traceback" not in run.stderr


def test_interrupted_write_leaves_the_previous_result_intact(tiny_model, tmp_path, monkeypatch):
    import anndata as ad

    bulk = read_bulk(_bulk_csv(), filename="b.csv")
    result = deconvolve(bulk, tiny_model)
    out = tmp_path / "result"
    result.write(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def disk_full(self, path, **kwargs):
        Path(path).write_bytes(b"\x89HDF half")  # a partly written file, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ad.AnnData, "write_h5ad", disk_full)
    with pytest.raises(OSError, match="No space left"):
        result.write(out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["result"]  # the temporary sibling is gone
    monkeypatch.undo()
    again = Deconvolution.read(out)
    assert np.allclose(again.proportions.to_numpy(), result.proportions.to_numpy())


def test_atomic_directory_restores_on_failure(tmp_path):
    target = tmp_path / "t"
    with atomic_directory(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_directory(target, overwrite=True) as tmp:
            (tmp / "a").write_text("2")
            raise RuntimeError("interrupted")
    assert (target / "a").read_text() == "1"


# ----------------------------------------------------------------------- 4. isolated randomness
def test_concurrent_trainings_with_one_seed_give_identical_weights():
    ref = synthetic_reference(n_cells=150, n_genes=60, seed=1)
    solo = _weights_digest(train_model(ref, seed=7, **TINY))
    stop = threading.Event()

    def other_session_using_global_rng():  # e.g. another user's code touching torch's global generator
        while not stop.is_set():
            torch.manual_seed(123)
            torch.rand(64)
            np.random.seed(5)

    digests: list[str] = []
    noise = threading.Thread(target=other_session_using_global_rng)
    noise.start()
    try:
        runs = [threading.Thread(target=lambda: digests.append(_weights_digest(train_model(ref, seed=7, **TINY))))
                for _ in range(2)]
        for run in runs:
            run.start()
        for run in runs:
            run.join()
    finally:
        stop.set()
        noise.join()
    assert digests == [solo, solo]


def test_training_leaves_the_global_generators_alone():
    torch.manual_seed(99)
    np.random.seed(99)
    expected_torch, expected_np = torch.get_rng_state().clone(), np.random.get_state()[1].copy()
    train_model(synthetic_reference(n_cells=150, n_genes=60, seed=1), seed=3, **TINY)
    assert torch.equal(torch.get_rng_state(), expected_torch)
    assert np.array_equal(np.random.get_state()[1], expected_np)


# ----------------------------------------------------------------------- 5. cards checked before use
@pytest.fixture()
def saved(tmp_path, tiny_model):
    return save_model(tiny_model, tmp_path / "tiny")


def _edit_card(directory: Path, edit) -> None:
    card = json.loads((directory / "model.json").read_text())
    edit(card)
    (directory / "model.json").write_text(json.dumps(card))


def test_oversized_card_is_refused_before_allocation(saved, monkeypatch):
    import blue_core.engine.model as bm

    n = 1_500_000

    def claim(card):
        card["input_genes"] = [f"G{i}" for i in range(n)]
        card["network"]["n_input_genes"] = n

    _edit_card(saved, claim)
    real = bm.BlueNet
    allocations = []

    def watched(*args, **kwargs):
        if torch.get_default_device().type != "meta":
            allocations.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(bm, "BlueNet", watched)
    with pytest.raises(BlueModelError, match="do not fit the network"):
        load_model(saved)
    assert allocations == []  # only a meta-device network (no memory) was built


@pytest.mark.parametrize("edit, match", [
    (lambda c: c["validation"].update(fit_r_threshold="high"), "fit_r_threshold must be a number"),
    (lambda c: c["network"].update(hidden="16"), "network.hidden must be an integer"),
    (lambda c: c["network"].update(extra=1), "network must hold exactly"),
    (lambda c: c.update(name="../../x"), "not a safe model name"),
    (lambda c: c.update(cell_types=["a", "a", "b"]), "duplicated"),
])
def test_card_schema(saved, edit, match):
    _edit_card(saved, edit)
    with pytest.raises(BlueModelError, match=match):
        load_model(saved)


def test_card_with_nan_is_not_strict_json(saved):
    text = (saved / "model.json").read_text().replace('"fit_r_threshold": ', '"fit_r_threshold": NaN, "x": ', 1)
    (saved / "model.json").write_text(text)
    with pytest.raises(BlueModelError, match="NaN is not allowed"):
        load_model(saved)


def test_shipped_cards_are_strict_json():
    for card in (ROOT / "pretrained").glob("*/model.json"):
        json.loads(card.read_text(), parse_constant=lambda token: pytest.fail(f"{card}: {token}"))


def test_a_name_is_never_a_folder_in_the_working_directory(saved, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(saved, tmp_path / "pbmc")  # a local folder named like the installed model
    installed = load_model("pbmc")
    assert installed.source == "installed" and installed.path != tmp_path / "pbmc"
    local = load_model("./pbmc")
    assert local.source == "folder" and local.name == "tiny"
    shutil.copytree(saved, tmp_path / "mine")
    with pytest.raises(BlueModelError, match=r"write it as a path \(\./mine\)"):
        load_model("mine")


def test_cli_says_which_model_it_used(cohort):
    run = _cli("deconvolve", str(cohort / "bulk.csv"), "--model", "./model", "--out", "o", cwd=cohort)
    assert run.returncode == 0, run.stderr
    assert "model: model folder 'tiny'" in run.stderr


# ----------------------------------------------------------------------- 6. h5ad without X, wide tables
def _h5ad_bytes(adata, tmp_path: Path) -> bytes:
    adata.write_h5ad(tmp_path / "a.h5ad")
    return (tmp_path / "a.h5ad").read_bytes()


def test_h5ad_without_x(tmp_path):
    import anndata as ad

    empty = ad.AnnData(obs=pd.DataFrame(index=["S1", "S2"]), var=pd.DataFrame(index=["CD4", "CD8A"]))
    data = _h5ad_bytes(empty, tmp_path)
    with pytest.raises(BlueInputError, match="no expression matrix"):
        read_bulk(data, filename="x.h5ad")
    with pytest.raises(BlueInputError, match="no expression matrix"):
        read_reference(data, filename="ref.h5ad")


def test_h5ad_with_text_x(tmp_path):
    import h5py

    import anndata as ad

    good = ad.AnnData(np.ones((2, 2)), obs=pd.DataFrame(index=["S1", "S2"]), var=pd.DataFrame(index=["CD4", "CD8A"]))
    path = tmp_path / "t.h5ad"
    good.write_h5ad(path)
    with h5py.File(path, "r+") as handle:
        attrs = dict(handle["X"].attrs)
        del handle["X"]
        handle.create_dataset("X", data=np.array([[b"a", b"b"], [b"c", b"d"]]))
        for key, value in attrs.items():
            handle["X"].attrs[key] = value
    with pytest.raises(BlueInputError, match="holds text values, not numbers"):
        read_bulk(path)
    with pytest.raises(BlueInputError, match="holds text values, not numbers"):
        read_reference(path)


def test_reference_obs_only():
    from _app_helpers import reference_bytes as _reference_bytes

    obs = read_reference_obs(_reference_bytes(), filename="r.h5ad")
    assert list(obs.columns) == ["celltype", "patient"] and len(obs) == 180


def test_whole_transcriptome_samples_x_genes_file_reads():
    from blue_core.io import genes

    symbols = sorted(genes._approved_symbols())[:20_000]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.poisson(5, size=(3, len(symbols))), index=["S1", "S2", "S3"], columns=symbols)
    data = frame.rename_axis("sample").to_csv().encode()
    assert len(data.split(b"\n")[0]) > 131_072  # longer than the csv module's default field limit
    bulk = read_bulk(data, filename="wide.csv")
    assert bulk.shape == (3, 20_000) and bulk.uns["blue_input"]["orientation"] == "samples_x_genes"
    assert np.array_equal(bulk[:, symbols[:5]].X, frame[symbols[:5]].to_numpy())


def test_200k_column_table_reads():
    rng = np.random.default_rng(0)
    samples = [f"S{j}" for j in range(200_000)]
    frame = pd.DataFrame(rng.poisson(5, size=(3, len(samples))), index=["CD4", "CD8A", "MS4A1"], columns=samples)
    bulk = read_bulk(frame.rename_axis("gene").to_csv().encode(), filename="many.csv")
    assert bulk.shape == (200_000, 3)


# ----------------------------------------------------------------------- 7. the CLI reports its changes
def test_cli_prints_the_input_report(cohort):
    frame = pd.read_csv(io.BytesIO(_bulk_csv()), index_col=0)
    frame.index = ["BAI1", "SDPR", *frame.index[2:-1], "GENE3"]  # two old symbols, one duplicated gene
    frame.rename_axis("gene").to_csv(cohort / "changed.csv")
    run = _cli("deconvolve", str(cohort / "changed.csv"), "--model", str(cohort / "model"), "--out",
               str(cohort / "o2"))
    assert run.returncode == 0, run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("input: ")]
    assert lines[0].startswith("input: changed.csv: 4 samples x 59 genes")
    assert any("summed 1 duplicated gene rows" in ln for ln in lines)
    assert any("renamed 2 old gene symbols" in ln for ln in lines)
    assert len(lines) == len(set(lines))  # each message once


# ----------------------------------------------------------------------- 8. names shown as plain text
INJECTED = "![pixel](http://evil.example/p.png)[click](http://evil.example) www.evil.example <a href='x'>"


def test_markdown_escape():
    shown = views.md(INJECTED)
    for raw in ("![", "](", "[click]", "www.evil", "http://"):
        assert raw not in shown
    assert shown.replace("\\", "").replace("\u200b", "") == INJECTED


def test_plotly_labels_are_plain_text():
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(x=["<a href='http://evil.example'>S1</a>", "S2"], y=[1, 2], name="<img src=x>",
                           hovertemplate="%{x}<br>%{y}<extra></extra>"))
    fig.update_layout(title="by <b>group</b>")
    safe = views.safe_figure(fig).to_dict()
    trace = safe["data"][0]
    assert trace["x"][0] == "&lt;a href='http://evil.example'&gt;S1&lt;/a&gt;" and trace["name"] == "&lt;img src=x&gt;"
    assert trace["hovertemplate"] == "%{x}<br>%{y}<extra></extra>"  # the code's own template untouched
    assert "<b>" not in safe["layout"]["title"]["text"]


def test_pages_render_injected_names_as_text():
    from _app_helpers import demo_result, figures, page, seed

    _, model, result, _ = demo_result("monaco_pbmc")
    props = result.proportions.copy()
    props.index = [INJECTED + str(i) for i in range(len(props))]
    hacked = Deconvolution(props, result.expression, result.cell_types, result.genes,
                           result.fit.set_axis(props.index), result.model_name, result.input_report)
    at = page("2_Proportions.py")
    seed(at, "monaco_pbmc")
    at.session_state["result"] = hacked
    at.session_state["truth"] = None
    at.session_state["bulk_label"] = INJECTED
    at.run()
    assert not at.exception
    for kind in ("markdown", "caption", "warning", "success", "subheader"):
        for el in getattr(at, kind):
            assert "](http" not in el.value and "![" not in el.value, el.value
    spec = json.dumps(figures(at))
    assert "<a href" not in spec and "&lt;a href" in spec


# ----------------------------------------------------------------------- 9. no user metadata in caches
def test_identical_bytes_under_two_names_do_not_leak_the_other_name(tiny_model):
    data = _bulk_csv(seed=42)
    alice, _ = cache.read_bulk_upload(data, "alice_patient_list.csv")
    result_a, _ = cache.run_deconvolution(alice, "k42", tiny_model)
    bob, messages = cache.read_bulk_upload(data, "bob.csv")
    result_b, _ = cache.run_deconvolution(bob, "k42", tiny_model)  # served from the shared cache
    assert bob.uns["blue_input"]["source"] == "bob.csv"
    assert result_b.input_report["source"] == "bob.csv" and result_a.input_report["source"] == "alice_patient_list.csv"
    assert b"alice" not in cache.anndata_bytes(result_b.to_anndata())
    assert not any("alice" in m for m in messages)


# ----------------------------------------------------------------------- 10. name the real cause
def test_utf16_text_reads(tmp_path):
    text = _bulk_csv().decode().replace(",", "\t")
    expected = read_bulk(text.encode(), filename="x.txt").X
    for encoding in ("utf-16", "utf-16-le", "utf-16-be"):
        bulk = read_bulk(text.encode(encoding), filename="x.txt")
        assert np.array_equal(bulk.X, expected), encoding


def test_xlsx_formulas_without_cached_values():
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["gene", "S1", "S2"])
    for gene in ("CD4", "CD8A", "MS4A1"):
        sheet.append([gene, "=1+1", "=2*3"])  # openpyxl stores formulas without results
    buffer = io.BytesIO()
    book.save(buffer)
    with pytest.raises(BlueInputError, match="formulas whose results were never saved"):
        read_bulk(buffer.getvalue(), filename="calc.xlsx")


def test_30000_gene_samples_x_genes_file_in_the_app_and_the_cli(tmp_path):
    """Issue 13.1 / 9.6: a whole-transcriptome samples x genes CSV (30,000 genes) reads in the app and the CLI."""
    from _app_helpers import assert_clean, page

    from blue_core.io import genes
    from blue_core.io.datasets import sample_root

    monaco = read_bulk(sample_root() / "monaco_pbmc")  # real values for the model's genes, padding for the rest
    symbols = list(dict.fromkeys([*map(str, monaco.var_names), *sorted(genes._approved_symbols())]))[:30_000]
    frame = pd.DataFrame(0.0, index=[str(s) for s in monaco.obs_names], columns=symbols)
    shared = [g for g in symbols if g in set(monaco.var_names)]
    frame.loc[:, shared] = np.asarray(monaco[:, shared].X, dtype=np.float64)
    data = frame.rename_axis("sample").to_csv(float_format="%.4g").encode()
    assert len(data.split(b"\n")[0]) > 131_072
    path = tmp_path / "wide.csv"
    path.write_bytes(data)
    run = _cli("deconvolve", str(path), "--model", "pbmc", "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    assert "samples x 30,000 genes" in run.stderr and "samples x genes" in run.stderr
    at = page("1_Data_and_model.py")
    at.session_state["model_name"] = "pbmc"
    at.session_state["bulk_source"] = "upload"
    at.session_state["bulk_bytes"] = data
    at.session_state["bulk_filename"] = at.session_state["bulk_label"] = "wide.csv"
    at.run()
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Samples"] == "12" and metrics["Genes"] == "30,000"


def test_import_blue_core_does_not_import_streamlit():
    code = "import sys, blue_core, blue_core.io, blue_core.engine.inference, blue_core.engine.model; print('streamlit' in sys.modules)"
    out = subprocess.run([__import__("sys").executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr


def test_a_file_over_the_in_memory_ceiling_is_pointed_to_the_streaming_path(tmp_path):
    """Issue 24.1: a streamable file over the memory budget names the command that streams it; a format that
    cannot stream does not get that advice. The decompression ceiling no longer applies to uncompressed bytes."""
    limits = InputLimits(max_decompressed_bytes=1_000, memory_budget_bytes=1_500)
    big = tmp_path / "big.h5ad"
    big.write_bytes(b"x" * 2_000)
    with pytest.raises(BlueInputError, match=r"blue deconvolve big\.h5ad --model NAME --out DIR streams it"):
        read_bulk(big, limits=limits)
    sheet = tmp_path / "big.xlsx"
    sheet.write_bytes(b"x" * 2_000)
    with pytest.raises(BlueInputError) as err:
        read_bulk(sheet, limits=limits)
    assert "chunk" not in str(err.value) and "split the samples" in str(err.value)
