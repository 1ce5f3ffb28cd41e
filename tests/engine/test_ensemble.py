"""Issue 10: ensembles (members in one safetensors file + one card) and proportion intervals."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from _engine_data import synthetic_reference

from blue_core.engine.ensemble import build_ensemble
from blue_core.exceptions import BlueInputError, BlueModelError
from blue_core.engine.calibration import Z90, proportion_intervals
from blue_core.engine.result import Deconvolution
from blue_core.engine.inference import deconvolve
from blue_core.engine.model import load_model, save_model
from blue_core.engine.training import train_model

TINY = dict(n_samples=96, n_validation_samples=32, cells_per_sample=30, epochs=1, proportion_epochs=2, batch_size=32,
            network=dict(hidden=16, signal_length=16, base_channels=2, depth=2), n_markers=10, n_output_genes=40)


@pytest.fixture(scope="module")
def reference():
    return synthetic_reference(n_cells=150, n_genes=60, seed=1)


@pytest.fixture(scope="module")
def ensemble(reference):
    members = [train_model(reference, name="ens", seed=s, split_seed=0, **TINY) for s in range(3)]
    return build_ensemble(members, references=reference, n_validation=60)


def _bulk(reference, n=6):
    import anndata as ad

    from blue_core.engine.simulation import simulate

    pb = simulate(reference, n, cells_per_sample=40, seed=5)
    return ad.AnnData(pd.DataFrame(pb.bulk, columns=pb.genes, index=[f"S{i}" for i in range(n)]).astype(float)), pb


def test_members_share_genes_through_split_seed(reference):
    a = train_model(reference, name="a", seed=0, split_seed=0, **TINY)
    b = train_model(reference, name="b", seed=1, split_seed=0, **TINY)
    assert a.input_genes == b.input_genes and a.output_genes == b.output_genes
    assert b.card["training"]["split_seed"] == 0 and b.card["training"]["seed"] == 1


def test_intervals_shape_and_order(ensemble, reference):
    bulk, _ = _bulk(reference)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = deconvolve(bulk, ensemble)
    lo, hi, mean = result.proportions_lo, result.proportions_hi, result.proportions
    assert lo.shape == hi.shape == mean.shape == (6, 3)
    assert (lo.to_numpy() <= mean.to_numpy() + 1e-6).all() and (mean.to_numpy() <= hi.to_numpy() + 1e-6).all()
    assert (lo.to_numpy() >= 0).all() and (hi.to_numpy() <= 1).all()
    assert np.allclose(mean.sum(axis=1), 1, atol=1e-5)
    assert {"member_spread", "members_disagree"} <= set(result.fit.columns)
    card = ensemble.card["intervals"]
    assert set(card["sigma_by_type"]) == set(ensemble.cell_types) and 0 <= card["validation_coverage"] <= 1


def test_proportion_intervals_combine_spread_and_validation_error():
    members = np.array([[[0.5, 0.5]], [[0.7, 0.3]]], dtype=np.float32)  # 2 members, 1 sample, 2 types
    lo0, hi0, spread = proportion_intervals(members, calibration=None, cell_types=["a", "b"])
    assert np.allclose(spread, 0.1414, atol=1e-3)
    lo1, hi1, _ = proportion_intervals(members, calibration={"z": Z90, "sigma_by_type": {"a": 0.1, "b": 0.0}},
                                     cell_types=["a", "b"])
    assert hi1[0, 0] - lo1[0, 0] > hi0[0, 0] - lo0[0, 0]  # validation error widens the interval
    assert np.isclose(hi1[0, 1] - lo1[0, 1], hi0[0, 1] - lo0[0, 1])


def test_ensemble_save_load_round_trip(ensemble, reference, tmp_path):
    saved = save_model(ensemble, tmp_path / "ens")
    card = json.loads((saved / "model.json").read_text())
    assert card["n_members"] == 3 and len(card["members"]) == 3
    from safetensors import safe_open

    with safe_open(str(saved / "model.safetensors"), framework="pt") as handle:
        keys = list(handle.keys())
    assert {k.split(".")[0] for k in keys} == {"m0", "m1", "m2"}
    again = load_model(saved)
    assert again.n_members == 3
    bulk, _ = _bulk(reference)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = deconvolve(bulk, ensemble), deconvolve(bulk, again)
    assert np.allclose(a.proportions, b.proportions) and np.allclose(a.proportions_hi, b.proportions_hi)
    assert np.allclose(a.expression, b.expression)


def test_ensemble_outputs_written_and_read(ensemble, reference, tmp_path):
    bulk, _ = _bulk(reference)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = deconvolve(bulk, ensemble)
    result.write(tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "proportions.csv", index_col=0)
    assert list(table.columns) == [c for t in ensemble.cell_types for c in (t, f"{t}_lo", f"{t}_hi")]
    again = Deconvolution.read(tmp_path / "out")
    assert np.allclose(again.proportions_lo, result.proportions_lo)
    assert again.fit["members_disagree"].dtype == bool


def test_ensemble_members_must_match(reference):
    a = train_model(reference, name="a", seed=0, **TINY)
    b = train_model(reference, name="b", seed=1, **TINY)  # own split: other genes
    if a.input_genes != b.input_genes:
        with pytest.raises(BlueInputError, match="split_seed"):
            build_ensemble([a, b])
    with pytest.raises(BlueInputError, match="at least 2"):
        build_ensemble([a])


def test_member_header_mismatch_refused(ensemble, tmp_path):
    saved = save_model(ensemble, tmp_path / "ens2")
    card = json.loads((saved / "model.json").read_text())
    card["n_members"] = 4
    (saved / "model.json").write_text(json.dumps(card))
    with pytest.raises(BlueModelError, match="do not fit the network"):
        load_model(saved)


def test_proportions_page_draws_error_bars(ensemble, reference):
    from _app_helpers import figures, page

    bulk, _ = _bulk(reference)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = deconvolve(bulk, ensemble)
    at = page("2_Proportions.py")
    at.session_state["result"] = result
    at.session_state["result_key"] = ("k", "m")
    at.run()
    assert not at.exception
    bars = [f for f in figures(at) if "90% intervals" in str(f["layout"].get("title", ""))]
    assert len(bars) == 1 and "error_y" in bars[0]["data"][0]
    tables = [t.value for t in at.dataframe if "type0_lo" in t.value.columns]
    assert tables and (tables[0]["type0_lo"] <= tables[0]["type0"]).all()


def test_real_cohort_error_widens_the_intervals_and_unmeasured_types_take_the_largest():
    """Issue 22.4: the intervals carry an error term measured on real cohorts; a type no cohort measures takes the
    largest measured term, and without residuals nothing is calibrated (a clear error, not a silent zero)."""
    import pandas as pd

    from blue_core.engine.ensemble import real_cohort_sigma
    from blue_core.exceptions import BlueInputError
    from blue_core.engine.calibration import Z90

    residuals = pd.DataFrame({"cell_type": ["A", "A", "B", "B"], "residual": [0.1, -0.1, 0.3, 0.3]})
    real = real_cohort_sigma(residuals, ["A", "B", "C"])
    assert real == pytest.approx({"A": 0.1, "B": 0.3, "C": 0.3})
    with pytest.raises(BlueInputError, match="cannot be calibrated"):
        real_cohort_sigma(residuals.iloc[:0], ["A"])
    members = np.full((3, 2, 3), 0.5, dtype=np.float32)  # members agree: the half-width is the calibration alone
    plain = {"z": Z90, "sigma_by_type": {"A": 0.0, "B": 0.0, "C": 0.0}}
    lo, hi, _ = proportion_intervals(members, calibration=plain, cell_types=["A", "B", "C"])
    assert np.allclose(hi - lo, 0.0)
    lo, hi, _ = proportion_intervals(members, calibration={**plain, "real_cohorts": {"sigma_by_type": real}},
                                     cell_types=["A", "B", "C"])
    assert np.allclose((hi - lo)[0], 2 * Z90 * np.array([0.1, 0.3, 0.3]), atol=1e-5)


def test_ensemble_takes_the_members_split_and_refuses_another(reference):
    """Issue 23.4: the split is the members' own (their cards), never a default the caller forgot to change."""
    import copy

    a = train_model(reference, name="a", seed=0, split_seed=0, **TINY)
    c = train_model(reference, name="c", seed=1, split_seed=0, **TINY)
    with pytest.raises(BlueInputError, match="split_seed=3 was given, but the members were trained with split_seed=0"):
        build_ensemble([a, c], references=reference, split_seed=3, n_validation=20)
    b = copy.copy(c)
    b.card = {**c.card, "training": {**c.card["training"], "split_seed": 5}}  # a member whose card says another split
    with pytest.raises(BlueInputError, match="different validation splits"):
        build_ensemble([a, b], references=reference, n_validation=20)
    assert build_ensemble([a, c], references=reference, n_validation=20).card["training"]["split_seed"] == 0


def test_ensemble_refuses_references_whose_validation_cells_differ(reference):
    """The members' cards record their validation cells (a digest): calibrating on a changed reference would use
    cells a member trained on, and is refused."""
    members = [train_model(reference, name="m", seed=s, split_seed=0, **TINY) for s in range(2)]
    recorded = members[0].card["training"]["validation_cells"]["reference"]
    assert recorded["n"] > 0 and len(recorded["sha256"]) == 64
    changed = reference[reference.obs_names[5:]].copy()  # five cells fewer: another split
    with pytest.raises(BlueInputError, match="does not give the validation cells the model held out"):
        build_ensemble(members, references=changed, n_validation=20)
    assert build_ensemble(members, references=reference, n_validation=20).n_members == 2
