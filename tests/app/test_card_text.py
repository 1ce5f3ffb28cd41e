"""Issue 26.2: every model-card field the app shows is user text (a model zip can carry any card)."""

from __future__ import annotations

import copy
import re

import pytest
from _app_helpers import page

PAYLOAD = "![x](http://evil.example/t.png) [link](http://evil.example) <img src='http://evil.example/i.png'>"


def _raw_texts(at) -> list[str]:
    """Every Markdown-rendered string of a run: bodies, alerts, metric labels/values, expander labels."""
    out = []
    for kind in ("markdown", "caption", "title", "header", "subheader", "info", "success", "warning", "error"):
        out += [str(el.value) for el in getattr(at, kind)]
    for el in at.metric:
        out += [str(el.label), str(el.value)]
    out += [str(el.label) for el in at.expander]
    return out


@pytest.fixture
def poisoned(tiny_trained):
    model, _ = tiny_trained()
    model = copy.copy(model)
    model.card = {**copy.deepcopy(model.card), "tissue": PAYLOAD, "description": PAYLOAD, "limitations": PAYLOAD}
    model.card.setdefault("provenance", {})["note"] = PAYLOAD
    model.name = "poisoned"
    return model


@pytest.mark.parametrize("filename", ["1_Data_and_model.py", "6_Train_a_model.py"])
def test_card_fields_render_as_typed(poisoned, filename):
    from blue_studio.state import TRAINED_PREFIX

    at = page(filename)
    at.session_state["trained_models"] = {"poisoned": poisoned}
    at.session_state["model_name"] = TRAINED_PREFIX + "poisoned"
    at.session_state["last_trained"] = "poisoned"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    texts = _raw_texts(at)
    shown = [t for t in texts if "evil" in t]
    assert shown, "the card was not shown at all"
    live = re.compile(r"(?<!\\)(\]\(|<img|!\[)")  # an unescaped link, image or HTML tag
    for text in texts:
        assert not live.search(text), text
