"""AppTest of the Data & model page: model card, demo cohorts, input report, bad input, deconvolution."""

from __future__ import annotations

import gzip

import pytest

from _app_helpers import assert_clean, installed_models, page, plain, require_model, table_with

PAGE = "1_Data_and_model.py"


def test_guard_before_data() -> None:
    at = page(PAGE).run()
    assert not at.exception
    assert "Load a demo cohort or upload a bulk file to begin." in [i.value for i in at.info]
    # the four demo cohorts are offered as one-click buttons
    keys = {b.key for b in at.button}
    assert {"demo_monaco_pbmc", "demo_fadista_islets", "demo_tcga_laml", "demo_target_aml"} <= keys


def test_blood_demo_end_to_end_in_one_click() -> None:
    require_model("pbmc")
    at = page(PAGE).run()
    at.button(key="demo_monaco_pbmc").click().run()
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Samples"] == "12"
    assert metrics["Units detected"] == "TPM / CPM" and metrics["Gene IDs"] == "gene symbols"  # plain words
    # large cohorts: a copy-paste CLI line with the picked model (issue 14.4), no flag to know (issue 24.1)
    assert any(c.value.strip() == "blue deconvolve my_cohort.h5ad --model pbmc --out results" for c in at.code)
    assert metrics["Tissue"]  # the model card is shown
    assert any("Known limitations" in plain(w.value) and "MISSED" in plain(w.value) for w in at.warning)  # validation misses
    matched, total = (int(x.replace(",", "")) for x in metrics["Model genes found"].split(" / "))
    assert 0.5 * total <= matched <= total
    result = at.session_state["result"]
    assert result.proportions.shape[0] == 12
    # the trust verdict: Monaco is the blood model's own tissue, so no sample is called wrong input
    verdict = " ".join(plain(s.value) for s in [*at.success, *at.warning, *at.error] if "Deconvolved" in plain(s.value))
    assert "12 samples" in verdict and "0 wrong input" in verdict
    assert result.proportions.sum(axis=1).round(4).eq(1).all()
    assert "Deconvolved 12 samples" in at.success[0].value
    assert at.dataframe[-1].value.shape[0] == 12  # the proportions table
    assert at.session_state["truth"] is not None  # flow truth comes with the blood demo
    # model-card tables: every cell filled (issue 13.7: no "None"/"nan"; a baseline not computed says so)
    real = table_with(at, "NNLS baseline")
    assert "not computed" in set(real["NNLS baseline"])
    for element in at.dataframe:
        frame = element.value
        cells = set(frame.astype(str).to_numpy().ravel()) if frame.shape[1] else set()
        assert not {"None", "nan", "NaN", "<NA>"} & cells, list(frame.columns)


def _uploaded(text: str, filename: str) -> object:
    """The Data page with ``text`` in the session as the uploader callback leaves it (model pbmc), run once."""
    at = page(PAGE)
    at.session_state["model_name"] = "pbmc"
    at.session_state["bulk_source"] = "upload"
    at.session_state["bulk_bytes"] = text.encode()
    at.session_state["bulk_filename"] = filename
    at.session_state["bulk_label"] = filename
    return at.run()


def test_uploaded_file_report_and_run() -> None:
    """A file in the session (as the uploader callback leaves it) is read, reported and deconvolved."""
    require_model("pbmc")
    from blue_core.io.datasets import sample_root

    data = (sample_root() / "monaco_pbmc" / "bulk.csv.gz").read_bytes()
    at = _uploaded(gzip.decompress(data).decode(), "my_pbmc.csv")
    assert_clean(at)
    assert {m.label: m.value for m in at.metric}["Samples"] == "12"
    run = [b for b in at.button if b.label == "Run deconvolution"][0]
    run.click().run()
    assert_clean(at)
    assert at.session_state["result"].proportions.shape == (12, len(at.session_state["result"].cell_types))


@pytest.mark.parametrize(
    ("content", "filename", "expected"),
    [
        (b"", "empty.csv", "empty"),
        (b"\x00\x01\x02\x03binary\xff\xfe" * 50, "weird.csv", "binary"),
        (b"gene,s1,s2\nCD14,1,abc\nLYZ,2,3\n", "text.csv", "numeric value"),
    ],
)
def test_malformed_upload_shows_clear_message(content: bytes, filename: str, expected: str) -> None:
    at = page(PAGE)
    if installed_models():
        at.session_state["model_name"] = installed_models()[0]
    at.session_state["bulk_source"] = "upload"
    at.session_state["bulk_bytes"] = content
    at.session_state["bulk_filename"] = filename
    at.session_state["bulk_label"] = filename
    at.run()
    assert not at.exception  # never a traceback
    assert len(at.error) == 1
    message = at.error[0].value
    assert expected in message.lower()
    assert len(message) > 40  # names the problem and the fix
    assert at.session_state["result"] is None


def test_model_genes_found_for_a_multi_panel_model() -> None:
    """The AML model reads one cohort panel at a time: the tile shows that panel's genes, as the CLI prints."""
    require_model("aml")
    at = page(PAGE)
    at.session_state["model_name"] = "aml"
    at.session_state["bulk_source"] = "demo"
    at.session_state["demo_name"] = "tcga_laml"
    at.session_state["bulk_label"] = "demo: TCGA"
    at.run()
    assert_clean(at)
    import blue_core as bc

    model = bc.load_model("aml")
    tiles = {m.label: m.value for m in at.metric}
    match = model.match_genes(bc.load_sample("tcga_laml").bulk.var_names)
    assert tiles["Model genes found"] == f"{match.n_matched:,} / {match.n_expected:,}" and match.panel


def test_islet_data_with_the_blood_model_get_a_named_cause_and_a_recommendation() -> None:
    """Issue 13.3: the blood model on islets says why it is wrong input and recommends the islet model."""
    require_model("pbmc")
    require_model("pancreas")
    at = page(PAGE)
    at.session_state["model_name"] = "pbmc"
    at.session_state["model_chosen"] = True  # the user insists on the blood model
    at.session_state["bulk_source"] = "demo"
    at.session_state["demo_name"] = "fadista_islets"
    at.session_state["bulk_label"] = "islets"
    at.run()
    assert_clean(at)
    said = " ".join(plain(i.value) for i in at.info)
    assert "Recommended for these data: **pancreas**" in said
    assert any(b.key == "use_recommended" for b in at.button)
    [b for b in at.button if b.label == "Run deconvolution"][0].click().run()
    assert not at.exception
    errors = " ".join(plain(e.value) for e in at.error)
    assert "wrong input" in errors and "islet endocrine genes (INS, GCG, SST" in errors
    # when the user has not chosen, the data choose the model
    fresh = page(PAGE)
    fresh.session_state["bulk_source"] = "demo"
    fresh.session_state["demo_name"] = "fadista_islets"
    fresh.session_state["bulk_label"] = "islets"
    fresh.run()
    assert fresh.session_state["model_name"] == "pancreas"


def test_whole_blood_like_upload_opens_on_the_blood_model() -> None:
    """Issue 16.3: neutrophil genes high -> the app recommends (and, unchosen, uses) the whole-blood model."""
    require_model("pbmc")
    require_model("blood")
    import blue_core as bc
    from blue_core.analysis.trust import MARKER_SETS

    frame = bc.load_sample("monaco_pbmc").bulk.to_df()
    genes = [g for g in MARKER_SETS["neutrophil"] if g in frame.columns]
    frame[genes] = frame[genes] * 200 + 500  # synthetic stand-in for whole blood (no real cohort is held)
    at = page(PAGE)
    at.session_state["bulk_source"] = "upload"
    at.session_state["bulk_bytes"] = frame.T.rename_axis("gene").to_csv().encode()
    at.session_state["bulk_filename"] = "whole_blood.csv"
    at.session_state["bulk_label"] = "whole_blood.csv"
    at.run()
    assert_clean(at)
    assert at.session_state["model_name"] == "blood"
    [b for b in at.button if b.label == "Run deconvolution"][0].click().run()
    assert_clean(at)
    result = at.session_state["result"]
    assert {"Neutrophil", "Eosinophil", "Basophil"} <= set(result.cell_types)


def test_adaptation_switch_runs_it_and_says_so() -> None:
    """Issue 21: "Adapt to this cohort" fine-tunes a copy of the model on the loaded cohort and the page says it ran;
    off, the shipped networks run as they are."""
    require_model("pbmc")
    at = page(PAGE).run()
    at.button(key="demo_monaco_pbmc").click().run()
    assert_clean(at)
    results = {}
    for value in (not at.toggle(key="adapt_switch").value, at.toggle(key="adapt_switch").value):
        at.toggle(key="adapt_switch").set_value(value).run()
        [b for b in at.button if b.label == "Run deconvolution"][0].click().run()
        assert_clean(at)
        results[value] = at.session_state["result"]
        said = [plain(i.value) for i in at.info if "daptated" in plain(i.value) or "Adapted" in plain(i.value)]
        if value:
            record = results[value].input_report["adaptation"]
            assert record["ran"] and record["n_samples"] == 12 and record["n_members"] == 5
            assert any("Adapted to this cohort" in t and "12 samples" in t for t in said)
        else:
            assert results[value].input_report["adaptation"]["ran"] is False and not said
    assert not (results[True].proportions.to_numpy() == results[False].proportions.to_numpy()).all()
    assert (results[True].proportions.index == results[False].proportions.index).all()


def test_adaptation_switch_is_off_with_the_reason_for_a_tiny_cohort() -> None:
    require_model("pbmc")
    from blue_core.io.datasets import sample_root

    text = gzip.decompress((sample_root() / "monaco_pbmc" / "bulk.csv.gz").read_bytes()).decode()
    three = "\n".join(",".join(line.split(",")[:4]) for line in text.splitlines())
    at = _uploaded(three, "three.csv")
    assert_clean(at)
    switch = at.toggle(key="adapt_switch_off")
    assert switch.disabled and switch.value is False
    assert any("needs at least 8 samples" in plain(c.value) and "have 3" in plain(c.value) for c in at.caption)
