"""AppTest of the Cell-type expression page with the pancreas demo (type 2 diabetes vs normal)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from _app_helpers import array, assert_clean, figures, page, seed, table_with

PAGE = "3_Cell_type_expression.py"


def test_guard_without_result() -> None:
    at = page(PAGE).run()
    assert not at.exception
    assert "Load a cohort first" in at.info[0].value


def test_heatmaps_group_test_and_downloads() -> None:
    at = seed(page(PAGE), "fadista_islets").run()
    assert_clean(at)
    result = at.session_state["result"]
    cell_type = str(result.cell_types[0])
    # default preset: markers of the cell type, predicted higher there than in any other cell type
    assert at.selectbox(key="gep_preset").value.startswith("Markers")
    means = pd.DataFrame({str(c): result.gep(c).mean(axis=0) for c in result.cell_types}).T
    shown = list(figures(at)[0]["data"][0]["y"])
    assert all(means.loc[cell_type, g] >= means.drop(index=cell_type)[g].max() for g in shown)
    at.selectbox(key="gep_preset").select("Most variable (top 30)").run()
    figs = figures(at)
    heat = figs[0]["data"][0]
    assert heat["type"] == "heatmap"
    z = array(heat["z"]).reshape(len(heat["y"]), len(heat["x"]))
    assert z.shape == (30, 77)  # top-30 variable genes x samples
    assert np.allclose(z.mean(axis=1), 0, atol=1e-4) and np.allclose(z.std(axis=1), 1, atol=1e-3)  # z-scored per gene
    # switch to CPM: the values are the predicted GEP itself
    at.radio(key="gep_scale").set_value("CPM").run()
    heat = figures(at)[0]["data"][0]
    z = array(heat["z"]).reshape(len(heat["y"]), len(heat["x"]))
    gep = result.gep(cell_type)
    assert np.allclose(z, gep.loc[heat["x"], heat["y"]].to_numpy().T, rtol=1e-5)
    # one sample, cell types x genes
    sample_heat = figures(at)[1]["data"][0]
    assert list(sample_heat["y"]) == [str(c) for c in result.cell_types]
    sample = at.selectbox(key="gep_sample").value
    cpm = np.array([result.gep(c).loc[sample, list(sample_heat["x"])].to_numpy() for c in result.cell_types])
    shape = (len(sample_heat["y"]), len(sample_heat["x"]))
    assert np.allclose(array(sample_heat["customdata"]).reshape(shape), cpm, rtol=1e-5)  # hover: CPM
    assert np.allclose(array(sample_heat["z"]).reshape(shape), np.log10(cpm + 1), rtol=1e-5)  # colour: log
    # type 2 diabetes vs normal (hba1c_class2 is picked by default), per-gene test
    assert at.selectbox(key="gep_group").value == "hba1c_class2"
    tests = table_with(at, "test")
    assert (tests["test"] == "Mann-Whitney U").all()
    assert len(tests) == min(500, len(result.genes))
    assert {"median Normal", "median T2D"} <= set(tests.columns)
    assert tests["measured_in_input"].all()  # fadista measures every output gene: nothing inferred is tested
    labels = {b.label for b in at.get("download_button")}
    assert f"{cell_type} GEPs, all genes x samples (CSV; measured_in_input marks inferred genes)" in labels
    # issue 25.5: how much of the type's per-sample variation follows its fraction, in words, and every type's share
    words = [str(m.value).replace("\\", "") for m in list(at.caption) + list(at.warning)
             if "fraction" in str(m.value) and str(m.value).startswith(cell_type)]
    assert words and "% of its marker genes' variation between samples follows" in words[0]
    shares = table_with(at, "share of the variation that follows the fraction")
    assert list(shares.index) == [str(c) for c in result.cell_types]
    assert shares["share of the variation that follows the fraction"].between(0, 1).all()
    assert "All cell types' GEPs + proportions (h5ad)" in labels


def test_gene_search() -> None:
    at = seed(page(PAGE), "fadista_islets").run()
    genes = [str(g) for g in at.session_state["result"].genes]
    wanted = [g for g in ("INS", "GCG", "SST") if g in genes] or genes[:3]
    at.selectbox(key="gep_preset").select("Pick genes ...").run()
    at.multiselect(key="gep_genes").set_value(wanted).run()
    assert_clean(at)
    assert list(figures(at)[0]["data"][0]["y"]) == wanted


def test_sample_profile_against_the_reference_mean() -> None:
    at = seed(page(PAGE), "fadista_islets").run()
    assert_clean(at)
    at.radio(key="gep_view").set_value("Predicted vs the model's reference mean").run()
    assert_clean(at)
    versus = [f for f in figures(at) if "vs the reference mean" in str(f["layout"].get("title", ""))]
    assert len(versus) == 1
    from blue_core.analysis import tables
    from blue_studio import state as app_state

    result = at.session_state["result"]
    model = app_state.get_model(at.session_state["model_name"])
    sample = at.selectbox(key="gep_sample").value
    genes = [g.rstrip(" †") for g in versus[0]["data"][0]["x"]]
    expected = tables.versus_reference(result, model, sample=sample, genes=genes)
    z = array(versus[0]["data"][0]["z"]).reshape(expected.shape)
    assert np.allclose(z, expected.to_numpy(), atol=1e-4)  # log2 (predicted + 1) / (reference + 1)


def test_unmeasured_genes_are_marked() -> None:
    at = seed(page(PAGE), "tcga_laml").run()  # TCGA measures 712 genes; the AML model outputs 1,502
    assert_clean(at)
    result = at.session_state["result"]
    missing = set(result.input_report["unmeasured_output_genes"])
    assert len(missing) > 500
    at.selectbox(key="gep_preset").select("Pick genes ...").run()
    pick = sorted(missing)[:2] + [g for g in result.genes if g not in missing][:2]
    at.multiselect(key="gep_genes").set_value(pick).run()
    assert_clean(at)
    labels = list(figures(at)[0]["data"][0]["y"])
    assert sum(label.endswith("†") for label in labels) == 2
    assert any("were not measured in your data" in c.value for c in at.caption)


def test_no_significant_difference_is_said_plainly() -> None:
    at = seed(page(PAGE), "fadista_islets")
    clinical = at.session_state["clinical"].copy()
    rng = np.random.default_rng(0)
    clinical["coin"] = rng.choice(["heads", "tails"], size=len(clinical))  # a grouping with no biology
    at.session_state["clinical"] = clinical
    at.run()
    at.selectbox(key="gep_group").select("coin").run()
    assert_clean(at)
    assert any("No gene differs significantly between the coin groups (FDR < 0.05" in i.value.replace("\\", "")
               for i in at.info)


def test_a_run_with_cohort_profiles_says_the_profiles_depend_on_the_cohort() -> None:
    """Issue 25: with gep_estimator='cohort' the page says what was fitted and what that means for comparisons."""
    import warnings

    from blue_core.engine.gep_estimators import with_estimator
    from blue_core.engine.inference import deconvolve
    from blue_core.engine.model import load_model
    from blue_core.io import read_bulk
    from blue_core.io.datasets import sample_root

    at = seed(page(PAGE), "fadista_islets")
    model = with_estimator(load_model("pancreas"), "cohort")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        at.session_state["result"] = deconvolve(read_bulk(sample_root() / "fadista_islets" / "bulk.csv.gz"), model)
    at.run()
    assert_clean(at)
    captions = " ".join(c.value for c in at.caption)
    assert "mean profiles in this cohort" in captions
    assert "cohort profiles fitted on the 77 samples of this run" in captions
    assert "compare groups that were deconvolved together" in captions
