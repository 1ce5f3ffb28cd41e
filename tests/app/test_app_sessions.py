"""App-wide behaviour: upload limit configured, one session's data never seen by another, pages standalone."""

from __future__ import annotations

import tomllib

from _app_helpers import PAGES, ROOT, page, require_model


def test_upload_limit_is_configured() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert 1 <= config["server"]["maxUploadSize"] <= 500
    assert config["client"]["showErrorDetails"] == "none"  # never a traceback in the UI


def test_data_of_one_session_is_not_seen_by_another() -> None:
    require_model("pbmc")
    first = page("1_Data_and_model.py").run()
    first.button(key="demo_monaco_pbmc").click().run()
    assert first.session_state["result"] is not None
    second = page("2_Proportions.py").run()  # another user, same server process
    assert second.session_state["result"] is None and second.session_state["bulk_label"] is None
    assert "Load a cohort first" in second.info[0].value


def test_every_page_runs_on_its_own() -> None:
    files = sorted(p.name for p in PAGES.glob("*.py"))
    assert len(files) == 7
    for name in files:
        at = page(name).run()
        assert not at.exception, (name, [e.value for e in at.exception])
