"""AppTest of the Subtypes & survival page with the AML demos (TCGA discovery -> TARGET validation)."""

from __future__ import annotations


from _app_helpers import assert_clean, figures, page, plain, seed, table_with

PAGE = "4_Subtypes_and_survival.py"


def test_guard_without_result() -> None:
    at = page(PAGE).run()
    assert not at.exception
    assert "Load a cohort first" in at.info[0].value


def test_subtypes_km_cox_and_validation() -> None:
    at = seed(page(PAGE), "tcga_laml").run()
    assert_clean(at)
    assert "Find subtypes" in at.info[0].value
    at.selectbox(key="sub_k").select(3)
    at.button[0].click().run()  # the form's submit button
    assert_clean(at)
    summary = table_with(at, "stability")
    assert list(summary["subtype"]) == ["S1", "S2", "S3"]
    assert summary["n"].sum() == 173
    labels = at.session_state["subtypes"].labels_
    assert labels.nunique() == 3 and len(labels) == 173
    figs = figures(at)
    assert figs[0]["data"][0]["type"] == "heatmap"  # clustered heatmap
    # Kaplan-Meier: one curve per subtype, numbers at risk, log-rank p, Cox table
    assert at.selectbox(key="surv_time").value == "os_days"
    assert at.selectbox(key="surv_event").value == "os_event"
    metrics = {m.label: m.value for m in at.metric}
    p = float(metrics["Log-rank p"])
    assert 0 <= p <= 1
    assert 150 <= int(metrics["Patients used"]) <= 173
    km = [f for f in figs if "at risk" in json_text(f)]
    assert km, "no Kaplan-Meier figure with numbers at risk"
    forest = [f for f in figures(at) if "hazard ratio" in json_text(f)]
    assert forest and forest[0]["layout"]["xaxis"]["type"] == "log"
    cox = table_with(at, "hazard ratio (95% CI)")
    assert list(cox["subtype"]) == ["S1", "S2", "S3"] and cox["patients"].sum() == int(metrics["Patients used"])
    # units and no empty cells (issue 13.7): days named, the reference row says so, no None/nan
    assert "median survival (days)" in cox.columns and cox.loc[0, "hazard ratio (95% CI)"] == "1 (reference)"
    at_risk = table_with(at, "0 days")
    assert list(at_risk.index) == ["S1", "S2", "S3"] and all(c.endswith(" days") for c in at_risk.columns)
    for frame in (cox, at_risk, table_with(at, "p (Bonferroni)")):
        cells = frame.astype(str).to_numpy().ravel()
        assert not {"None", "nan", "NaN", "<NA>", ""} & set(cells)
    # one click: validate in every other cohort the AML model reads (no islets, no PBMC), Holm over them
    assert at.multiselect(key="val_cohorts").options == ["beataml", "target_aml"]
    assert at.multiselect(key="val_cohorts").value == ["beataml", "target_aml"]
    at.button(key="val_run").click().run()
    assert_clean(at)
    validations = at.session_state["validation"]
    assert [v.title.split(":")[0] for v in validations] == ["BeatAML", "TARGET-AML"]
    for v in validations:
        assert v.n_features > 0 and set(v.labels.unique()) <= {"S1", "S2", "S3"}
        assert v.p_adjusted >= v.survival.logrank_p_ and v.discovery_best == validations[0].discovery_best
        assert v.replicated == (v.p_adjusted < 0.05 and v.best_group == v.discovery_best)
    summary = table_with(at, "Holm p")
    assert list(summary["replicates"].str.split(":").str[0]) == ["yes" if v.replicated else "no" for v in validations]
    assert sum("Validation" in json_text(f) for f in figures(at)) == 2
    said = " ".join(plain(el.value) for el in [*at.success, *at.warning])
    n_rep = sum(v.replicated for v in validations)
    assert (f"replicates in {n_rep} of 2" in said) if n_rep else ("does not replicate in any of the 2" in said)


def test_proportion_features_auto_k() -> None:
    at = seed(page(PAGE), "tcga_laml").run()
    at.radio(key="sub_features").set_value("proportions")
    at.selectbox(key="sub_k").select("auto")
    at.button[0].click().run()
    assert_clean(at)
    subtypes = at.session_state["subtypes"]
    assert subtypes.features == "proportions"
    assert 2 <= subtypes.k_ <= 6
    assert len(table_with(at, "pac")) == 5  # k = 2..6 scored


def json_text(fig: dict) -> str:
    import json

    return json.dumps(fig)


def test_cohort_without_survival_columns_explains() -> None:
    """The pancreas demo has no follow-up columns: subtypes are shown, survival explains what it needs."""
    at = seed(page(PAGE), "fadista_islets").run()
    at.selectbox(key="sub_k").select(2)
    at.button[0].click().run()
    assert_clean(at)
    assert table_with(at, "stability")["n"].sum() == 77
    assert any("os_days" in i.value for i in at.info)
    assert not [f for f in figures(at) if "at risk" in json_text(f)]
    at.checkbox(key="surv_manual").check().run()  # a wrong pick gives a clear message, never a traceback
    assert not at.exception


def test_validation_cohorts_are_those_the_same_model_reads() -> None:
    from blue_core.io.datasets import validation_cohorts

    assert validation_cohorts("aml", exclude="tcga_laml") == ["beataml", "target_aml"]
    assert validation_cohorts("aml", exclude="target_aml") == ["beataml", "tcga_laml"]
    assert validation_cohorts("pancreas", exclude="fadista_islets") == []
    assert validation_cohorts("my-own-model") == []
