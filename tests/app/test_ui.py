"""Unit tests of the app package's helpers (blue_studio) and the figure/table modules it uses (no Streamlit runtime)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from blue_core.analysis import clinical as clinical_rules, tables
from blue_core import plotting

from blue_studio import cache, views
from blue_studio import state as app_state
from blue_core.exceptions import BlueInputError


def test_read_clinical_table_formats_and_errors(tmp_path) -> None:
    csv = b"sample,hba1c,status\nS1,5.4,Normal\nS2,7.1,T2D\n"
    table = clinical_rules.read_clinical_table(csv, "clinical.csv")
    assert list(table.index) == ["S1", "S2"] and table.index.name == "sample"
    assert table.loc["S2", "hba1c"] == 7.1
    tsv = csv.replace(b",", b"\t")
    assert clinical_rules.read_clinical_table(tsv, "clinical.tsv").equals(table)
    buffer = io.BytesIO()
    table.reset_index().to_excel(buffer, index=False)
    assert clinical_rules.read_clinical_table(buffer.getvalue(), "clinical.xlsx").loc["S1", "status"] == "Normal"
    with pytest.raises(BlueInputError, match="duplicated sample IDs"):
        clinical_rules.read_clinical_table(b"sample,x\nA,1\nA,2\n", "dup.csv")
    with pytest.raises(BlueInputError, match="no data columns"):
        clinical_rules.read_clinical_table(b"sample\nA\nB\n", "ids_only.csv")
    with pytest.raises(BlueInputError, match="Could not read"):
        clinical_rules.read_clinical_table(b"\x00\xff" * 20, "clinical.xlsx")


def test_sample_order_and_stacked_bar() -> None:
    props = pd.DataFrame({"B": [0.1, 0.5, 0.3], "T": [0.9, 0.5, 0.7]}, index=["a", "b", "c"])
    assert plotting.sample_order(props, sort_by="B") == ["b", "c", "a"]
    groups = pd.Series({"a": "x", "b": "y", "c": "x"})
    assert plotting.sample_order(props, sort_by="B", groups=groups) == ["c", "a", "b"]
    fig = plotting.stacked_bar(props, order=["b", "a", "c"])
    assert [t.name for t in fig.data] == ["B", "T"]
    assert np.allclose(fig.data[0].y, [0.5, 0.1, 0.3])
    assert fig.layout.barmode == "stack"
    # same name -> same colour across charts
    other = plotting.stacked_bar(props[["T"]], color_names=["B", "T"])
    assert other.data[0].marker.color == fig.data[1].marker.color


def test_column_helpers_and_truth_mapping() -> None:
    clinical = pd.DataFrame({"hba1c": np.linspace(4.5, 9, 20), "status": ["N", "T2D"] * 10, "id": range(20)})
    assert clinical_rules.categorical_columns(clinical) == ["status"]
    assert set(clinical_rules.numeric_columns(clinical)) == {"hba1c", "id"}
    assert clinical_rules.guess_column(["OS_days", "x"], clinical_rules.TIME_COLUMNS) == "OS_days"
    times, events = clinical_rules.survival_columns(pd.DataFrame({"os_days": [1.0, 5, 9, 20], "os_event": [0, 1, 1, 0]}))
    assert times == ["os_days"] and events == ["os_event"]
    info = {"truth_mapping": {"pbmc": {"model": {"mDC": "DC"}, "truth": {"DC": "DC"}}}}
    assert tables.truth_mapping(info, "pbmc") == ({"mDC": "DC"}, {"DC": "DC"})
    assert tables.truth_mapping(info, "aml") is None and tables.truth_mapping(None, "pbmc") is None


def test_card_table_flattens_nested_sections() -> None:
    table = views.card_table({"monaco": {"ccc": 0.8712, "n": 12}, "note": "x", "genes": list("abcdefghijklmnop")})
    values = dict(zip(table["item"], table["value"]))
    assert values["monaco.ccc"] == "0.871" and values["monaco.n"] == "12"
    assert values["genes"] == "16 items" and values["note"] == "x"


def test_content_hash_is_stable() -> None:
    assert cache.content_hash(b"abc") == cache.content_hash("abc")
    assert cache.content_hash(b"abc") != cache.content_hash(b"abd")


class _Upload:
    def __init__(self, name: str, data: bytes) -> None:
        self.name, self._data = name, data

    def getvalue(self) -> bytes:
        return self._data


@pytest.fixture
def fake_state(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Run the state callbacks against a plain dict as session state."""
    from types import SimpleNamespace

    state: dict = {}
    monkeypatch.setattr(app_state, "st", SimpleNamespace(session_state=state))
    app_state.init_state()
    return state


def test_upload_callbacks_keep_bytes_and_clear_results(fake_state: dict) -> None:
    state = fake_state
    state["result"], state["result_key"] = "old result", ("a", "b")
    state["bulk_upload"] = _Upload("cohort.csv", b"gene,s1\nCD14,1\n")
    app_state.on_bulk_upload()
    assert state["bulk_source"] == "upload" and state["bulk_bytes"] == b"gene,s1\nCD14,1\n"
    assert state["bulk_label"] == "cohort.csv" and state["result"] is None
    state["result"] = "new result"
    state["bulk_upload"] = None  # the user removes the file
    app_state.on_bulk_upload()
    assert state["bulk_bytes"] is None and state["result"] is None


def test_clinical_callback_shows_errors_and_keeps_tables(fake_state: dict) -> None:
    state = fake_state
    state["clinical_upload"] = _Upload("clin.csv", b"sample,x\nA,1\nA,2\n")
    app_state.on_clinical_upload()
    assert "duplicated sample IDs" in state["clinical_error"] and state["clinical"] is None
    state["clinical_upload"] = _Upload("clin.csv", b"sample,os_days,os_event\nA,100,1\nB,200,0\n")
    app_state.on_clinical_upload()
    assert state["clinical_error"] is None and list(state["clinical"].index) == ["A", "B"]
    state["clinical_upload"] = None
    app_state.on_clinical_upload()
    assert state["clinical"] is None


def test_model_zip_upload_adds_the_model_to_this_session(fake_state: dict, tiny_trained) -> None:
    """Issue 13.7: the Train page's zip uploader loads a downloaded model back (and explains a bad file)."""
    model, _ = tiny_trained(n_genes=60, seed=2, n_markers=10, bulk_seed=7, n_bulk=12, tissue="synthetic",
                            description="unit-test model")
    state = fake_state
    state["model_zip_upload"] = _Upload("tiny.zip", cache.model_zip_bytes(model))
    app_state.on_model_zip_upload()
    assert state["model_zip_error"] is None and state["last_trained"] == "tiny"
    assert state["trained_models"]["tiny"].output_genes == model.output_genes
    state["model_zip_upload"] = _Upload("notes.zip", b"not a zip")
    app_state.on_model_zip_upload()
    assert "not a zip archive" in state["model_zip_error"]


def test_saved_analysis_reopens_in_a_new_session(fake_state: dict, tiny_trained) -> None:
    """Issue 13.8: a bundle from 'Download this analysis' reopens as the current result."""
    from blue_core.io.bundle import write_bundle
    from blue_core.engine.inference import deconvolve

    model, bulk = tiny_trained()
    result = deconvolve(bulk, model)
    state = fake_state
    state["analysis_upload"] = _Upload("blue_analysis.zip", write_bundle(result, model=model, inputs={"bulk": "x.csv"}))
    app_state.on_analysis_upload()
    assert state["analysis_error"] is None and state["bulk_source"] == "bundle"
    assert state["bulk_label"] == "saved analysis: x.csv"
    assert np.allclose(state["result"].proportions.to_numpy(), result.proportions.to_numpy())
    state["analysis_upload"] = _Upload("bad.zip", b"nope")
    app_state.on_analysis_upload()
    assert "not a zip archive" in state["analysis_error"]


def test_training_time_left_estimate() -> None:
    assert cache.time_left(0.02, 60) == "" and cache.time_left(0.5, 2) == ""  # too early to say
    assert cache.time_left(0.5, 30) == "about 30 s left"
    assert cache.time_left(0.25, 120) == "about 6 min left"
    assert cache.time_left(1.0, 120) == ""


def test_a_demo_says_when_it_replaces_a_trained_model(fake_state: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13.7: a demo click does not silently replace the model the user trained."""
    state = fake_state
    monkeypatch.setattr(app_state, "model_options", lambda: ["pbmc", app_state.TRAINED_PREFIX + "mine"])
    state["model_name"] = app_state.TRAINED_PREFIX + "mine"
    app_state.load_demo("monaco_pbmc")
    assert state["model_name"] == "pbmc"
    assert "your trained model 'mine'" in state["demo_notice"] and "stays available" in state["demo_notice"]
