"""Issue 13.3: trust signals -- tissue checks with named causes, verdicts, and a model recommended from the data."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from blue_core.trust import MARKER_SETS, MIN_GENES_FOR_CHECKS, assess, compartment_scores, load_calibration, tissue_checks

CAL = {"ceilings": {"neutrophil": 0.9, "islet endocrine": 0.2, "leukocyte": 0.7},
       "floors": {"leukocyte": 0.95}, "fit_floor": {"blood_model": 0.5}, "spread_ceiling": {}}


def _bulk(high: str | None, n_samples: int = 3, seed: int = 0) -> pd.DataFrame:
    """Whole-transcriptome-sized random samples; the genes of ``high`` (and leukocytes) set to the top."""
    rng = np.random.default_rng(seed)
    genes = [f"G{i}" for i in range(MIN_GENES_FOR_CHECKS)] + sorted({g for s in MARKER_SETS.values() for g in s})
    frame = pd.DataFrame(rng.uniform(1, 100, size=(n_samples, len(genes))), columns=genes,
                         index=[f"s{i}" for i in range(n_samples)])
    for name in ("leukocyte",) + ((high,) if high else ()):
        frame[list(MARKER_SETS[name])] = 1e5
    for name in set(MARKER_SETS) - {"leukocyte", high}:
        frame[list(MARKER_SETS[name])] = 0.5
    return frame


def test_scores_are_ranks_and_panels_get_none():
    scores = compartment_scores(_bulk("neutrophil"))
    assert (scores["neutrophil"] > 0.99).all() and (scores["leukocyte"] > 0.99).all()
    assert (scores["islet endocrine"] < 0.05).all()
    panel = compartment_scores(_bulk("neutrophil").iloc[:, -200:])  # a 200-gene panel
    assert panel.isna().all().all()


def test_named_causes_fire_only_for_what_the_model_lacks():
    scores = compartment_scores(_bulk("neutrophil"))
    blood = tissue_checks(scores, "blood", calibration=CAL)
    assert len(blood) == 3 and blood["cause"].str.contains("whole blood").all()
    assert "FCGR3B" in blood["cause"].iloc[0]
    islets = tissue_checks(scores, "pancreatic islets", calibration=CAL)
    assert islets["cause"].str.contains("blood or immune cells").all()
    plain = tissue_checks(compartment_scores(_bulk(None)), "blood", calibration=CAL)
    assert plain.empty
    assert tissue_checks(scores, "blood", calibration={"ceilings": {}, "floors": {}}).empty  # nothing calibrated


def test_assess_combines_causes_fit_floor_and_says_it_plainly():
    bulk = _bulk(None)
    fit = pd.DataFrame({"fit_r": [0.8, 0.3, np.nan], "poorly_explained": [False, True, True]}, index=bulk.index)
    model = SimpleNamespace(name="blood_model", card={"tissue": "blood"})
    report = assess(bulk, SimpleNamespace(fit=fit), model=model, calibration=CAL)
    assert list(report.table["verdict"]) == ["ok", "caution", "caution"]
    assert "worse" in report.table.loc["s1", "reasons"] and report.counts == {"ok": 1, "caution": 2, "wrong input": 0}
    wrong = assess(_bulk("islet endocrine"), SimpleNamespace(fit=fit), model=model, calibration=CAL)
    assert set(wrong.table["verdict"]) == {"wrong input"}
    assert "pancreatic islets" in wrong.summary


def test_shipped_calibration_comes_from_the_bench():
    cal = load_calibration()
    assert "bench/trust.py" in cal.get("source", "")
    assert {"neutrophil", "leukocyte"} <= set(cal["ceilings"]) and set(cal["fit_floor"]) >= {"pbmc", "pancreas", "aml"}
    for value in [*cal["ceilings"].values(), *cal["floors"].values()]:
        assert 0 <= value <= 1


@pytest.mark.slow
def test_recommend_model_picks_the_tissue_of_real_demos():
    import warnings

    import blue_core as bc
    from blue_core.trust import recommend_model

    models = [bc.load_model(n) for n in ("pbmc", "pancreas", "aml")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for demo, expected in (("monaco_pbmc", "pbmc"), ("fadista_islets", "pancreas"), ("tcga_laml", "aml")):
            ranking = recommend_model(bc.load_sample(demo).bulk, models)
            assert ranking["model"].iloc[0] == expected, (demo, ranking)
