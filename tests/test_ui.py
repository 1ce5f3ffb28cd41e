"""Unit tests of blue_core.ui's pure helpers (no Streamlit runtime needed)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from blue_core import ui
from blue_core.exceptions import BlueInputError


def test_read_clinical_table_formats_and_errors(tmp_path) -> None:
    csv = b"sample,hba1c,status\nS1,5.4,Normal\nS2,7.1,T2D\n"
    table = ui.read_clinical_table(csv, "clinical.csv")
    assert list(table.index) == ["S1", "S2"] and table.index.name == "sample"
    assert table.loc["S2", "hba1c"] == 7.1
    tsv = csv.replace(b",", b"\t")
    assert ui.read_clinical_table(tsv, "clinical.tsv").equals(table)
    buffer = io.BytesIO()
    table.reset_index().to_excel(buffer, index=False)
    assert ui.read_clinical_table(buffer.getvalue(), "clinical.xlsx").loc["S1", "status"] == "Normal"
    with pytest.raises(BlueInputError, match="duplicated sample IDs"):
        ui.read_clinical_table(b"sample,x\nA,1\nA,2\n", "dup.csv")
    with pytest.raises(BlueInputError, match="no data columns"):
        ui.read_clinical_table(b"sample\nA\nB\n", "ids_only.csv")
    with pytest.raises(BlueInputError, match="Could not read"):
        ui.read_clinical_table(b"\x00\xff" * 20, "clinical.xlsx")


def test_sample_order_and_stacked_bar() -> None:
    props = pd.DataFrame({"B": [0.1, 0.5, 0.3], "T": [0.9, 0.5, 0.7]}, index=["a", "b", "c"])
    assert ui.sample_order(props, sort_by="B") == ["b", "c", "a"]
    groups = pd.Series({"a": "x", "b": "y", "c": "x"})
    assert ui.sample_order(props, sort_by="B", groups=groups) == ["c", "a", "b"]
    fig = ui.stacked_bar(props, order=["b", "a", "c"])
    assert [t.name for t in fig.data] == ["B", "T"]
    assert np.allclose(fig.data[0].y, [0.5, 0.1, 0.3])
    assert fig.layout.barmode == "stack"
    # same name -> same colour across charts
    other = ui.stacked_bar(props[["T"]], color_names=["B", "T"])
    assert other.data[0].marker.color == fig.data[1].marker.color


def test_column_helpers_and_truth_mapping() -> None:
    clinical = pd.DataFrame({"hba1c": np.linspace(4.5, 9, 20), "status": ["N", "T2D"] * 10, "id": range(20)})
    assert ui.categorical_columns(clinical) == ["status"]
    assert set(ui.numeric_columns(clinical)) == {"hba1c", "id"}
    assert ui.guess_column(["OS_days", "x"], ui.TIME_COLUMNS) == "OS_days"
    times, events = ui.survival_columns(pd.DataFrame({"os_days": [1.0, 5, 9, 20], "os_event": [0, 1, 1, 0]}))
    assert times == ["os_days"] and events == ["os_event"]
    info = {"truth_mapping": {"pbmc": {"model": {"mDC": "DC"}, "truth": {"DC": "DC"}}}}
    assert ui.truth_mapping(info, "pbmc") == ({"mDC": "DC"}, {"DC": "DC"})
    assert ui.truth_mapping(info, "aml") is None and ui.truth_mapping(None, "pbmc") is None


def test_card_table_flattens_nested_sections() -> None:
    table = ui.card_table({"monaco": {"ccc": 0.8712, "n": 12}, "note": "x", "genes": list("abcdefghijklmnop")})
    values = dict(zip(table["item"], table["value"]))
    assert values["monaco.ccc"] == "0.871" and values["monaco.n"] == "12"
    assert values["genes"] == "16 items" and values["note"] == "x"


def test_content_hash_is_stable() -> None:
    assert ui.content_hash(b"abc") == ui.content_hash("abc")
    assert ui.content_hash(b"abc") != ui.content_hash(b"abd")


class _Upload:
    def __init__(self, name: str, data: bytes) -> None:
        self.name, self._data = name, data

    def getvalue(self) -> bytes:
        return self._data


@pytest.fixture
def fake_state(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Run ui callbacks against a plain dict as session state."""
    from types import SimpleNamespace

    state: dict = {}
    monkeypatch.setattr(ui, "_st", lambda: SimpleNamespace(session_state=state))
    ui.init_state()
    return state


def test_upload_callbacks_keep_bytes_and_clear_results(fake_state: dict) -> None:
    state = fake_state
    state["result"], state["result_key"] = "old result", ("a", "b")
    state["bulk_upload"] = _Upload("cohort.csv", b"gene,s1\nCD14,1\n")
    ui.on_bulk_upload()
    assert state["bulk_source"] == "upload" and state["bulk_bytes"] == b"gene,s1\nCD14,1\n"
    assert state["bulk_label"] == "cohort.csv" and state["result"] is None
    state["result"] = "new result"
    state["bulk_upload"] = None  # the user removes the file
    ui.on_bulk_upload()
    assert state["bulk_bytes"] is None and state["result"] is None


def test_clinical_callback_shows_errors_and_keeps_tables(fake_state: dict) -> None:
    state = fake_state
    state["clinical_upload"] = _Upload("clin.csv", b"sample,x\nA,1\nA,2\n")
    ui.on_clinical_upload()
    assert "duplicated sample IDs" in state["clinical_error"] and state["clinical"] is None
    state["clinical_upload"] = _Upload("clin.csv", b"sample,os_days,os_event\nA,100,1\nB,200,0\n")
    ui.on_clinical_upload()
    assert state["clinical_error"] is None and list(state["clinical"].index) == ["A", "B"]
    state["clinical_upload"] = None
    ui.on_clinical_upload()
    assert state["clinical"] is None
