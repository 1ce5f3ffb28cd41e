"""Issue 13.3: trust signals -- tissue checks with named causes, verdicts, and a model recommended from the data."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from blue_core.analysis.trust import MARKER_SETS, MIN_GENES_FOR_CHECKS, assess, compartment_scores, load_calibration, tissue_checks

CAL = {"ceilings": {"neutrophil": 0.9, "islet endocrine": 0.2, "leukocyte": 0.7},
       "floors": {"leukocyte": 0.95}, "fit_floor": {"blood_model": 0.5}, "spread_ceiling": {},
       "models": {"blood_model": "a" * 64}}


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
    model = SimpleNamespace(name="blood_model", card={"tissue": "blood", "weights_sha256": "a" * 64})
    report = assess(bulk, SimpleNamespace(fit=fit), model=model, calibration=CAL)
    assert list(report.table["verdict"]) == ["ok", "caution", "caution"]
    assert "worse" in report.table.loc["s1", "reasons"] and report.counts == {"ok": 1, "caution": 2, "wrong input": 0}
    wrong = assess(_bulk("islet endocrine"), SimpleNamespace(fit=fit), model=model, calibration=CAL)
    assert set(wrong.table["verdict"]) == {"wrong input"}
    assert "pancreatic islets" in wrong.summary


def test_model_calibration_applies_only_to_the_weights_it_was_measured_with():
    from blue_core.engine.calibration import fit_threshold, for_model

    same = SimpleNamespace(name="blood_model", card={"weights_sha256": "a" * 64}, fit_r_threshold=0.9)
    other = SimpleNamespace(name="blood_model", card={"weights_sha256": "b" * 64}, fit_r_threshold=0.9)
    assert for_model(same, calibration=CAL)["fit_floor"] == 0.5 and for_model(other, calibration=CAL) == {}
    assert fit_threshold(same, calibration=CAL) == (0.5, "real cohorts")
    assert fit_threshold(other, calibration=CAL) == (0.9, "simulated mixtures")
    bulk = _bulk(None)
    fit = pd.DataFrame({"fit_r": [0.8, 0.3, 0.4], "poorly_explained": False}, index=bulk.index)
    report = assess(bulk, SimpleNamespace(fit=fit), model=other, calibration=CAL)
    # a retrained model of the same name gets no real-cohort floor: the one flag rule (issue 23.2) judges it on its
    # simulated limit, as deconvolve does, and the summary says it is not calibrated on real cohorts
    assert set(report.table["verdict"]) == {"caution"}
    assert "not calibrated on real cohorts" in report.summary and "simulated" in report.table["reasons"].iloc[0]
    assert "not calibrated" not in assess(bulk, SimpleNamespace(fit=fit), model=same, calibration=CAL).summary


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
    from blue_core.analysis.trust import recommend_model

    models = [bc.load_model(n) for n in ("pbmc", "pancreas", "aml")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for demo, expected in (("monaco_pbmc", "pbmc"), ("fadista_islets", "pancreas"), ("tcga_laml", "aml")):
            ranking = recommend_model(bc.load_sample(demo).bulk, models)
            assert ranking["model"].iloc[0] == expected, (demo, ranking)


def test_shipped_calibration_holds_the_shipped_weights():
    """A rebuilt model must come with a re-run of bench/trust.py, or its real-cohort floors silently lapse."""
    import blue_core as bc

    cal = load_calibration()
    for name in ("pbmc", "pancreas", "aml", "blood"):
        assert cal["models"][name] == bc.load_model(name).card["weights_sha256"], name


@pytest.mark.slow
def test_poorly_explained_agrees_with_the_trust_verdict_on_the_models_own_tissue():
    """Issue 13.3: the Proportions page flagged 11 of 12 Monaco PBMC as poorly explained (a simulated-mixture
    threshold) while the trust verdict called all 12 ok; both now read the same real-cohort floor."""
    import warnings

    import blue_core as bc
    from blue_core.analysis.trust import assess

    model = bc.load_model("pbmc")
    bulk = bc.load_sample("monaco_pbmc").bulk
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = bc.deconvolve(bulk, model)
    assert result.input_report["fit_r_threshold_basis"] == "real cohorts"
    report = assess(bulk, result, model=model)
    flagged = set(result.fit.index[result.fit["poorly_explained"]])
    cautioned = set(report.table.index[report.table["reasons"].str.contains("reconstructs this sample worse")])
    assert flagged == cautioned and len(flagged) <= 2


def test_looks_like_takes_marrow_before_granulocytes():
    from blue_core.analysis.trust import looks_like

    cal = {"ceilings": {"neutrophil": 0.9, "myeloid progenitor": 0.6, "islet endocrine": 0.2}}
    frame = pd.DataFrame({"neutrophil": [0.95, 0.96, 0.5], "myeloid progenitor": [0.3, 0.2, 0.1],
                          "islet endocrine": [0.0, 0.0, 0.0]})
    assert looks_like(frame, calibration=cal) == "whole blood"
    assert looks_like(frame.assign(**{"myeloid progenitor": 0.7}), calibration=cal) == "bone marrow"
    assert looks_like(frame.assign(neutrophil=0.5), calibration=cal) is None
    assert looks_like(frame.assign(neutrophil=np.nan, **{"myeloid progenitor": np.nan}), calibration=cal) is None


def _granulocyte_rich_monaco():
    """Monaco PBMC with the neutrophil marker genes raised 200-fold: a synthetic stand-in for whole blood."""
    import blue_core as bc

    frame = bc.load_sample("monaco_pbmc").bulk.to_df()
    genes = [g for g in MARKER_SETS["neutrophil"] if g in frame.columns]
    frame[genes] = frame[genes] * 200 + 500
    return frame


@pytest.mark.slow
def test_whole_blood_like_input_recommends_the_blood_model(tmp_path, capsys):
    """Issue 16.3: neutrophil genes high -> the whole-blood model, in the library (the app's recommendation)
    and in the CLI's advice after a 'wrong input' verdict with the PBMC model."""
    import warnings

    import blue_core as bc
    from blue_core.cli import main
    from blue_core.analysis.trust import recommend_model

    models = [bc.load_model(n) for n in ("pbmc", "pancreas", "aml", "blood")]
    frame = _granulocyte_rich_monaco()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranking = recommend_model(frame, models)
        plain = recommend_model(bc.load_sample("monaco_pbmc").bulk, models)
    assert ranking["model"].iloc[0] == "blood" and bool(ranking["looks_like"].iloc[0])
    assert plain["model"].iloc[0] == "pbmc"  # PBMC stays with the PBMC model
    path = tmp_path / "wholeblood.csv"
    frame.T.rename_axis("gene").to_csv(path)
    assert main(["deconvolve", str(path), "--model", "pbmc", "--out", str(tmp_path / "out")]) == 0
    assert "rerun with --model blood" in capsys.readouterr().err


def test_recommend_model_judges_a_large_cohort_on_a_bounded_subsample(monkeypatch):
    import blue_core.engine.inference as inference
    from blue_core.analysis.trust import recommend_model

    seen = []

    def fake_deconvolve(bulk, model, **_):
        seen.append(bulk.shape[0])
        return SimpleNamespace(fit=pd.DataFrame({"fit_r": np.full(bulk.shape[0], 0.8)}))

    monkeypatch.setattr(inference, "deconvolve", fake_deconvolve)
    model = SimpleNamespace(name="blood_model", card={"tissue": "blood", "weights_sha256": "a" * 64})
    ranking = recommend_model(_bulk(None, n_samples=30), [model], calibration=CAL, max_samples=7)
    assert seen == [7] and ranking["model"].tolist() == ["blood_model"]


def test_recommendation_follows_tissue_evidence_and_says_when_nothing_fits(monkeypatch):
    """Issue 22.2: PBMC-like data go to the PBMC model even when another model's checks do not fire and its fit
    is higher; a model whose tissue the data do not look like is never 'fits'; the reason supports the model."""
    from blue_core.engine import inference
    from blue_core.analysis.trust import recommend_model

    fits = {"pbmc_model": 0.55, "marrow_model": 0.75}

    def fake_deconvolve(bulk, model, **_):
        return SimpleNamespace(fit=pd.DataFrame({"fit_r": np.full(bulk.shape[0], fits[model.name])}))

    monkeypatch.setattr(inference, "deconvolve", fake_deconvolve)
    pbmc = SimpleNamespace(name="pbmc_model", card={"tissue": "PBMC", "weights_sha256": "a" * 64})
    marrow = SimpleNamespace(name="marrow_model", card={"tissue": "bone marrow (AML)", "weights_sha256": "b" * 64})
    cal = CAL  # leukocyte ceiling 0.7 (PBMC-like above it) and floor 0.95 (checked by both models)
    ranking = recommend_model(_bulk(None), [marrow, pbmc], calibration=cal)
    assert ranking["model"].tolist() == ["pbmc_model", "marrow_model"]
    assert ranking["fits"].tolist() == [True, False] and "looks like PBMC" in ranking["reason"].iloc[0]
    tumour = _bulk(None)
    tumour.loc[:, [g for g in MARKER_SETS["leukocyte"] if g in tumour.columns]] = 0.0  # no immune cells at all
    none = recommend_model(tumour, [marrow, pbmc], calibration=cal)
    assert not none["fits"].any()


def test_an_array_floor_scores_as_zero_reads():
    """Issue 22.3: arrays have no zeros; unexpressed genes sit at a small positive floor. Islet genes at that floor
    must score as they do at zero reads, not at the floor's rank among everything."""
    rng = np.random.default_rng(3)
    seq = _bulk(None)
    seq[list(MARKER_SETS["islet endocrine"])] = 0.0
    seq.iloc[:, :4000] = 0.0  # RNA-seq: many unexpressed genes read zero
    array = seq.where(seq > 0, 1.1 * np.exp(rng.normal(0, 0.1, size=seq.shape)))  # an array: a noisy floor instead
    assert (array > 0).all().all()
    s_seq, s_array = compartment_scores(seq), compartment_scores(array)
    assert (s_seq["islet endocrine"] == 0).all() and (s_array["islet endocrine"] == 0).all()
    assert np.allclose(s_seq["leukocyte"], s_array["leukocyte"], atol=0.02)


def test_progenitor_evidence_needs_blast_genes_or_granule_genes_beyond_neutrophils():
    """Issue 22.3: MPO/ELANE/AZU1 are also read in whole blood (with far more neutrophil genes); they count as
    progenitor evidence only beyond the neutrophil genes, and blast genes (CD34, KIT...) count on their own."""
    whole_blood = _bulk("neutrophil")
    whole_blood[list(MARKER_SETS["primary granule"])] = 1e4  # high, but below the neutrophil genes
    marrow = _bulk("primary granule")
    blasts = _bulk("blast")
    scores = {k: compartment_scores(v)["myeloid progenitor"] for k, v in
              {"whole blood": whole_blood, "marrow": marrow, "blasts": blasts}.items()}
    assert (scores["whole blood"] < 0.05).all()
    assert (scores["marrow"] > 0.9).all() and (scores["blasts"] > 0.9).all()
    cal = {**CAL, "ceilings": {**CAL["ceilings"], "myeloid progenitor": 0.4}}
    assert tissue_checks(compartment_scores(whole_blood), "PBMC", calibration=cal).query(
        "compartment == 'myeloid progenitor'").empty
    fired = tissue_checks(compartment_scores(marrow), "PBMC", calibration=cal)
    assert (fired["compartment"] == "myeloid progenitor").sum() == 3 and "CD34" in fired["cause"].iloc[0]


def test_a_sample_mostly_outside_blood_is_wrong_input_and_looks_like_no_model():
    """Issue 22.3: epithelial or melanocytic genes high -> a named cause for blood models, and a cohort of such
    samples looks like a solid tissue or tumour, which no installed tissue matches."""
    from blue_core.analysis.trust import SOLID_TISSUE, looks_like

    tumour = _bulk("melanocytic")
    cal = {**CAL, "ceilings": {**CAL["ceilings"], "non-immune": 0.5}}
    scores = compartment_scores(tumour)
    for tissue in ("PBMC", "whole blood", "bone marrow (AML)"):
        checks = tissue_checks(scores, tissue, calibration=cal)
        assert (checks["compartment"] == "non-immune").sum() == 3, tissue
        assert "not blood" in checks["cause"].iloc[0]
    assert looks_like(scores, calibration=cal) == SOLID_TISSUE


def test_assess_and_deconvolve_flag_with_one_rule(tmp_path):
    """Issue 23.2: for a model without a real-cohort calibration, deconvolve's ``poorly_explained`` and assess's
    'caution' are the same samples (they were 11 of 12 vs none on Monaco)."""
    import warnings

    import blue_core as bc

    model = bc.load_model("pbmc")
    model.card = {**model.card, "weights_sha256": "0" * 64}  # as a user-trained model: nothing calibrated for it
    bulk = bc.load_sample("monaco_pbmc").bulk
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = bc.deconvolve(bulk, model, adapt=False)
    report = assess(bulk, result, model=model)
    assert result.input_report["fit_r_threshold_basis"] == "simulated mixtures"
    flagged = set(result.fit.index[result.fit["poorly_explained"] | result.fit["members_disagree"]])
    assert flagged == set(report.table.index[report.table["verdict"] != "ok"]) and flagged
    assert "not calibrated on real cohorts" in report.summary

