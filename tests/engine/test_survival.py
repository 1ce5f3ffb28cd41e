"""SurvivalAnalysis: known effect detected, null not called, clinical-table errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from blue_core.exceptions import BlueInputError
from blue_core.analysis.survival import SurvivalAnalysis


def _cohort(hr: float, n: int = 200, seed: int = 0) -> tuple[pd.Series, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    group = np.where(np.arange(n) < n // 2, "S1", "S2")
    rate = np.where(group == "S1", 1 / 1000, hr / 1000)
    t = rng.exponential(1 / rate)
    c = rng.uniform(0, 3000, n)
    ids = [f"P{i:03d}" for i in range(n)]
    clinical = pd.DataFrame({"sample": ids, "os_days": np.minimum(t, c), "os_event": (t <= c).astype(int)})
    return pd.Series(group, index=ids), clinical


def test_detects_known_effect():
    labels, clinical = _cohort(hr=3.0)
    sa = SurvivalAnalysis().fit(labels, clinical)
    assert sa.logrank_p_ < 1e-3
    hr = sa.hazard_ratios_.set_index("group")
    assert 2.0 < hr.loc["S2", "hr"] < 4.5
    assert hr.loc["S2", "hr_lower"] > 1.0
    assert sa.n_matched_ == 200
    s = sa.summary
    assert s["n"].tolist() == [100, 100]
    assert s.loc[1, "median_survival"] < s.loc[0, "median_survival"]
    assert sa.pairwise_.loc[0, "p"] < 1e-3


def test_null_effect_not_significant():
    labels, clinical = _cohort(hr=1.0, seed=5)
    sa = SurvivalAnalysis().fit(labels, clinical)
    assert sa.logrank_p_ > 0.05
    assert sa.hazard_ratios_.set_index("group").loc["S2", "hr_lower"] < 1.0


def test_to_dict_is_json_and_plot():
    labels, clinical = _cohort(hr=2.0, n=60)
    sa = SurvivalAnalysis(at_risk_times=[0, 500, 1000]).fit(labels, clinical)
    d = json.loads(json.dumps(sa.to_dict()))
    assert d["n_matched"] == 60 and d["logrank"]["df"] == 1
    assert [g["group"] for g in d["groups"]] == ["S1", "S2"]
    assert d["at_risk"]["times"] == [0.0, 500.0, 1000.0]
    assert d["at_risk"]["counts"]["S1"][0] == 30
    fig = sa.plot_km()
    assert "log-rank p" in fig.layout.title.text
    assert any(tr.mode == "text" for tr in fig.data)  # numbers-at-risk row


def test_text_events_are_mapped_and_reported():
    labels, clinical = _cohort(hr=2.0, n=40)
    clinical["os_event"] = clinical["os_event"].map({1: "Dead", 0: "Alive"})
    sa = SurvivalAnalysis().fit(labels, clinical)
    assert any("'Dead'->1" in n for n in sa.notes_)
    assert sa.data_["event"].isin([0, 1]).all()


def test_missing_times_dropped_and_reported():
    labels, clinical = _cohort(hr=2.0, n=40)
    clinical.loc[:4, "os_days"] = np.nan
    sa = SurvivalAnalysis().fit(labels, clinical)
    assert sa.n_dropped_ == 5 and sa.n_matched_ == 35
    assert sa.to_dict()["n_dropped"] == 5


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda c: c.assign(sample=c["sample"] + "-X"), "No sample IDs match"),
        (lambda c: c.assign(os_days=-c["os_days"]), "negative"),
        (lambda c: c.assign(os_event=np.where(c.index % 2, "Dead", "Unknown")), "not 0/1"),
        (lambda c: c.assign(os_event=c["os_event"] * 2), "must be 0"),
        (lambda c: c.assign(os_days="soon"), "non-numeric"),
        (lambda c: c.drop(columns="os_event"), "no column"),
        (lambda c: c.assign(os_event=0), "No events"),
    ],
)
def test_clinical_errors(mutate, match):
    labels, clinical = _cohort(hr=2.0, n=40)
    with pytest.raises(BlueInputError, match=match):
        SurvivalAnalysis().fit(labels, mutate(clinical))


def test_tcga_barcode_hint():
    labels, clinical = _cohort(hr=2.0, n=20)
    barcodes = [f"TCGA-AB-{2800 + i}" for i in range(20)]
    labels.index = [b + "-03A-01T-0734-13" for b in barcodes]
    clinical["sample"] = barcodes
    with pytest.raises(BlueInputError, match="12-character"):
        SurvivalAnalysis().fit(labels, clinical)


def test_group_without_events_reports_nan_hazard_ratio():
    labels, clinical = _cohort(hr=2.0, n=60)
    clinical.loc[labels.to_numpy() == "S2", "os_event"] = 0
    sa = SurvivalAnalysis().fit(labels, clinical)
    assert np.isnan(sa.hazard_ratios_.set_index("group").loc["S2", "hr"])
    assert any("Cox" in n for n in sa.notes_)
    assert sa.to_dict()["groups"][1]["hr"] is None  # strict JSON: NaN -> null
    assert sa.to_dict()["groups"][1]["median_survival"] is None  # not reached


def test_adjusted_cox_uses_numeric_and_categorical_covariates_on_complete_cases():
    rng = np.random.default_rng(3)
    n = 400
    age = rng.uniform(20, 80, n)
    risk = rng.choice(["favourable", "intermediate", "adverse"], n, p=[0.3, 0.5, 0.2])
    flip = rng.random(n) < 0.2
    group = np.where((risk == "adverse") ^ flip, "S2", "S1")  # the groups carry the risk effect only
    hazard = np.exp(0.03 * (age - 50) + 1.2 * (risk == "adverse"))
    time = rng.exponential(1000 / hazard)
    clinical = pd.DataFrame({"os_days": time, "os_event": 1, "age": age, "risk": risk},
                            index=[f"p{i}" for i in range(n)])
    clinical.loc["p0", "age"] = np.nan  # one patient without age: out of the adjusted model only
    labels = pd.Series(group, index=clinical.index)
    sa = SurvivalAnalysis(adjust_for=["age", "risk"]).fit(labels, clinical)
    crude = sa.hazard_ratios_.set_index("group").loc["S2", "hr"]
    adjusted = sa.adjusted_hazard_ratios_.set_index("group").loc["S2"]
    assert crude > 1.3 and sa.n_adjusted_ == n - 1 and sa.n_matched_ == n
    assert adjusted["hr_lower"] < 1 < adjusted["hr_upper"] and adjusted["hr"] < crude  # explained by risk
    assert any("adjusted Cox" in note for note in sa.notes_)
    assert sa.to_dict()["adjusted"]["n"] == n - 1
    with pytest.raises(BlueInputError, match="no column"):
        SurvivalAnalysis(adjust_for=["ecog"]).fit(labels, clinical)


def test_save_km_writes_the_chosen_formats_only(tmp_path):
    from blue_core.plotting import save_km

    rng = np.random.default_rng(1)
    labels = pd.Series(np.repeat(["S1", "S2"], 20), index=[f"p{i}" for i in range(40)])
    clinical = pd.DataFrame({"os_days": rng.exponential(500, 40), "os_event": 1}, index=labels.index)
    sa = SurvivalAnalysis().fit(labels, clinical)
    assert [p.name for p in save_km(sa, tmp_path, name="km", formats=("png",))] == ["km.png"]
    assert not (tmp_path / "km.html").exists() and (tmp_path / "km.png").stat().st_size > 1000
    with pytest.raises(BlueInputError, match="formats must be a non-empty subset"):
        save_km(sa, tmp_path, formats=("pdf",))
