"""save_model / load_model round trip and the checks on corrupted model files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blue_core.exceptions import BlueModelError
from blue_core.engine.model import load_model, save_model
from blue_core.engine.store import list_models
from blue_core.engine.inference import deconvolve


@pytest.fixture(scope="module")
def trained(tiny_trained):
    return tiny_trained(n_genes=60, seed=2, n_markers=10, bulk_seed=7, n_bulk=12, tissue="synthetic",
                        description="unit-test model")


@pytest.fixture()
def saved(trained, tmp_path):
    model, _ = trained
    return save_model(model, tmp_path / "tiny")


def test_round_trip_predicts_identically(trained, saved):
    model, bulk = trained
    loaded = load_model(saved)
    assert loaded.input_genes == model.input_genes and loaded.cell_types == model.cell_types
    a, b = deconvolve(bulk, model), deconvolve(bulk, loaded)
    assert np.array_equal(a.proportions.to_numpy(), b.proportions.to_numpy())
    assert np.array_equal(a.expression, b.expression)
    card = json.loads((saved / "model.json").read_text())
    assert card["format_version"] == 1 and len(card["weights_sha256"]) == 64
    assert card["network"]["signal_length"] == 16 and card["description"] == "unit-test model"


def test_refuses_to_overwrite(trained, saved):
    with pytest.raises(BlueModelError, match="overwrite=True"):
        save_model(trained[0], saved)
    save_model(trained[0], saved, overwrite=True)


def test_corrupted_weights(saved):
    weights = saved / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BlueModelError, match="corrupted or was replaced"):
        load_model(saved)


def test_truncated_weights_with_matching_sha(saved):
    weights = saved / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    card = json.loads((saved / "model.json").read_text())
    import hashlib

    card["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (saved / "model.json").write_text(json.dumps(card))
    with pytest.raises(BlueModelError, match="cannot be read as safetensors"):
        load_model(saved)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c.update(format_version=99), "format_version 99"),
        (lambda c: c.update(weights_sha256="0" * 64), "does not match its model card"),
        (lambda c: c.update(input_genes=c["input_genes"][:-1]), "do not fit the network|input_genes lists"),
        (lambda c: c.pop("cell_types"), "lacks"),
    ],
)
def test_bad_card(saved, edit, match):
    card = json.loads((saved / "model.json").read_text())
    edit(card)
    (saved / "model.json").write_text(json.dumps(card))
    with pytest.raises(BlueModelError, match=match):
        load_model(saved)


def test_card_not_json(saved):
    (saved / "model.json").write_text("{not json")
    with pytest.raises(BlueModelError, match="not valid JSON"):
        load_model(saved)


def test_missing_weights(saved):
    (saved / "model.safetensors").unlink()
    with pytest.raises(BlueModelError, match="no model.safetensors"):
        load_model(saved)


def test_store_lists_and_finds_by_name(saved, monkeypatch):
    monkeypatch.setenv("BLUE_MODELS_DIR", str(saved.parent))
    table = list_models()
    row = table[table["name"] == "tiny"].iloc[0]
    assert row["tissue"] == "synthetic" and row["cell_types"] == "type0, type1, type2"
    assert load_model("tiny").name == "tiny"
    with pytest.raises(BlueModelError, match="no model named 'nope'"):
        load_model("nope")


def test_list_models_empty(tmp_path, monkeypatch):
    import blue_core.engine.store as store

    monkeypatch.setattr(store, "search_path", lambda: [tmp_path])
    table = list_models()
    assert table.empty and list(table.columns) == store.COLUMNS


def _zip(entries: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def test_model_zip_round_trip_and_refusals(trained, saved):
    """Issue 13.7: a trained model loads back from its zip; unsafe or wrong archives are refused with a message."""
    from blue_core.engine.model import load_model_zip

    model, bulk = trained
    files = {name: (saved / name).read_bytes() for name in ("model.json", "model.safetensors", "adaptation.safetensors")}
    good = _zip({f"tiny/{k}": v for k, v in files.items()})
    loaded = load_model_zip(good)
    assert loaded.name == "tiny" and loaded.cell_types == model.cell_types
    assert np.array_equal(deconvolve(bulk, loaded).proportions.to_numpy(), deconvolve(bulk, model).proportions.to_numpy())
    bad_cases = {
        "not a zip": b"PK-not-really",
        "unexpected entry": _zip({**{f"tiny/{k}": v for k, v in files.items()}, "tiny/run.py": b"print(1)"}),
        "unexpected entry '../": _zip({f"../{k}": v for k, v in files.items()}),
        "unexpected entry '/": _zip({f"/abs/{k}": v for k, v in files.items()}),
        "lacks": _zip({"tiny/model.json": files["model.json"]}),
        "adaptation.safetensors is missing": _zip({f"tiny/{k}": files[k] for k in ("model.json", "model.safetensors")}),
        "unexpected entry 'tiny/link": _zip({f"tiny/{k}": v for k, v in files.items()}, symlink="tiny/link"),
        "sha256": _zip({"tiny/model.json": files["model.json"],
                        "tiny/model.safetensors": files["model.safetensors"][:-4] + b"\x00\x00\x00\x01"}),
    }
    for expected, data in bad_cases.items():
        with pytest.raises(BlueModelError, match=expected.split(" '")[0] if expected != "sha256" else "sha256|weights"):
            load_model_zip(data)
    with pytest.raises(BlueModelError, match="limit"):
        load_model_zip(good, max_bytes=1000)
