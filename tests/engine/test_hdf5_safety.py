"""Issue 26.1: no HDF5 the code reads can make it read another file (external storage, external links,
virtual datasets), nor hide bytes in a user block. Each case is planted with h5py; the outside file is a
named pipe, so any attempt to open it is seen (:class:`_hdf5_plants.FifoWatch`)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import _hdf5_plants as plants
from blue_core.exceptions import BlueInputError
from blue_core.io.hdf5 import open_hdf5, read_h5ad


def _planted(kind: str, folder: Path, outside: Path) -> Path:
    path = folder / f"{kind}.h5ad"
    if kind == "external_storage":
        return plants.plant_external_storage(path, outside)
    if kind == "external_link":
        return plants.plant_external_link(path, outside)
    if kind == "virtual":
        return plants.plant_virtual(path, outside)
    if kind == "soft_link":
        return plants.plant_dangling_soft_link(path)
    return plants.plant_user_block(path)


_WORDS = {"external_storage": "keeps its data in an outside file", "external_link": "points into another file",
          "virtual": "is a virtual dataset", "soft_link": "not in the file", "user_block": "user block"}
_KINDS = list(_WORDS)


def _readers(tiny_model):
    from blue_core.io import read_bulk, read_reference, read_reference_obs
    from blue_core.io.chunked import open_bulk

    return {
        "read_bulk(path)": lambda p: read_bulk(p),
        "read_bulk(bytes)": lambda p: read_bulk(p.read_bytes(), filename=p.name),
        "read_reference": lambda p: read_reference(p),
        "read_reference_obs": lambda p: read_reference_obs(p),
        "open_bulk (streaming)": lambda p: open_bulk(p),
        "read_h5ad": lambda p: read_h5ad(p),
    }


@pytest.mark.parametrize("kind", _KINDS)
@pytest.mark.parametrize("reader", ["read_bulk(path)", "read_bulk(bytes)", "read_reference", "read_reference_obs",
                                    "open_bulk (streaming)", "read_h5ad"])
def test_planted_h5ad_is_refused_and_the_outside_file_never_opened(kind, reader, tmp_path):
    outside = tmp_path / "outside.fifo"
    with plants.FifoWatch(outside) as watch:
        path = _planted(kind, tmp_path, outside)
        with pytest.raises(BlueInputError) as err:
            _readers(None)[reader](path)
    message = str(err.value)
    assert _WORDS[kind] in message and "refused" in message and "\n" not in message
    assert not watch.opened, f"{reader} opened the outside file before refusing"
    assert plants.SECRET.decode().strip() not in message


def test_without_the_rule_the_planted_file_does_read_outside(tmp_path):
    """The plant is real: plain anndata returns the outside file's lines as sample names."""
    import anndata as ad

    secret = tmp_path / "secret.txt"
    secret.write_bytes(plants.SECRET * 4)
    path = plants.plant_external_storage(tmp_path / "p.h5ad", secret)
    names = "".join(ad.read_h5ad(path).obs_names)
    assert "SECRET-LINE" in names


def test_archive_hdf5_with_external_storage_is_refused(tmp_path):
    from blue_core.io.chunked import open_bulk

    outside = tmp_path / "outside.fifo"
    with plants.FifoWatch(outside) as watch:
        with h5py.File(tmp_path / "archive.h5", "w") as f:
            f["data/expression"] = np.ones((3, 2), dtype=np.float32)
            f["meta/genes/symbol"] = np.asarray(["A", "B", "C"], dtype="S")
            f.create_group("meta/samples").create_dataset("geo_accession", shape=(2,), dtype="S8", external=[(str(outside), 0, 16)])
        with pytest.raises(BlueInputError, match="meta/samples/geo_accession' keeps its data in an outside file"):
            open_bulk(tmp_path / "archive.h5")
    assert not watch.opened


def test_relative_external_path_is_refused_for_uploaded_bytes(tmp_path, monkeypatch):
    """Bytes uploaded to the server: a relative outside path would resolve against the server's folder."""
    from blue_core.io import read_bulk

    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "config.toml").write_bytes(plants.SECRET * 4)
    monkeypatch.chdir(tmp_path)
    path = plants.plant_external_storage(tmp_path / "rel.h5ad", ".streamlit/config.toml")
    with pytest.raises(BlueInputError, match="outside file"):
        read_bulk(path.read_bytes(), filename="upload.h5ad")


def test_saved_result_and_bundle_with_a_planted_h5ad_are_refused(tiny_trained, tmp_path):
    from blue_core.io.bundle import read_bundle, write_bundle
    from blue_core.engine.result import Deconvolution
    from blue_core.engine.inference import deconvolve

    model, bulk = tiny_trained(n_bulk=4, bulk_seed=1)
    result = deconvolve(bulk.astype(np.float64), model)
    result.write(tmp_path / "res")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(plants.SECRET * 64)
    target = tmp_path / "res" / "expression.h5ad"
    with h5py.File(target, "r+") as handle:
        del handle["obs/_index"]
        handle["obs"].create_dataset("_index", shape=(4,), dtype="S13", external=[(str(secret), 0, 52)])
    with pytest.raises(BlueInputError, match="outside file"):
        Deconvolution.read(tmp_path / "res")
    good = write_bundle(result, model=model)
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(buffer, "w") as dst:
        for info in src.infolist():
            data = target.read_bytes() if info.filename.endswith("expression.h5ad") else src.read(info)
            dst.writestr(info.filename, data)
    with pytest.raises(BlueInputError, match="outside file"):
        read_bundle(buffer.getvalue())


def test_plain_h5ad_still_reads(tmp_path):
    path = plants.bulk_h5ad(tmp_path / "ok.h5ad")
    assert read_h5ad(path).shape == (4, 60)
    assert read_h5ad(path.read_bytes(), name="ok.h5ad").shape == (4, 60)
    with open_hdf5(path) as handle:
        assert "X" in handle


def test_soft_link_inside_the_file_is_allowed(tmp_path):
    path = plants.bulk_h5ad(tmp_path / "soft.h5ad")
    with h5py.File(path, "r+") as handle:
        handle["uns/alias_of_X"] = h5py.SoftLink("/X")
    assert read_h5ad(path).shape == (4, 60)


def test_not_hdf5_gets_a_clear_message(tmp_path):
    bad = tmp_path / "bad.h5ad"
    bad.write_bytes(b"gene,S1\nA,1\n")
    with pytest.raises(BlueInputError, match="could not be read as an HDF5 file"):
        open_hdf5(bad)
    with pytest.raises(BlueInputError, match="not an HDF5 .h5ad file"):
        read_h5ad(bad.read_bytes(), name="bad.h5ad")


def test_all_hdf5_reading_goes_through_the_rule():
    """No code outside blue_core/io/hdf5.py opens HDF5 by itself (h5py.File or anndata's read_h5ad)."""
    root = Path(__file__).resolve().parents[2]
    offenders = []
    for folder in ("blue_core", "blue_studio", "pages"):
        for path in (root / folder).rglob("*.py"):
            if path.name == "hdf5.py" and path.parent.name == "io":
                continue
            text = path.read_text(encoding="utf-8")
            for needle in ("h5py.File(", "ad.read_h5ad(", "anndata.read_h5ad(", "read_elem(handle"):
                if needle in text and not (needle == "read_elem(handle" and "open_hdf5" in text):
                    offenders.append(f"{path.relative_to(root)}: {needle}")
    for path in [root / "app.py"]:
        if "h5py" in path.read_text(encoding="utf-8"):
            offenders.append(str(path))
    assert not offenders, offenders
