"""Cohort adaptation (issue 21): deterministic, never touches the shipped weights, refuses what it cannot do."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
import torch

from blue_core.engine.adaptation import AdaptationConfig, adaptation_text, read_bank
from blue_core.engine.gep_estimators import with_estimator
from blue_core.exceptions import BlueInputError, BlueModelError
from blue_core.engine.inference import deconvolve
from blue_core.engine.model_format import BANK_FILE
from blue_core.engine.model import load_model, save_model

QUICK = AdaptationConfig(steps=15, batch_size=16)


def _state_bytes(model) -> bytes:  # noqa: ANN001
    digest = hashlib.sha256()
    for net in model.networks:
        for key, value in sorted(net.state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().cpu().numpy().tobytes())
    return digest.digest()


def _run(model, bulk, adapt):  # noqa: ANN001, ANN202
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return deconvolve(bulk, model, adapt=adapt)


def test_adaptation_is_deterministic_and_changes_only_proportions(tiny_trained):
    model, bulk = tiny_trained(n_bulk=12)
    plain = _run(model, bulk, False)
    first, second = _run(model, bulk, QUICK), _run(model, bulk, QUICK)
    np.testing.assert_array_equal(first.proportions.to_numpy(), second.proportions.to_numpy())
    assert not np.allclose(first.proportions.to_numpy(), plain.proportions.to_numpy())
    np.testing.assert_allclose(first.proportions.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first.expression, plain.expression)  # the GEP branch is not adapted
    record = first.input_report["adaptation"]
    assert record["ran"] and record["n_samples"] == 12 and record["settings"]["steps"] == 15
    assert plain.input_report["adaptation"] == {"ran": False, "reason": "not requested"}
    other_seed = _run(model, bulk, AdaptationConfig(steps=15, batch_size=16, seed=1))
    assert not np.array_equal(other_seed.proportions.to_numpy(), first.proportions.to_numpy())


def test_the_record_says_whether_adaptation_moves_the_geps(tiny_trained):
    model, bulk = tiny_trained(n_bulk=12)
    network = _run(model, bulk, QUICK)
    assert network.input_report["adaptation"]["gep_branch"].startswith("unchanged")
    assert "GEPs are those of the shipped networks" in adaptation_text(network.input_report["adaptation"])
    closed = with_estimator(model, "closed_form")  # the shipped models' estimator: GEPs split by the fractions
    plain, adapted = _run(closed, bulk, False), _run(closed, bulk, QUICK)
    assert not np.allclose(plain.expression, adapted.expression)
    text = adaptation_text(adapted.input_report["adaptation"])
    assert "closed-form estimator" in text and "change with them" in text and "unchanged (" not in text


def test_adaptation_leaves_the_model_and_its_files_byte_identical(tiny_trained, tmp_path):
    model, bulk = tiny_trained(n_bulk=12)
    save_model(model, tmp_path / "tiny")
    files = {p.name: p.read_bytes() for p in (tmp_path / "tiny").iterdir()}
    loaded = load_model(tmp_path / "tiny")
    before = _state_bytes(loaded)
    _run(loaded, bulk, QUICK)
    assert _state_bytes(loaded) == before
    assert all(not net.training for net in loaded.networks)
    assert {p.name: p.read_bytes() for p in (tmp_path / "tiny").iterdir()} == files
    np.testing.assert_array_equal(_run(loaded, bulk, False).proportions.to_numpy(),
                                  _run(model, bulk, False).proportions.to_numpy())


def test_too_small_cohort_is_refused_with_the_floor_and_the_fix(tiny_trained):
    model, bulk = tiny_trained(n_bulk=12)
    small = bulk.iloc[:3]
    with pytest.raises(BlueInputError, match=r"at least 8 samples and this one has 3.*Run without adaptation"):
        _run(model, small, True)
    auto = _run(model, small, "auto")
    assert auto.input_report["adaptation"]["ran"] is False
    assert "3 samples" in adaptation_text(auto.input_report["adaptation"])
    np.testing.assert_array_equal(auto.proportions.to_numpy(), _run(model, small, False).proportions.to_numpy())


def test_a_model_without_bank_is_refused_or_skipped(tiny_trained):
    import copy

    model, bulk = tiny_trained(n_bulk=12)
    bare = copy.copy(model)
    bare.adaptation_bank = None
    with pytest.raises(BlueInputError, match="carries no simulation bank.*bank"):
        _run(bare, bulk, True)
    assert "no simulation bank" in _run(bare, bulk, "auto").input_report["adaptation"]["reason"]
    with pytest.raises(BlueInputError, match="adapt must be"):
        _run(model, bulk, "yes")


def test_bank_round_trip_and_a_replaced_bank_is_refused(tiny_trained, tmp_path):
    model, _ = tiny_trained()
    assert model.adaptation_bank is not None and model.adaptation_bank.values.shape[1] == len(model.input_genes)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.adaptation_bank.values, model.adaptation_bank.values)
    (tmp_path / "m" / BANK_FILE).write_bytes((tmp_path / "m" / BANK_FILE).read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(BlueModelError, match="does not match its model card"):
        load_model(tmp_path / "m")
    with pytest.raises(BlueModelError, match="does not fit the model"):
        from blue_core.engine.adaptation import write_bank

        write_bank(model.adaptation_bank, tmp_path / "bank.safetensors")
        read_bank(tmp_path / "bank.safetensors", n_input_genes=3, n_cell_types=len(model.cell_types))


def test_settings_are_checked_by_name():
    with pytest.raises(BlueInputError, match="unknown adaptation setting.*valid"):
        AdaptationConfig.from_dict({"stepz": 3})
    with pytest.raises(BlueInputError, match="min_samples must be"):
        AdaptationConfig(min_samples=1)
    assert AdaptationConfig.from_dict({"steps": 5}).steps == 5


def test_shipped_models_carry_a_bank_that_fits():
    for name in ("pbmc", "blood", "pancreas"):
        model = load_model(name)
        assert model.adaptation_bank is not None, name
        assert model.adaptation_bank.proportions.shape == (model.adaptation_bank.n_samples, len(model.cell_types))
        torch.testing.assert_close(torch.from_numpy(model.adaptation_bank.proportions.sum(1)),
                                   torch.ones(model.adaptation_bank.n_samples))


def test_downloads_record_the_adaptation(tiny_trained, tmp_path):
    """The result folder's provenance.json and the analysis bundle's manifest say that (and how) it was adapted."""
    import json

    from blue_core.io.bundle import read_bundle, write_bundle

    model, bulk = tiny_trained(n_bulk=12)
    result = _run(model, bulk, QUICK)
    result.write(tmp_path / "out")
    provenance = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert provenance["adaptation"]["ran"] is True and provenance["adaptation"]["settings"]["steps"] == 15
    opened = read_bundle(write_bundle(result, model=model))
    assert opened.manifest["adaptation"]["settings"]["steps"] == 15
    assert opened.result.input_report["adaptation"]["ran"] is True
