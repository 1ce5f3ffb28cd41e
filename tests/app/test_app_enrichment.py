"""AppTest of the Enrichment page: pancreas demo, type 2 diabetes vs the rest, shipped gene sets."""

from __future__ import annotations

from _app_helpers import array, assert_clean, figures, page, plain, seed, table_with

PAGE = "5_Enrichment.py"


def test_guard_without_result() -> None:
    at = page(PAGE).run()
    assert not at.exception
    assert "Load a cohort first" in at.info[0].value


def test_enrichment_table_and_plot() -> None:
    at = seed(page(PAGE), "fadista_islets").run()
    assert_clean(at)
    assert "Run enrichment" in at.info[0].value
    # collections shipped in the repo are offered (never KEGG)
    options = at.multiselect(key="enr_collections").options
    assert "hallmark" in options and "reactome" in options and not any("kegg" in o.lower() for o in options)
    at.selectbox(key="enr_source").select("clinical: hba1c_class2")
    at.run()
    at.selectbox(key="enr_group").select("T2D")
    at.multiselect(key="enr_collections").set_value(["hallmark"])
    at.radio(key="enr_method").set_value("ora")
    at.button(key="enr_run").click().run()
    assert_clean(at)
    table = table_with(at, "leading_genes")
    assert len(table) >= 1
    assert set(table["collection"]) == {"hallmark"}
    assert table["p"].between(0, 1).all() and table["fdr"].between(0, 1).all()
    passing = table[table["fdr"] < 0.05]
    if len(passing):  # only sets that pass FDR are drawn
        bars = figures(at)[0]
        assert bars["data"][0]["type"] == "bar"
        assert len(array(bars["data"][0]["x"])) == min(20, len(passing))
    else:  # nothing is drawn as a finding, and the page says so
        assert not figures(at)
        assert any("Nothing significant at FDR < 0.05" in plain(i.value) for i in at.info)
    assert any(b.label == "Download enrichment table (CSV)" for b in at.get("download_button"))
